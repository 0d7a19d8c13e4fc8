"""Whisper's decoder for one streaming buffer: greedy with a forced prefix of committed words."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.options import DEFAULT_ENCODER_WINDOW, check_encoder_window
from asr_adapt.models.repetition import is_runaway, says_twice, token_budget
from asr_adapt.models.whisper.encoder_window import encode, streaming_window_frames


class WhisperDecoder:
    """Greedy Whisper decoding of one buffer, with an optional text prompt and a forced prefix.

    Streaming decodes the same growing buffer again and again, and the words committed from
    it must come out again each time. With ``prefix`` they are fed to the decoder in one
    forward pass instead of being generated token by token, and only the rest is generated:
    fewer sequential decoder steps, so a shorter step and a lower commit latency. The loop is
    a plain greedy one (encoder once, key/value cache, Whisper's suppressed tokens), which
    gives the same tokens as ``model.generate`` without its per-token overhead; a repetition
    loop, or a prompt, goes through ``generate`` as in offline transcription.

    Reads ``loaded.model`` at every call, so a profile switch (which changes the model's
    weights in place, see :class:`asr_adapt.profiles.personal.AdapterSwitcher`) takes effect at the
    next step. On CUDA the features go in the model's dtype (float16/bfloat16).
    """

    forces_prefix = True

    def __init__(self, loaded, max_new_tokens: int = 440, language: str = "en",
                 encoder_window: str | float | None = None) -> None:
        self.loaded = loaded
        self.max_new_tokens = int(max_new_tokens)
        self.language = language
        self.encoder_window = check_encoder_window(DEFAULT_ENCODER_WINDOW if encoder_window is None
                                                   else encoder_window)
        self._start_tokens: list[int] | None = None

    def _token_budget(self, samples: int) -> int:
        return token_budget(self.max_new_tokens, samples / SAMPLE_RATE)

    def _features(self, audio: np.ndarray):
        features = self.loaded.processor.feature_extractor(
            [np.asarray(audio, dtype=np.float32)], sampling_rate=SAMPLE_RATE, return_tensors="pt",
            return_attention_mask=True)
        placement = self.loaded.placement
        return (features.input_features.to(placement.device, dtype=placement.dtype),
                features.attention_mask.to(placement.device))

    def _window_frames(self, inputs) -> int:
        """Feature frames the encoder reads: all 3000 (30 s), or the buffer plus a margin
        (see :func:`check_encoder_window`)."""
        return streaming_window_frames(self.encoder_window, self.loaded.info, self._samples, inputs.shape[-1])

    def start_tokens(self) -> list[int]:
        """The decoder's start sequence: start of transcript, (language, task,) no timestamps."""
        if self._start_tokens is None:
            config = self.loaded.model.generation_config
            tokens = [self.loaded.model.config.decoder_start_token_id]
            if getattr(config, "is_multilingual", False):
                tokens += [config.lang_to_id[f"<|{self.language}|>"], config.task_to_id["transcribe"]]
            tokens.append(config.no_timestamps_token_id)
            self._start_tokens = tokens
        return self._start_tokens

    def __call__(self, audio: np.ndarray, prompt: str = "", prefix: Sequence[str] = ()) -> str:
        inputs, attention_mask = self._features(audio)
        self._samples = len(audio)
        budget = self._token_budget(len(audio))
        if prompt.strip():
            return self._generate(inputs, attention_mask, budget, prompt)
        tokenizer = self.loaded.processor.tokenizer
        forced = tokenizer.encode(" " + " ".join(prefix), add_special_tokens=False) if prefix else []
        frames, full = self._window_frames(inputs), inputs.shape[-1]
        tokens = self._greedy(inputs, forced, max(budget, len(forced) + 8), frames)
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if frames < full and says_twice(text.split()):
            # With little silence after the speech, a short window sometimes makes Whisper
            # say a phrase twice in a row (measured: 6 of 10 start offsets of two joined
            # sample sentences); the full window does not. Speech that really repeats
            # itself comes out of the full window as well.
            tokens = self._greedy(inputs, forced, max(budget, len(forced) + 8), full)
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if is_runaway(text):  # a repetition loop: as offline, retry without repeated 4-grams
            text = self._generate(inputs, attention_mask, budget, "", no_repeat_ngram_size=4)
        return text

    def _greedy(self, inputs, forced: list[int], max_tokens: int, frames: int) -> list[int]:
        """Greedy decoding after the start sequence and ``forced``; returns forced + new tokens."""
        model = self.loaded.model
        config = model.generation_config
        device = self.loaded.placement.device
        suppress = torch.tensor(list(config.suppress_tokens or []), dtype=torch.long, device=device)
        begin_suppress = torch.tensor(list(config.begin_suppress_tokens or []), dtype=torch.long, device=device)
        eos = config.eos_token_id
        new: list[int] = []
        with torch.inference_mode():
            encoded = encode(model, inputs, frames)
            decoder, head = model.get_decoder(), model.get_output_embeddings()
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            cache_keyword = _cache_keyword(decoder)
            step = torch.tensor([self.start_tokens() + forced], dtype=torch.long, device=device)
            for _ in range(max(0, max_tokens - len(forced))):
                hidden = decoder(input_ids=step, encoder_hidden_states=encoded, use_cache=True,
                                 **{cache_keyword: cache}).last_hidden_state
                logits = head(hidden[:, -1]).float()
                if suppress.numel():
                    logits[:, suppress] = -float("inf")
                if not forced and not new and begin_suppress.numel():
                    logits[:, begin_suppress] = -float("inf")
                token = int(logits.argmax(-1))
                if token == eos:
                    break
                new.append(token)
                step = torch.tensor([[token]], dtype=torch.long, device=device)
        return forced + new

    def _generate(self, inputs, attention_mask, budget: int, prompt: str, **extra) -> str:
        processor, model = self.loaded.processor, self.loaded.model
        kwargs = {"do_sample": False, "num_beams": 1, "attention_mask": attention_mask, "max_new_tokens": budget}
        if getattr(model.generation_config, "is_multilingual", False):
            kwargs.update(language=self.language, task="transcribe")
        if prompt.strip():
            kwargs["prompt_ids"] = processor.get_prompt_ids(prompt.strip(), return_tensors="pt").to(inputs.device)
        with torch.inference_mode():
            tokens = model.generate(inputs, **kwargs, **extra)
        return processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)[0].strip()


def _cache_keyword(decoder) -> str:
    """The name of the decoder's key/value cache argument: ``cache`` in newer transformers
    (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"




