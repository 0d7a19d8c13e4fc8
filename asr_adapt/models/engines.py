"""Which engine runs a model: ``torch`` (transformers + PEFT: decodes, streams and trains) or
``ct2`` (CTranslate2: Whisper only, decodes and streams, int8 on the CPU). Nothing heavy is
imported here: the CLI checks ``--engine``, ``--device`` and ``--dtype`` before any model loads.
"""

from __future__ import annotations

from typing import Any

from asr_adapt.core.device import resolve_device
from asr_adapt.core.errors import ModelError, OptionsError
from asr_adapt.models.whisper.ct2_runtime import ct2_placement

#: The engines ``--engine`` takes.
ENGINES = ("torch", "ct2")
#: Chosen by measurement (BENCHMARKS.md, "Engines"; README.md says why).
DEFAULT_ENGINE = "torch"


def check_engine(engine: str | None) -> str:
    """``engine`` (None: the default) if it is one of :data:`ENGINES`; OptionsError otherwise."""
    engine = DEFAULT_ENGINE if engine is None else str(engine).strip().lower()
    if engine not in ENGINES:
        raise OptionsError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    return engine


def resolve_placement(engine: str | None, device: str = "auto", dtype: str = "auto") -> Any:
    """Where ``engine`` runs and in what precision: a torch ``Placement``, or a
    :class:`~asr_adapt.models.whisper.ct2_runtime.CT2Placement`. DeviceError for a bad choice."""
    if check_engine(engine) == "ct2":
        return ct2_placement(device, dtype)
    return resolve_device(device, dtype)


def ct2_refusal(what: str, model_type: str | None) -> ModelError:
    """The one line for a CTC model (wav2vec2 & co.) asked to run on CTranslate2; ``what`` names
    it (``'path'``, ``profile 'alice'``)."""
    return ModelError(f"--engine ct2 runs Whisper models only (CTranslate2 has no CTC models such as "
                      f"wav2vec2); {what} is a {model_type or 'non-Whisper'} model: use --engine torch")


__all__ = ["DEFAULT_ENGINE", "ENGINES", "check_engine", "ct2_refusal", "resolve_placement"]
