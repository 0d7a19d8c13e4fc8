"""The ct2 engine behind the :class:`~asr_adapt.models.base.Backend` seam: Whisper decoded by
CTranslate2 on the same pieces the torch engine decodes (the :class:`Transcriber` still cuts,
batches across files and skips silence), with the same short encoder windows, token caps and
repetition retries, and a streaming decoder for ``live``.

It only decodes: training, encoder states and LoRA need the torch engine. Nothing here imports
torch or transformers, so a run that finds its CTranslate2 model already converted starts in a
fraction of a second and a fraction of the memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.errors import ModelError
from asr_adapt.models.base import Backend, LoadedModel
from asr_adapt.models.options import DEFAULT_ENCODER_WINDOW, TranscribeOptions, check_encoder_window
from asr_adapt.models.repetition import is_runaway, says_twice, token_budget
from asr_adapt.models.whisper.constants import FULL_WINDOW_FRAMES
from asr_adapt.models.whisper.decode import offline_window_frames, redo_doubled_in_full_window, retry_runaways
from asr_adapt.models.whisper.encoder_window import streaming_window_frames, window_frames


def _decode_only(what: str) -> ModelError:
    return ModelError(f"{what} needs the torch engine: the ct2 engine only decodes (use --engine torch)")


def ct2_decode(loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions,
               no_repeat_ngram_size: int = 0) -> list[str]:
    """Greedy (or beam) decoding of a batch of pieces of at most 30 s by CTranslate2."""
    model = loaded.model
    frames = offline_window_frames(loaded, audios, options)
    budget = token_budget(options.max_new_tokens, max(len(a) for a in audios) / SAMPLE_RATE)
    start = model.start_tokens(options.language)
    tokens = model.generate(model.features(audios, frames), [start] * len(audios), options.beam_size or 1, budget,
                            no_repeat_ngram_size=no_repeat_ngram_size)
    texts = [model.text(t) for t in tokens]
    if frames < FULL_WINDOW_FRAMES:
        texts = redo_doubled_in_full_window(
            lambda pieces, full: ct2_decode(loaded, pieces, full, no_repeat_ngram_size), audios, texts, options)
    if not no_repeat_ngram_size:
        texts = retry_runaways(lambda pieces: ct2_decode(loaded, pieces, options, 4), audios, texts)
    return texts


class CT2StreamDecoder:
    """Greedy decoding of one streaming buffer by CTranslate2, with an optional text prompt and
    a forced prefix of committed words: what :class:`~asr_adapt.models.whisper.stream_decoder.WhisperDecoder`
    does with torch, step for step. Reads ``loaded.model`` at every call (a profile switch
    replaces it)."""

    forces_prefix = True

    def __init__(self, loaded: LoadedModel, max_new_tokens: int = 440, language: str = "en",
                 encoder_window: str | float | None = None) -> None:
        self.loaded = loaded
        self.max_new_tokens = int(max_new_tokens)
        self.language = language
        self.encoder_window = check_encoder_window(DEFAULT_ENCODER_WINDOW if encoder_window is None
                                                   else encoder_window)

    def __call__(self, audio: np.ndarray, prompt: str = "", prefix: Sequence[str] = ()) -> str:
        model = self.loaded.model
        features = model.features([audio])
        budget = token_budget(self.max_new_tokens, len(audio) / SAMPLE_RATE)
        start = model.start_tokens(self.language)
        if prompt.strip():  # as the torch decoder: a prompt goes with the full window
            return model.text(model.generate(features, [model.prompt_tokens(prompt) + start], 1, budget)[0])
        forced = model.encode_text(" " + " ".join(prefix)) if prefix else []
        room = max(budget, len(forced) + 8) - len(forced)
        frames = streaming_window_frames(self.encoder_window, self.loaded.info, len(audio))
        text = model.text(model.generate(features[:, :, :frames], [start + forced], 1, room)[0])
        if frames < FULL_WINDOW_FRAMES and says_twice(text.split()):
            text = model.text(model.generate(features, [start + forced], 1, room)[0])
        if is_runaway(text):
            text = model.text(model.generate(features, [start], 1, budget, no_repeat_ngram_size=4)[0])
        return text


class CT2WhisperBackend(Backend):
    """Whisper decoded by CTranslate2 (``--engine ct2``); decoding only."""

    name = "whisper"
    runtime = "ct2"
    takes_prompt = True
    default_beam_size = 5
    full_window_frames = FULL_WINDOW_FRAMES

    def load(self, path, config, placement, attempt, **where):
        raise _decode_only("loading a transformers model")

    def decode(self, loaded, audios, options):
        return ct2_decode(loaded, audios, options)

    def streaming_decoder(self, loaded, max_new_tokens=440, encoder_window=None):
        return CT2StreamDecoder(loaded, max_new_tokens=max_new_tokens, encoder_window=encoder_window)

    def batcher(self, loaded):
        raise _decode_only("training")

    def short_window_frames(self, samples, min_seconds):
        return window_frames(samples, min_seconds, FULL_WINDOW_FRAMES)

    def hidden_size(self, config):
        raise _decode_only("reading encoder states")

    def encoder_layers(self, config):
        raise _decode_only("reading encoder states")

    def encoder_states(self, loaded, audios):
        raise _decode_only("reading encoder states")

    def lora_target_regex(self, targets, where):
        raise _decode_only("LoRA")


#: The one instance (backends are stateless).
CT2_WHISPER = CT2WhisperBackend()

__all__ = ["CT2StreamDecoder", "CT2WhisperBackend", "CT2_WHISPER", "ct2_decode"]
