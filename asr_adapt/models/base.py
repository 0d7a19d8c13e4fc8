"""The seam between the product and a model family: one small interface, one class per family.

Everything that differs between Whisper (seq2seq: log-mel features, a decoder, ``generate``)
and CTC models (wav2vec2, HuBERT, WavLM: raw waveforms, one linear head, frame-wise
argmax) sits behind :class:`Backend`:

* loading a model and its processor from a folder or hub id;
* decoding batches of audio, and a decoder for one streaming buffer;
* training: turning transcripts into targets the model can learn, batches with labels, the
  task loss, and one encoder pass shared by labeled and unlabeled audio (domain confusion);
* encoder states with a mask of the frames that hold audio (domain head, projection);
* which linear layers LoRA adapts.

The rest of the package (training loop, early stopping, profiles, streaming policy, scoring)
is family-agnostic and asks ``loaded.engine`` (see :func:`backend_for_config`). The Whisper
implementation delegates to the code that was always there; the CTC one is in :mod:`.ctc`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from asr_adapt.core.errors import ModelError, OptionsError

if TYPE_CHECKING:  # imported lazily at run time: torch and transformers are slow to import
    import torch

    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.models.loading import LoadedModel
    from asr_adapt.models.transcriber import TranscribeOptions

#: ``attempt(what, load)``: run ``load`` and turn loading errors into one-line ModelErrors.
Attempt = Callable[[str, Callable[[], Any]], Any]


class Backend(ABC):
    """What the product needs from a model family. Stateless: one instance per family."""

    #: The family ("whisper", "ctc"). Profiles record the finer model type instead
    #: (``LoadedModel.backend``: "whisper", "wav2vec2", "hubert", ...).
    name: str = ""
    #: Whether the model reads a text prompt (Whisper) or not (CTC).
    takes_prompt: bool = False
    #: Beam width when the user does not choose one (``TranscribeOptions.beam_size`` None).
    default_beam_size: int = 1

    # ------------------------------------------------------------------ loading
    @abstractmethod
    def load(self, path: str, config: Any, placement: Any, attempt: Attempt, **where) -> tuple[Any, Any]:
        """(model, processor) from ``path``; loading errors go through ``attempt``."""

    # ------------------------------------------------------------------ decoding
    def check_decoding(self, options: TranscribeOptions) -> None:
        """Refuse decoding options this family cannot honour (one-line OptionsError)."""

    @abstractmethod
    def decode(self, loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions) -> list[str]:
        """Texts of a batch of non-silent pieces (each at most ~30 s)."""

    @abstractmethod
    def streaming_decoder(self, loaded: LoadedModel, max_new_tokens: int = 440,
                          encoder_window: str | float | None = None) -> Callable[[np.ndarray, str], str]:
        """A ``(buffer, prompt) -> text`` callable for :class:`~asr_adapt.streaming.StreamingProcessor`.
        It must read ``loaded.model`` at every call (profile switches change it).
        ``encoder_window``: see :func:`asr_adapt.streaming.check_encoder_window` (Whisper)."""

    # ------------------------------------------------------------------ training
    @abstractmethod
    def batcher(self, loaded: LoadedModel) -> Any:
        """The training-batch maker: ``target_text(text, id)``, ``target_problem(example)``,
        ``__call__(windows) -> batch`` (labels padded with -100), ``loss(model, batch)`` and
        ``joint_forward(model, windows, unlabeled) -> (task loss, hidden states, frame mask)``."""

    def check_transcripts(self, loaded: LoadedModel, transcripts: Sequence[tuple[str, str]]) -> None:
        """Refuse ``(id, text)`` pairs the model cannot be trained on, before anything is stored
        (the batcher's ``target_text`` would refuse them later, after the slow steps)."""
        batcher = self.batcher(loaded)
        for utterance_id, text in transcripts:
            batcher.target_text(text, utterance_id)

    def prepare_for_training(self, model: Any) -> None:
        """Called once LoRA is attached, before the first step (default: nothing to do)."""

    # ------------------------------------------------------------------ encoder states
    @abstractmethod
    def hidden_size(self, config: Any) -> int:
        """Width of the encoder states the domain head reads."""

    @abstractmethod
    def encoder_layers(self, config: Any) -> int:
        """Number of encoder blocks (hidden states hold one more: the embeddings)."""

    @abstractmethod
    def encoder_states(self, loaded: LoadedModel, audios: Sequence[np.ndarray]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(hidden states of every encoder layer, (batch, frames) mask of frames holding audio)."""

    # ------------------------------------------------------------------ LoRA
    @abstractmethod
    def lora_target_regex(self, settings: LoraSettings) -> str:
        """PEFT ``target_modules``: a full-match pattern over the model's module names."""


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
        from asr_adapt.models.transcriber import whisper_decode

        return whisper_decode(loaded, audios, options)

    def streaming_decoder(self, loaded, max_new_tokens=440, encoder_window=None):
        from asr_adapt.decode.streaming import WhisperDecoder

        return WhisperDecoder(loaded, max_new_tokens=max_new_tokens, encoder_window=encoder_window)

    def batcher(self, loaded):
        from asr_adapt.adapt.training import _Batcher

        return _Batcher(loaded)

    def hidden_size(self, config):
        return int(config.d_model)

    def encoder_layers(self, config):
        return int(config.encoder_layers)

    def encoder_states(self, loaded, audios):
        from asr_adapt.audio.io import SAMPLE_RATE
        from asr_adapt.adapt.domain import frame_mask

        encoder = loaded.model.get_encoder()
        features = loaded.processor.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
            return_tensors="pt").input_features
        dtype = next(encoder.parameters()).dtype
        output = encoder(features.to(loaded.placement.device, dtype), output_hidden_states=True)
        mask = frame_mask([len(a) for a in audios], output.hidden_states[0].shape[1])
        return output.hidden_states, mask.to(output.hidden_states[0].device)

    def lora_target_regex(self, settings):
        from asr_adapt.adapt.lora import CTC_ONLY_TARGETS

        wrong = [t for t in settings.targets if t in CTC_ONLY_TARGETS]
        if wrong:
            raise OptionsError(f"LoRA targets {', '.join(wrong)} are wav2vec2 layer names; Whisper's feed-forward "
                               "layers are fc1 and fc2")
        return settings.target_regex()


#: Model types served by the CTC backend (all share ``AutoModelForCTC`` + a CTC tokenizer).
#: (Conformer and SEW variants name their layers differently and are not served.)
CTC_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat")

_WHISPER = WhisperBackend()


def backend_for_config(config: Any) -> Backend:
    """The backend serving a transformers config; ModelError for a family we do not serve."""
    model_type = getattr(config, "model_type", None)
    if model_type == "whisper":
        return _WHISPER
    if model_type in CTC_MODEL_TYPES:
        from asr_adapt.models.ctc import CTC_BACKEND

        return CTC_BACKEND
    raise ModelError(f"it is a {model_type or 'unknown'} model; asr-adapt serves Whisper and CTC speech models "
                     f"({', '.join(CTC_MODEL_TYPES[:4])}, ...)")


def backend_of(model: Any) -> Backend:
    """The backend of a loaded (possibly PEFT-wrapped) model."""
    return backend_for_config(model.config)


__all__ = ["CTC_MODEL_TYPES", "Backend", "WhisperBackend", "backend_for_config", "backend_of"]
