"""asr_adapt: personalized speech recognition with LoRA adapters for Whisper and wav2vec2.

The public API (see :mod:`asr_adapt.api` and README.md, "Use it from Python")::

    import asr_adapt

    profile = asr_adapt.enroll("alice", "recordings/alice")
    asr_adapt.adapt_profile(profile)
    print(asr_adapt.transcribe(["meeting.wav"], profile="alice")[0].text)

Names are imported on first use (PEP 562), so ``import asr_adapt`` and ``asr-adapt --help``
stay quick and do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public names, all defined in :mod:`asr_adapt.api`.
__all__ = [
    "AdaptReport", "AsrAdaptError", "Comparison", "DomainOptions", "LoadedModel", "LoraSettings", "Profile",
    "TrainOptions", "TranscribeOptions", "Transcript", "adapt_profile", "compare", "enroll", "load_model",
    "open_profile", "transcribe",
]

if TYPE_CHECKING:
    from asr_adapt.api import (
        AdaptReport, Comparison, DomainOptions, LoadedModel, LoraSettings, Profile, TrainOptions,
        TranscribeOptions, Transcript, adapt_profile, compare, enroll, load_model, open_profile, transcribe,
    )
    from asr_adapt.core.errors import AsrAdaptError


def __getattr__(name: str) -> Any:
    if name == "AsrAdaptError":
        return importlib.import_module("asr_adapt.core.errors").AsrAdaptError
    if name in __all__:
        return getattr(importlib.import_module("asr_adapt.api"), name)
    raise AttributeError(f"module 'asr_adapt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
