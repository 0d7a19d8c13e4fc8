"""A profile's adapter versions: each committed atomically, the previous one kept for rollback.

An adapter is written to ``adapters/<version>.partial-<pid>``, checked, renamed to
``adapters/<version>``, and only then named in ``profile.json``; older versions but the
previous one are deleted afterwards. A killed run leaves at most a partial folder, which is
removed as a leftover when the profile is next opened.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asr_adapt.core import faults
from asr_adapt.core.files import write_text_atomic
from asr_adapt.profiles.info import PROFILE_FILE, ProfileError, ProfileInfo, dumps_info, iso_stamp, utc_now
from asr_adapt.profiles.store import ACTIVE, fsync_dir, fsync_tree, oserror_text, remove_path

log = logging.getLogger(__name__)

#: Files a PEFT ``save_pretrained`` folder must hold for an adapter to be usable.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Adapter folders kept after a commit: the current one and the previous one (rollback).
KEEP_ADAPTERS = 2
#: A committed version folder (``20250101T120000Z``, ``-2`` when two land in one second).
VERSION = re.compile(r"\d{8}T\d{6}Z(-\d+)?")
#: An adapter being written (a leftover once its process is gone).
PARTIAL = re.compile(r"(?P<version>.+)\.partial-(?P<pid>\d+)")


#: Files an adapter folder may hold: PEFT's weights (safetensors, never a pickle), config and card.
ADAPTER_FOLDER_FILES = frozenset({*ADAPTER_FILES, "README.md"})


def adapter_problem(folder: Path) -> str | None:
    """What makes ``folder`` unusable as a LoRA adapter, or None when it is one.

    Every tensor is read (a header that promises more than the file holds, an empty file or
    one holding no LoRA weights is found here, not at the first transcription); the weights
    file is safetensors, which holds data only, never code.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "adapter_config.json is not valid JSON"
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if peft_type != "LORA":
        return f"its adapter is not a LoRA adapter (peft_type {peft_type!r})"
    try:
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        return f"adapter_model.safetensors is not a readable safetensors file ({str(error)[:80]})"
    if not tensors:
        return "adapter_model.safetensors holds no weights"
    foreign = next((key for key in tensors if "lora_" not in key), None)
    if foreign is not None:
        return f"adapter_model.safetensors holds {foreign[:60]!r}, which is not a LoRA weight"
    import torch

    broken = next((key for key, value in tensors.items()
                   if value.is_floating_point() and not torch.isfinite(value).all()), None)
    if broken is not None:
        return f"the LoRA weight {broken[:60]!r} holds NaN or infinite values"
    return None


def new_version(adapters: Path, history: list[dict[str, Any]]) -> str:
    """A version name (the UTC time) used by no history entry and no folder in ``adapters``."""
    base = utc_now().strftime("%Y%m%dT%H%M%SZ")
    used = {str(entry.get("version")) for entry in history}
    try:
        used |= {entry.name.split(".partial-")[0] for entry in adapters.iterdir()}
    except OSError:
        pass
    version, counter = base, 1
    while version in used:
        counter += 1
        version = f"{base}-{counter}"
    return version


def commit_adapter(profile_dir: Path, info: ProfileInfo, write: Callable[[Path], None],
                   settings: dict[str, Any], metrics: dict[str, Any]) -> tuple[Path, ProfileInfo]:
    """Save a new adapter of the profile in ``profile_dir`` and name it in ``profile.json``.

    Returns the new adapter folder and the info now on disk. On any failure the new files
    are removed, ``profile.json`` and the previous adapter are untouched, and
    :class:`ProfileError` is raised (``KeyboardInterrupt`` is re-raised as it is). Older
    adapters but the previous one are deleted after a commit.
    """
    adapters = profile_dir / "adapters"
    version = new_version(adapters, info.history)
    partial = adapters / f"{version}.partial-{os.getpid()}"
    final = adapters / version
    renamed = False
    ACTIVE.add(partial)
    try:
        _write_checked(partial, write, info.name)
        faults.reached("adapter-written")
        os.rename(partial, final)
        renamed = True
        fsync_dir(adapters)
        faults.reached("adapter-renamed")
        committed = _with_adapter(info, version, settings, metrics)
        write_text_atomic(profile_dir / PROFILE_FILE, dumps_info(committed))
    except BaseException as error:
        remove_path(partial)
        if renamed and not _names_adapter(profile_dir, f"adapters/{version}"):
            remove_path(final)  # (an interrupt just after profile.json was replaced keeps it)
        if isinstance(error, ProfileError) or not isinstance(error, Exception):
            raise  # ours already; KeyboardInterrupt and SystemExit stay what they are
        raise ProfileError(f"saving the adapter of '{info.name}' failed "
                           f"({oserror_text(error)}); the previous adapter is intact") from error
    finally:
        ACTIVE.discard(partial)
    previous = info.adapter
    prune_adapters(adapters, keep={version, previous.split("/")[1] if previous else None})
    return final, committed


def _write_checked(partial: Path, write: Callable[[Path], None], name: str) -> None:
    """Let ``write`` fill the new folder ``partial``, check it holds an adapter, flush it."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    write(partial)
    missing = [file for file in ADAPTER_FILES if not (partial / file).is_file()]
    if missing:
        raise ProfileError(f"saving the adapter of '{name}' failed (the trainer "
                           f"wrote no {' or '.join(missing)}); the previous adapter is intact")
    fsync_tree(partial)


def _with_adapter(info: ProfileInfo, version: str, settings: dict[str, Any],
                  metrics: dict[str, Any]) -> ProfileInfo:
    """``info`` naming ``adapters/<version>`` as current, with its settings, metrics and history."""
    stamp = iso_stamp(utc_now())
    return dataclasses.replace(
        info, adapter=f"adapters/{version}", settings=dict(settings),
        metrics=dict(metrics), updated=stamp,
        history=[*info.history, {"version": version, "created": stamp,
                                 "metrics": dict(metrics)}])


def _names_adapter(profile_dir: Path, adapter: str) -> bool:
    """True when ``profile.json`` on disk names ``adapter`` as the current one."""
    try:
        return json.loads((profile_dir / PROFILE_FILE).read_text("utf-8")).get("adapter") == adapter
    except (OSError, ValueError, AttributeError):
        return False


def prune_adapters(adapters: Path, keep: set[str | None]) -> None:
    """Delete committed adapter folders other than ``keep`` (never a partial one)."""
    try:
        entries = list(adapters.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name in keep or not VERSION.fullmatch(entry.name) or not entry.is_dir():
            continue
        log.info("removing old adapter %s", entry)
        remove_path(entry)
