"""Tiny randomly initialised CTC models (wav2vec2, HuBERT, WavLM) saved as transformers folders,
and a "tone alphabet" whose utterances such a model can learn in seconds.

No pretrained wav2vec2 weights are reachable offline, so the CTC backend is tested on these:
built here, saved with ``save_pretrained`` and loaded back through ``--model PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for a module that imports this fixture: tiny models gain nothing from
    more, and the overfit run's numerics (hence its epochs) then do not depend on the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

#: An uppercase character vocabulary like facebook/wav2vec2-base-960h's (no digits, no punctuation
#: but the apostrophe): <pad> is the CTC blank, | the word delimiter.
CHARACTERS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "|"]


def build_tiny_ctc(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2, model_type: str = "wav2vec2",
                   group_norm: bool = False) -> Path:
    """A random CTC model of ``model_type`` with the real wav2vec2 conv strides (one frame per
    20 ms) but 32-channel convolutions, saved with its processor into ``folder``."""
    import torch
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
        WavLMConfig,
        WavLMForCTC,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARACTERS)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=not group_norm)
    common = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                  intermediate_size=2 * hidden, conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
                  conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2, ctc_loss_reduction="mean",
                  hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
                  feat_extract_norm="group" if group_norm else "layer", do_stable_layer_norm=not group_norm)
    classes = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2ForCTC), "hubert": (HubertConfig, HubertForCTC),
               "wavlm": (WavLMConfig, WavLMForCTC)}
    config_class, model_class = classes[model_type]
    config = config_class(**common)
    config.architectures = [model_class.__name__]
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():
        # A trained CTC head has logits spread over several nats; the default init (std 0.02)
        # gives +-0.2, too flat for the frozen head to let LoRA leave the all-blank start.
        model.lm_head.weight.normal_(0.0, 4.0 / hidden ** 0.5)
    model.save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


#: The tone alphabet: each letter is a pure tone of its own pitch; the word break is a burst
#: of noise (a tiny model cannot learn from context alone that one silence is a word break
#: and another is not).
TONE_LETTERS = "ABCDE"
LETTER_SECONDS = 0.16
GAP_SECONDS = 0.04


def _tone(freq: float, rate: int) -> np.ndarray:
    t = np.arange(int(LETTER_SECONDS * rate)) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # no clicks at the tone edges
    return (0.4 * ramp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _word_break(rate: int) -> np.ndarray:
    """A burst of (seeded) white noise: unlike any letter's tone."""
    noise = np.random.default_rng(0).standard_normal(int(LETTER_SECONDS * rate)).astype(np.float32)
    return 0.2 * noise  # as long as a letter


def tone_utterance(text: str, rate: int = 16000) -> np.ndarray:
    """``text`` (words of TONE_LETTERS) as audio: a tone per letter and per word break, with
    short gaps between them (so a doubled letter is two tones)."""
    gap = np.zeros(int(GAP_SECONDS * rate), np.float32)
    pieces = [np.zeros(int(0.1 * rate), np.float32)]
    for w, word in enumerate(text.upper().split()):
        if w:
            pieces += [gap, _word_break(rate)]
        for i, letter in enumerate(word):
            if i or w:
                pieces.append(gap)
            pieces.append(_tone(300.0 * 1.45 ** TONE_LETTERS.index(letter), rate))
    pieces.append(np.zeros(int(0.1 * rate), np.float32))
    return np.concatenate(pieces)


#: Utterances of the tone alphabet: training and held-out ones share letters, not sentences.
TONE_TEXTS = ["BAD CAB", "DEAD BEAD", "ACE", "BED ADD", "CAB DECADE", "EBB", "DAB ACE BED", "BEE CAD",
              "ADE", "DECADE", "CEDE BAD", "ABBA", "BEAD EBB", "DAD"]
