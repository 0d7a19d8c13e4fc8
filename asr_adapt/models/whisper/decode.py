"""Offline Whisper decoding of a batch of pieces: ``generate`` (greedy or beam), short encoder
windows, and the retries that keep repetition loops out of transcripts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import reads_short_windows
from asr_adapt.models.repetition import compression_ratio, is_runaway, says_twice, token_budget
from asr_adapt.models.whisper.constants import FULL_WINDOW_FRAMES
from asr_adapt.models.whisper.encoder_window import encode, window_frames


#: The shortest encoder window "auto" gives a short-window profile offline (its training's minimum).
OFFLINE_MIN_WINDOW_SECONDS = 4.0


def _generate_kwargs(model, options: TranscribeOptions) -> dict:
    kwargs = {"max_new_tokens": options.max_new_tokens, "num_beams": options.beam_size or 1, "do_sample": False}
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(language=options.language, task="transcribe")
    return kwargs


def beam_search_cache():
    """An encoder-decoder cache for beam search that leaves the cross-attention cache alone.

    transformers reorders every cached tensor after each beam step, the encoder's keys and
    values too (for tiny.en, batch 8 x 5 beams: ~740 MB copied per token). All beams of one
    input share those, and a beam only ever continues a beam of its own input, so the
    reorder is a costly identity. Skipping it gives the same tokens; on an idle 2-core CPU
    it is level, with another process competing for memory bandwidth 2-3x faster
    (BENCHMARKS.md)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class SharedCrossAttentionCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx):
            self.self_attention_cache.reorder_cache(beam_idx)

    return SharedCrossAttentionCache(DynamicCache(), DynamicCache())


def generate_cache_keyword(model) -> str:
    """The name under which ``model.generate`` takes a cache object: ``cache`` where
    transformers renames ``past_key_values`` to it (deprecated there, removed in 6.0), or
    where ``cache`` is a parameter of its own; ``past_key_values`` in older releases. A PEFT
    model (the server's resident adapters) passes its arguments on to its base model's."""
    get_base_model = getattr(model, "get_base_model", None)
    if callable(get_base_model):
        model = get_base_model()
    generate = model.generate
    if "cache" in inspect.signature(generate).parameters:
        return "cache"
    layer = getattr(generate, "__func__", generate)
    while layer is not None:  # the deprecation decorators wrap generate, one layer each
        closure = inspect.getclosurevars(layer).nonlocals if inspect.isfunction(layer) else {}
        if closure.get("old_name") == "past_key_values" and closure.get("new_name") == "cache":
            return "cache"
        layer = getattr(layer, "__wrapped__", None)
    return "past_key_values"


def whisper_decode(loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions,
                   **overrides) -> list[str]:
    """Greedy (or beam) Whisper ``generate`` over a batch of pieces of at most 30 s."""
    processor = loaded.processor
    features = processor.feature_extractor(
        [np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
        return_tensors="pt", return_attention_mask=True)
    placement = loaded.placement
    inputs = features.input_features.to(placement.device, dtype=placement.dtype)
    kwargs = _generate_kwargs(loaded.model, options)
    longest = max(len(a) for a in audios) / SAMPLE_RATE
    kwargs["max_new_tokens"] = token_budget(kwargs["max_new_tokens"], longest)
    kwargs.update(overrides)
    if kwargs["num_beams"] > 1:
        kwargs[generate_cache_keyword(loaded.model)] = beam_search_cache()
    attention_mask = features.attention_mask.to(placement.device)
    frames = offline_window_frames(loaded, audios, options)
    if frames < inputs.shape[-1]:
        from transformers.modeling_outputs import BaseModelOutput

        encoded = encode(loaded.model, inputs, frames)
        tokens = loaded.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                                       attention_mask=attention_mask[:, :frames], **kwargs)
    else:
        tokens = loaded.model.generate(inputs, attention_mask=attention_mask, **kwargs)
    texts = [text.strip() for text in processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    if frames < inputs.shape[-1]:
        texts = redo_doubled_in_full_window(lambda pieces, full: whisper_decode(loaded, pieces, full, **overrides),
                                            audios, texts, options)
    if not overrides:
        texts = retry_runaways(lambda pieces: whisper_decode(loaded, pieces, options, no_repeat_ngram_size=4),
                               audios, texts)
    return texts


def offline_window_frames(loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions) -> int:
    """Feature frames the encoder reads for this batch: 3000 (Whisper's 30 s), or, for a short
    window (see ``TranscribeOptions.encoder_window``), the longest piece plus a margin."""
    if not reads_short_windows(loaded, options):
        return FULL_WINDOW_FRAMES
    window = OFFLINE_MIN_WINDOW_SECONDS if options.encoder_window == "auto" else options.encoder_window
    return window_frames(max(len(a) for a in audios), float(window), FULL_WINDOW_FRAMES)



def redo_doubled_in_full_window(decode: Callable[[list[np.ndarray], TranscribeOptions], list[str]],
                                audios: list[np.ndarray], texts: list[str], options: TranscribeOptions) -> list[str]:
    """A short window with little silence after the speech sometimes makes Whisper say a
    phrase twice in a row (as in live decoding); the full window does not. Such pieces, and
    repetition loops, are decoded again (``decode(pieces, options)``) over the full window."""
    redo = [i for i, text in enumerate(texts) if says_twice(text.split()) or is_runaway(text)]
    if redo:
        again = decode([audios[i] for i in redo], replace(options, encoder_window="full"))
        for i, text in zip(redo, again):
            texts[i] = text
    return texts


def retry_runaways(decode_without_repeats: Callable[[list[np.ndarray]], list[str]], audios: list[np.ndarray],
                   texts: list[str]) -> list[str]:
    """Decode again, forbidding repeated 4-grams (``decode_without_repeats``), whatever came out
    as a loop (Whisper's own test: text that compresses too well). Deterministic, unlike
    temperature fallback."""
    for i, text in enumerate(texts):
        if is_runaway(text):
            retry = decode_without_repeats([audios[i]])[0]
            if compression_ratio(retry) < compression_ratio(text):
                texts[i] = retry
    return texts
