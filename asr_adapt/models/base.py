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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from asr_adapt.core.device import Placement

if TYPE_CHECKING:  # imported lazily at run time: torch and transformers are slow to import
    import torch

    from asr_adapt.models.options import TranscribeOptions

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
    #: What runs the model: "torch" (transformers; also trains) or "ct2" (CTranslate2, decoding
    #: only; :mod:`asr_adapt.models.engines`).
    runtime: str = "torch"

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
        """A ``(buffer, prompt) -> text`` callable for :class:`~asr_adapt.decode.streaming.StreamingProcessor`.
        It must read ``loaded.model`` at every call (profile switches change it).
        ``encoder_window``: see :func:`asr_adapt.decode.streaming.check_encoder_window` (Whisper)."""

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

    #: Feature frames of the fixed window the encoder reads (Whisper: 30 s, 3000 frames), or
    #: None where the model reads the audio as it is (CTC): training then has no short
    #: windows to plan (``TrainOptions.short_window_share``).
    full_window_frames: int | None = None

    def short_window_frames(self, samples: int, min_seconds: float) -> int:
        """Feature frames of a shortened window holding ``samples`` of audio (at least
        ``min_seconds``, at most ``full_window_frames``); families with a fixed window only."""
        raise NotImplementedError(f"{self.name} models read no fixed window to shorten")

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
    def lora_target_regex(self, targets: Sequence[str], where: str) -> str:
        """PEFT ``target_modules``: a full-match pattern over the model's module names.

        ``targets`` are layer roles by Whisper's names (q_proj, k_proj, v_proj, out_proj, fc1,
        fc2; a family maps them onto its own), ``where`` is "encoder", "decoder" or "both"."""


@dataclass
class LoadedModel:
    """A model ready to use, the backend that serves it, and a record of where it came from."""

    name: str                  # what the user asked for
    kind: str                  # "bundled", "ct2", "local" or "hub"
    path: str                  # the folder (or hub id) the transformers weights came from
    model: Any                 # transformers PreTrainedModel
    processor: Any             # feature extractor + tokenizer
    placement: Placement
    #: The :class:`Backend` that decodes, trains and streams this model, chosen when loaded.
    engine: Backend
    weights_sha256: str | None = None  # of the source weights, when known
    info: dict = field(default_factory=dict)

    @property
    def backend(self) -> str:
        """The model type recorded in profiles ("whisper", "wav2vec2", "hubert", ...)."""
        return self.model.config.model_type




@dataclass
class Example:
    """A piece of audio (16 kHz mono float32) and its transcript: what training batches hold."""

    audio: np.ndarray
    text: str


__all__ = ["Attempt", "Backend", "Example", "LoadedModel"]
