"""The Whisper backend: loading, decoding, streaming, training batches and LoRA targets of
Whisper (seq2seq) models, behind :class:`asr_adapt.models.base.Backend`."""

from __future__ import annotations

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.errors import ModelError
from asr_adapt.models.base import Backend
from asr_adapt.models.whisper.batcher import WhisperBatcher
from asr_adapt.models.whisper.decode import whisper_decode
from asr_adapt.models.whisper.constants import FULL_WINDOW_FRAMES
from asr_adapt.models.whisper.encoder_window import frame_mask, window_frames
from asr_adapt.models.whisper.lora import whisper_lora_regex
from asr_adapt.models.whisper.stream_decoder import WhisperDecoder


class WhisperBackend(Backend):
    """Whisper (seq2seq): the code paths the product was built on, reached through the seam."""

    name = "whisper"
    takes_prompt = True
    # Whisper's own decoding (openai-whisper, faster-whisper) searches a beam of 5.
    default_beam_size = 5

    def load(self, path, config, placement, attempt, **where):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        model = attempt("weights", lambda: WhisperForConditionalGeneration.from_pretrained(
            str(path), dtype=placement.dtype, **where))
        processor = attempt("processor (feature extractor + tokenizer)",
                            lambda: WhisperProcessor.from_pretrained(str(path), **where))
        # A folder without its vocabulary files still "loads" an empty tokenizer; catch it
        # here rather than as gibberish output later.
        if len(processor.tokenizer) < model.config.vocab_size // 2:  # Whisper: 50363 of 51864 (timestamps)
            raise ModelError(f"the tokenizer of '{path}' is incomplete ({len(processor.tokenizer)} tokens for a "
                             f"vocabulary of {model.config.vocab_size}); the folder lacks tokenizer.json or vocab.json")
        return model, processor

    def decode(self, loaded, audios, options):
        with torch.inference_mode():
            return whisper_decode(loaded, audios, options)

    def streaming_decoder(self, loaded, max_new_tokens=440, encoder_window=None):
        return WhisperDecoder(loaded, max_new_tokens=max_new_tokens, encoder_window=encoder_window)

    def batcher(self, loaded):
        return WhisperBatcher(loaded)

    #: Whisper reads fixed 30 s windows, which training may shorten (``plan_epoch``).
    full_window_frames = FULL_WINDOW_FRAMES

    def short_window_frames(self, samples, min_seconds):
        return window_frames(samples, min_seconds, FULL_WINDOW_FRAMES)

    def hidden_size(self, config):
        return int(config.d_model)

    def encoder_layers(self, config):
        return int(config.encoder_layers)

    def encoder_states(self, loaded, audios):
        encoder = loaded.model.get_encoder()
        features = loaded.processor.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
            return_tensors="pt").input_features
        dtype = next(encoder.parameters()).dtype
        output = encoder(features.to(loaded.placement.device, dtype), output_hidden_states=True)
        mask = frame_mask([len(a) for a in audios], output.hidden_states[0].shape[1])
        return output.hidden_states, mask.to(output.hidden_states[0].device)

    def lora_target_regex(self, targets, where):
        return whisper_lora_regex(targets, where)



__all__ = ["WhisperBackend"]
