"""The CTC backend (wav2vec2, HuBERT, WavLM) as a library, on tiny random models built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from wav2vec2_models import (  # noqa: F401 (fixture)
    CHARACTERS,
    TONE_TEXTS,
    build_tiny_ctc,
    one_thread,
    tone_utterance,
)

from asr_adapt.models.registry import backend_for_config
from asr_adapt.models.ctc import CtcVocabulary, VocabularyError, greedy_decode, model_inputs, to_model_vocabulary
from asr_adapt.core.errors import ModelError, OptionsError
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.attach import attach_lora
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import Transcriber


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory):
    return build_tiny_ctc(tmp_path_factory.mktemp("tiny_wav2vec2"), hidden=32)


@pytest.fixture
def ctc(ctc_dir):
    return resolve_model(str(ctc_dir), device="cpu")


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("model_type,group_norm", [("wav2vec2", False), ("hubert", True), ("wavlm", False)])
def test_ctc_models_load_through_the_normal_path_and_transcribe(tmp_path, model_type, group_norm):
    folder = build_tiny_ctc(tmp_path / model_type, model_type=model_type, group_norm=group_norm)
    loaded = resolve_model(str(folder), device="cpu")
    assert loaded.backend == model_type and loaded.engine.name == "ctc" and loaded.kind == "local"
    texts = Transcriber(loaded).transcribe_arrays([tone_utterance(t) for t in TONE_TEXTS[:3]] + [np.zeros(8000)])
    assert texts[-1] == ""  # silence is not decoded
    allowed = set(CHARACTERS) | {" "}
    assert all(t and set(t) <= allowed and "  " not in t for t in texts[:3]), texts


def test_batched_decoding_equals_one_by_one(ctc):
    """Padding and attention masks: a clip decodes the same alone and beside longer ones."""
    clips = [tone_utterance(t) for t in ("ACE", "CAB DECADE", "BED")]
    batched = Transcriber(ctc, TranscribeOptions(batch_size=3)).transcribe_arrays(clips)
    single = Transcriber(ctc, TranscribeOptions(batch_size=1)).transcribe_arrays(clips)
    assert batched == single


def test_a_model_without_a_ctc_head_is_refused(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="without a CTC head.*wav2vec2-base-960h"):
        resolve_model(str(tmp_path), device="cpu")


def test_an_unsupported_model_family_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="is a bert model; asr-adapt serves Whisper and CTC"):
        resolve_model(str(tmp_path), device="cpu")


def test_a_ctc_folder_without_its_vocabulary_is_refused(tmp_path, ctc_dir):
    import shutil

    shutil.copytree(ctc_dir, tmp_path / "m")
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(ModelError, match="lacks vocab.json"):
        resolve_model(str(tmp_path / "m"), device="cpu")


def test_beam_search_is_refused_for_ctc(ctc):
    with pytest.raises(OptionsError, match="decode greedily.*pyctcdecode"):
        Transcriber(ctc, TranscribeOptions(beam_size=4))


def test_ctc_decodes_greedily_by_default(ctc):
    assert Transcriber(ctc, TranscribeOptions()).options.beam_size == 1


# --------------------------------------------------------------------------- text


def _vocabulary(characters, lower_case=False):
    return CtcVocabulary(frozenset(characters), "lower" if lower_case else "upper")


@pytest.mark.parametrize("text,expected", [
    ("Hello, world.", "HELLO WORLD"),
    ("It's  a well-known fact!", "IT'S A WELL KNOWN FACT"),
    ("don\u2019t \u201cquote\u201d me", "DON'T QUOTE ME"),
    ("WE CALL IT BEAR", "WE CALL IT BEAR"),
])
def test_text_is_mapped_into_an_uppercase_vocabulary(text, expected):
    assert to_model_vocabulary(_vocabulary(CHARACTERS), text) == expected


def test_text_follows_a_lowercase_vocabulary_and_drops_what_it_lacks():
    vocabulary = _vocabulary("abcdefghijklmnopqrstuvwxyz", lower_case=True)
    assert to_model_vocabulary(vocabulary, "Don't STOP") == "dont stop"  # no apostrophe: dropped


def test_unrepresentable_characters_are_named():
    with pytest.raises(VocabularyError) as error:
        to_model_vocabulary(_vocabulary(CHARACTERS), "Room 101 costs 5% in Z\u00fcrich", "u7")
    message = str(error.value)
    assert "'u7'" in message and "'1', '0', '5', '%', '\u00dc'" in message and "\n" not in message


def test_vocabulary_is_read_from_the_tokenizer(ctc):
    vocabulary = CtcVocabulary.from_tokenizer(ctc.processor.tokenizer)
    assert vocabulary.case == "upper" and vocabulary.characters == frozenset(CHARACTERS)


# --------------------------------------------------------------------------- decoding and loss


def test_greedy_decoding_merges_repeats_keeps_blank_separated_copies_and_word_breaks(ctc):
    tokenizer = ctc.processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in
           ["<pad>", "B", "B", "<pad>", "E", "<pad>", "E", "|", "|", "<s>", "A", "A", "<pad>", "<unk>"]]
    frames = len(ids)
    logits = torch.full((1, frames + 3, len(tokenizer)), -5.0)
    for frame, token in enumerate(ids + [tokenizer.convert_tokens_to_ids("D")] * 3):
        logits[0, frame, token] = 5.0
    # An input whose frame count is exactly ``frames``: the three D frames are padding.
    samples = next(n for n in range(frames * 320, frames * 320 + 800)
                   if int(ctc.model._get_feat_extract_output_lengths(torch.tensor(n))) == frames)
    assert greedy_decode(ctc, logits, [samples]) == ["BEE A"]


def test_ctc_loss_is_the_per_character_mean_of_the_models_own(ctc):
    """Our loss (one path for plain and domain-confusion training) equals transformers'
    CTC loss with the "mean" reduction, padding and all."""
    from asr_adapt.models.base import Example

    windows = [Example(tone_utterance(t), t) for t in ("BAD CAB", "ACE", "DECADE")]
    batcher = ctc.engine.batcher(ctc)
    batch = batcher(windows)
    ours = batcher.loss(ctc.model, batch)
    ctc.model.config.ctc_loss_reduction = "mean"
    inputs = {k: batch[k] for k in ("input_values", "attention_mask", "labels")}
    theirs = ctc.model(**inputs).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5) and float(ours) > 0


def test_text_too_fast_for_the_frames_is_a_target_problem(ctc):
    from asr_adapt.models.base import Example

    batcher = ctc.engine.batcher(ctc)
    assert batcher.target_problem(Example(tone_utterance("BAD"), "BAD")) is None
    problem = batcher.target_problem(Example(np.zeros(1600, np.float32), "BADDECADE"))  # 0.1 s: 4 frames
    assert problem and "frames" in problem


# --------------------------------------------------------------------------- LoRA and encoder states


def test_lora_adapts_attention_and_feed_forward_of_the_encoder_blocks_only(ctc):
    peft_model = attach_lora(ctc.model, LoraSettings(rank=2))
    adapted = {name.rsplit(".", 1)[0] for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    leaves = {name.split(".")[-1] for name in adapted}
    assert leaves == {"q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense"}
    assert all(".encoder.layers." in name for name in adapted)
    assert len(adapted) == 6 * ctc.model.config.num_hidden_layers


def test_lora_targets_by_role_and_refusals(ctc):
    backend = ctc.engine
    pattern = backend.lora_target_regex(("q_proj", "fc2"), "both")
    assert "q_proj" in pattern and "output_dense" in pattern and "intermediate_dense" not in pattern
    with pytest.raises(OptionsError, match="no decoder"):
        backend.lora_target_regex(LoraSettings(where="decoder").targets, "decoder")
    whisper = backend_for_config(type("C", (), {"model_type": "whisper"})())
    with pytest.raises(OptionsError, match="wav2vec2 layer names"):
        whisper.lora_target_regex(("intermediate_dense",), "both")


def test_encoder_states_mask_the_padding(ctc):
    short, long = tone_utterance("ACE"), tone_utterance("CAB DECADE BED")
    states, mask = ctc.engine.encoder_states(ctc, [short, long])
    assert len(states) == ctc.model.config.num_hidden_layers + 1
    assert states[-1].shape[-1] == ctc.engine.hidden_size(ctc.model.config) == 32
    assert mask[1].all() and 0 < int(mask[0].sum()) < mask.shape[1]
    alone, alone_mask = ctc.engine.encoder_states(ctc, [short])
    frames = int(mask[0].sum())
    assert int(alone_mask.sum()) == frames
    torch.testing.assert_close(states[-1][0, :frames], alone[-1][0, :frames], atol=1e-4, rtol=1e-4)


def test_pooled_states_for_the_projection(ctc):
    from asr_adapt.adapt.projection import pooled_states

    vectors = pooled_states(ctc, [tone_utterance(t) for t in TONE_TEXTS[:3]], layer=1)
    assert vectors.shape == (3, 32) and np.isfinite(vectors).all()


def test_model_inputs_follow_the_feature_extractor_on_attention_masks(tmp_path, ctc):
    assert "attention_mask" in model_inputs(ctc, [tone_utterance("ACE")])
    group = resolve_model(str(build_tiny_ctc(tmp_path / "g", group_norm=True)), device="cpu")
    assert "attention_mask" not in model_inputs(group, [tone_utterance("ACE")])


def test_training_leaves_the_conv_feature_encoder_out_of_the_backward_pass(ctc):
    """LoRA sits only in the transformer blocks: the conv stack needs no gradient (and keeping
    its activations would cost most of a long window's memory)."""
    from asr_adapt.models.base import Example

    peft_model = attach_lora(ctc.model, LoraSettings(rank=2))
    ctc.engine.prepare_for_training(ctc.model)
    assert ctc.model.wav2vec2.feature_extractor._requires_grad is False
    ctc.model.train()
    batcher = ctc.engine.batcher(ctc)
    batcher.loss(ctc.model, batcher([Example(tone_utterance("BAD CAB"), "BAD CAB")])).backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
