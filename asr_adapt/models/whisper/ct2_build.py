"""Making CTranslate2 Whisper folders with CTranslate2's own converter (``TransformersConverter``),
from a transformers folder or from a loaded (merged) model, and caching them: each is built
in a hidden folder beside its place and renamed into it when complete, so a reader never
sees half a model and two runs building the same one at once both end with one whole copy.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asr_adapt.core.errors import ModelError

#: What cached engine models store: the compute type (int8 on the CPU, float16 on a GPU) is
#: chosen when they are loaded (:func:`~asr_adapt.models.whisper.ct2_runtime.ct2_placement`),
#: so one copy serves both, at half the size of float32.
STORAGE_QUANTIZATION = "float16"
#: Files faster-whisper (and the ct2 engine) read beside a converted model.
CT2_EXTRA_FILES = ("tokenizer.json", "preprocessor_config.json")
#: Written beside a cached model: what it was built from.
BUILD_RECORD = "asr_adapt_build.json"


def save_transformers_folder(loaded: Any, folder: Path) -> None:
    """Save a loaded transformers model with its processor (and ``preprocessor_config.json``,
    which faster-whisper and older readers look for) into ``folder``."""
    loaded.model.save_pretrained(str(folder), safe_serialization=True)
    loaded.processor.save_pretrained(str(folder))
    feature_extractor = getattr(loaded.processor, "feature_extractor", None)
    if feature_extractor is not None:
        feature_extractor.save_pretrained(str(folder))


def convert_transformers_folder(source: Path, target: Path, quantization: str = STORAGE_QUANTIZATION) -> None:
    """CTranslate2's converter: the Whisper transformers folder ``source`` into the new folder
    ``target`` (which it creates), weights at ``quantization``, tokenizer and feature-extractor
    files copied beside them."""
    from ctranslate2.converters import TransformersConverter

    copy = [name for name in CT2_EXTRA_FILES if (Path(source) / name).is_file()]
    TransformersConverter(str(source), copy_files=copy, load_as_float16=quantization in ("float16", "int8_float16")
                          ).convert(str(target), quantization=quantization)


def convert_loaded(loaded: Any, target: Path, quantization: str = STORAGE_QUANTIZATION) -> None:
    """Convert a loaded Whisper model (a profile's adapter merged in, or a hub model) through a
    transformers folder saved beside ``target`` and removed afterwards."""
    merged = target.parent / f"{target.name}.transformers"
    try:
        merged.mkdir(parents=True)
        save_transformers_folder(loaded, merged)
        convert_transformers_folder(merged, target, quantization)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def is_built(folder: Path) -> bool:
    """A cached engine model is complete once its build record is there (written last)."""
    return (folder / BUILD_RECORD).is_file() and (folder / "model.bin").is_file()


def build_cached(target: Path, build: Callable[[Path], None], record: dict[str, Any]) -> Path:
    """``target``, built by ``build(new_folder)`` unless it is there already.

    ``build`` writes a hidden sibling folder (which it creates, as the converter does); the
    record goes in last and the folder is renamed into place. If another run finished the
    same model first, its copy is kept and this one dropped. A failure (a full disk) leaves
    nothing behind and raises a one-line ModelError."""
    if is_built(target):
        return target
    staging = target.parent / f".{target.name}.build-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        build(staging)
        (staging / BUILD_RECORD).write_text(json.dumps(record, indent=2, default=str))
        try:
            os.rename(staging, target)
        except OSError:
            if not is_built(target):  # not a finished twin: a real failure
                raise
    except OSError as error:
        reason = error.strerror or (str(error).strip().splitlines()[0][:160] if str(error).strip()
                                    else type(error).__name__)
        raise ModelError(f"cannot build the CTranslate2 model in {target.parent} ({reason}); free some space "
                         "or use --engine torch") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(staging.parent / f"{staging.name}.transformers", ignore_errors=True)
    return target


def staging_pid(name: str) -> int | None:
    """The process id in a staging folder's name (``.NAME.build-PID-TAG``), or None."""
    if not name.startswith(".") or ".build-" not in name:
        return None
    pid = name.rsplit(".build-", 1)[1].split("-", 1)[0].split(".", 1)[0]
    return int(pid) if pid.isdigit() else None


__all__ = ["BUILD_RECORD", "CT2_EXTRA_FILES", "STORAGE_QUANTIZATION", "build_cached", "convert_loaded",
           "convert_transformers_folder", "is_built", "save_transformers_folder", "staging_pid"]
