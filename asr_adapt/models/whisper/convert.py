"""Convert a CTranslate2 (faster-whisper) Whisper model into a transformers model folder.

The conversion is exact: every CTranslate2 tensor lands unchanged (widened to float32) in
``WhisperForConditionalGeneration``; fused projections are split (self-attention q/k/v
stacked on dim 0, cross-attention k/v likewise). The tokenizer comes from the model's
``tokenizer.json``; the generation config from its ``config.json`` (suppress lists,
language ids, alignment heads) and the tokenizer's special tokens.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr_adapt.models.whisper.ct2 import CT2Model, read_ct2_model
from asr_adapt.core.errors import ModelError

if TYPE_CHECKING:  # torch is imported when converting: model loading reads the constants below without it
    import torch

#: Files a CTranslate2 Whisper folder must hold for us to convert it.
CT2_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
#: Written into every converted folder: where it came from and the source's fingerprint.
STAMP_FILE = "asr_adapt_source.json"


def is_ct2_whisper_dir(path: Path) -> bool:
    """True when ``path`` looks like a CTranslate2 model folder (it has a model.bin)."""
    return path.is_dir() and (path / "model.bin").is_file()


def _count_layers(ct2: CT2Model, side: str) -> int:
    n = 0
    while ct2.has(f"{side}/layer_{n}/ffn/linear_0/weight"):
        n += 1
    return n


def whisper_config_from_ct2(ct2: CT2Model, ct2_config: dict, tokenizer_ids: dict[str, int]):
    """Derive a ``WhisperConfig`` from tensor shapes and the CTranslate2 config."""
    from transformers import WhisperConfig

    vocab_size, d_model = ct2.get("decoder/embeddings/weight").shape
    conv1 = ct2.get("encoder/conv1/weight")
    ffn_dim = ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    encoder_layers = _count_layers(ct2, "encoder")
    decoder_layers = _count_layers(ct2, "decoder")
    if encoder_layers == 0 or decoder_layers == 0:
        raise ModelError("CTranslate2 model has no encoder or decoder layers; is it a Whisper model?")
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(d_model),
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=int(ct2.get("encoder/num_heads")),
        decoder_attention_heads=int(ct2.get("decoder/num_heads")),
        encoder_ffn_dim=int(ffn_dim),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        decoder_start_token_id=tokenizer_ids["<|startoftranscript|>"],
        bos_token_id=tokenizer_ids["<|endoftext|>"],
        eos_token_id=tokenizer_ids["<|endoftext|>"],
        pad_token_id=tokenizer_ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )


def ct2_to_state_dict(ct2: CT2Model, encoder_layers: int, decoder_layers: int) -> dict[str, torch.Tensor]:
    """Map CTranslate2 variable names onto ``WhisperForConditionalGeneration`` parameter names."""
    import torch

    state: dict[str, torch.Tensor] = {}

    def put(hf_name: str, array: np.ndarray) -> None:
        state[hf_name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def linear(hf_prefix: str, ct2_prefix: str, with_bias: bool = True) -> None:
        put(f"{hf_prefix}.weight", ct2.float_weight(f"{ct2_prefix}/weight"))
        if with_bias:
            put(f"{hf_prefix}.bias", ct2.float_weight(f"{ct2_prefix}/bias"))

    def norm(hf_prefix: str, ct2_prefix: str) -> None:
        put(f"{hf_prefix}.weight", ct2.float_weight(f"{ct2_prefix}/gamma"))
        put(f"{hf_prefix}.bias", ct2.float_weight(f"{ct2_prefix}/beta"))

    def split_stacked(hf_prefix: str, names: tuple[str, ...], ct2_prefix: str) -> None:
        weight = ct2.float_weight(f"{ct2_prefix}/weight")
        bias = ct2.float_weight(f"{ct2_prefix}/bias")
        for name, w, b in zip(names, np.split(weight, len(names)), np.split(bias, len(names))):
            put(f"{hf_prefix}.{name}.weight", w)
            if name != "k_proj":  # Whisper's key projections have no bias (CT2 stores zeros)
                put(f"{hf_prefix}.{name}.bias", b)

    for side in ("encoder", "decoder"):
        put(f"model.{side}.embed_positions.weight", ct2.float_weight(f"{side}/position_encodings/encodings"))
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.decoder.embed_tokens.weight", ct2.float_weight("decoder/embeddings/weight"))

    for side, count in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        for i in range(count):
            hf, c = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            split_stacked(f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"), f"{c}/self_attention/linear_0")
            linear(f"{hf}.self_attn.out_proj", f"{c}/self_attention/linear_1")
            norm(f"{hf}.self_attn_layer_norm", f"{c}/self_attention/layer_norm")
            linear(f"{hf}.fc1", f"{c}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{c}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{c}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{hf}.encoder_attn.q_proj", f"{c}/attention/linear_0")
                split_stacked(f"{hf}.encoder_attn", ("k_proj", "v_proj"), f"{c}/attention/linear_1")
                linear(f"{hf}.encoder_attn.out_proj", f"{c}/attention/linear_2")
                norm(f"{hf}.encoder_attn_layer_norm", f"{c}/attention/layer_norm")
    return state


def _generation_config(config, ct2_config: dict, tokenizer, multilingual: bool):
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        max_initial_timestamp_index=50,
        is_multilingual=multilingual,
        return_timestamps=False,
    )
    if ct2_config.get("alignment_heads"):
        generation.alignment_heads = [list(pair) for pair in ct2_config["alignment_heads"]]
    if multilingual:
        lang_ids = ct2_config.get("lang_ids") or []
        generation.lang_to_id = {tokenizer.convert_ids_to_tokens(i): int(i) for i in lang_ids}
        generation.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    # forced_decoder_ids is the pre-4.38 way; generate() now builds the prompt itself.
    return generation


def convert_ct2_whisper(source: str | Path, destination: str | Path, stamp: dict | None = None) -> Path:
    """Convert the CTranslate2 Whisper folder ``source`` into a transformers folder.

    ``destination`` is written atomically: it appears complete or not at all. ``stamp``
    (what the source was, for cache checks) is stored beside the weights. Returns it.
    """
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor
    from transformers.models.whisper.tokenization_whisper import WhisperTokenizer

    source, destination = Path(source), Path(destination)
    missing = [name for name in CT2_REQUIRED_FILES if not (source / name).is_file()]
    if missing:
        raise ModelError(f"{source}: CTranslate2 model folder lacks {', '.join(missing)}")
    ct2 = read_ct2_model(source)
    if ct2.spec_name != "WhisperSpec":
        raise ModelError(f"{source}: a CTranslate2 '{ct2.spec_name}' model, not Whisper")
    ct2_config = json.loads((source / "config.json").read_text())
    for key in ("suppress_ids", "lang_ids"):  # some exports store these lists as strings
        if isinstance(ct2_config.get(key), str):
            ct2_config[key] = json.loads(ct2_config[key])
    tokenizer = WhisperTokenizer(tokenizer_file=str(source / "tokenizer.json"))
    special = {tok: tokenizer.convert_tokens_to_ids(tok)
               for tok in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")}
    config = whisper_config_from_ct2(ct2, ct2_config, special)
    multilingual = config.vocab_size >= 51865
    state = ct2_to_state_dict(ct2, config.encoder_layers, config.decoder_layers)

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    _check_complete(model, source)
    model.generation_config = _generation_config(config, ct2_config, tokenizer, multilingual)

    if multilingual:
        tokenizer.set_prefix_tokens(language="english", task="transcribe", predict_timestamps=False)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins),
        tokenizer=tokenizer,
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f"{destination.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    (partial / STAMP_FILE).write_text(json.dumps({"converted_from": str(source), **(stamp or {})}, indent=2))
    if destination.exists():
        shutil.rmtree(destination, ignore_errors=True)
    try:
        partial.rename(destination)
    except OSError:  # another process finished the same conversion first: use theirs
        shutil.rmtree(partial, ignore_errors=True)
    return destination


def _check_complete(model, source: Path) -> None:
    """Refuse a conversion that left any parameter unset (still on the meta device)."""
    unset = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    unset += [name for name, b in model.named_buffers() if b.device.type == "meta"]
    if unset:
        raise ModelError(f"{source}: conversion left {len(unset)} tensors unset, e.g. {unset[0]}")
