"""Which backend serves a model: one table from transformers model types to families.

Adding a model family means a new backend module under :mod:`asr_adapt.models` and one
line here; nothing else in the package names a family.
"""

from __future__ import annotations

from typing import Any

from asr_adapt.core.errors import ModelError
from asr_adapt.models.base import Backend
from asr_adapt.models.ctc import CTC_BACKEND
from asr_adapt.models.whisper.backend import WhisperBackend


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
        return CTC_BACKEND
    raise ModelError(f"it is a {model_type or 'unknown'} model; asr-adapt serves Whisper and CTC speech models "
                     f"({', '.join(CTC_MODEL_TYPES[:4])}, ...)")


def backend_of(model: Any) -> Backend:
    """The backend of a loaded (possibly PEFT-wrapped) model."""
    return backend_for_config(model.config)


__all__ = ["CTC_MODEL_TYPES", "backend_for_config", "backend_of"]
