"""Audio paths as manifests and importers handle them.

Paths are made absolute without resolving symlinks (a linked data folder keeps its name),
relative paths start from a given folder (the manifest's, or a Kaldi data dir), and
missing audio is reported with where it was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from asr_adapt.core.errors import ManifestError


def absolute_path(path: Path) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symlinks."""
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(path))))


def resolve_audio_path(audio: str, base: Path) -> Path:
    """``audio`` as an absolute path; a relative one starts from ``base`` (``~`` expanded)."""
    candidate = Path(os.path.expanduser(audio))
    return absolute_path(candidate if candidate.is_absolute() else base / candidate)


def check_audio_file(given: str, resolved: Path, where: str, *, relative_to: str) -> None:
    """Raise :class:`ManifestError` (at ``where``) unless ``resolved`` is an existing file."""
    if resolved.is_file():
        return
    if resolved.is_dir():
        raise ManifestError(f"{where}: audio {given!r} is a folder, not a file ({resolved})")
    if resolved.exists():
        raise ManifestError(f"{where}: audio {given!r} is not a regular file (a pipe or a device: {resolved}); "
                            "save the audio to a file")
    hint = "" if Path(given).is_absolute() else f"; relative paths start from {relative_to}"
    raise ManifestError(f"{where}: audio {given!r} not found (looked for {resolved}){hint}")


def relative_if_inside(audio: Path, folder: Path) -> str:
    """``audio`` relative to ``folder`` when it lies inside it, else absolute (POSIX style)."""
    audio = absolute_path(audio)
    if audio.is_relative_to(folder):
        return audio.relative_to(folder).as_posix()
    return audio.as_posix()
