"""Writing files so that a reader, or a run killed halfway, never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def copy_file_atomic(source: str | Path, path: str | Path) -> Path:
    """Copy ``source`` to ``path`` through a temporary file and a rename; return ``path``."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one.

    The text goes to a temporary file in the same folder (so that the rename stays on one
    file system), is flushed to disk, then renamed over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                         prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def save_figure_atomic(figure: Any, path: str | Path) -> Path:
    """Save a matplotlib ``figure`` as PNG at ``path`` through a temporary file and a rename,
    so that no half-written picture is left behind; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temp, format="png")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def file_in_the_way(folder: str | Path) -> Path | None:
    """``folder`` itself or the first of its parents that exists and is not a folder (so the
    folder can never be created there), or None when nothing is in the way."""
    folder = Path(folder)
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def check_output_folder(path: str | Path, flag: str = "--output-dir") -> Path:
    """Refuse, before any work, an output folder that cannot be one (a file, or a path below
    a file), so that a long run does not end in a failed write. Returns the path."""
    from asr_adapt.core.errors import OptionsError

    path = Path(path)
    blocked = file_in_the_way(path)
    if blocked == path:
        raise OptionsError(f"{flag} {path} is a file, not a folder; give a folder")
    if blocked is not None:
        raise OptionsError(f"{flag} {path}: {blocked} is a file, not a folder; give a folder")
    return path


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """Refuse, before any work, an output file path that is a folder, a pipe or a device
    (which the atomic rename would replace), or that lies below a file. Returns the path."""
    from asr_adapt.core.errors import OptionsError

    path = Path(path)
    if path.is_dir():
        raise OptionsError(f"{flag} {path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OptionsError(f"{flag} {path} is not a regular file (a pipe or a device); give a file path")
    above = file_in_the_way(path.parent)
    if above is not None:
        raise OptionsError(f"{flag} {path}: {above} is a file, not a folder; give another path")
    return path
