"""The profiles folder on disk: crash-safe creation, replacement, listing and removal.

Every change is staged beside its target and made visible by one rename, so a run killed
at any moment leaves the old state or the new one, never a mix:

* a new or replaced profile is built in ``<root>/.<name>.new-<pid>-<tag>`` and renamed
  into place after its ``profile.json`` is written (a replaced one is swapped out in the
  same step on Linux, else moved to ``.<name>.old-...`` just before); a removed profile is
  first renamed to ``<root>/.<name>.trash-<pid>-<tag>``, and never comes back;
* inside a profile, adapters (:mod:`asr_adapt.profiles.adapters`) and recordings
  (:mod:`asr_adapt.profiles.recordings`) are staged the same way.

Leftovers of a killed process (names carrying a process id that is no longer alive) are
removed the next time the profile, or the list of profiles, is opened (:func:`recover`).
Names of staged folders start with ``.``, which no profile name may, so they never clash
with a profile.

Two processes writing the same profile at the same time are not coordinated: the last
``profile.json`` written wins (neither is ever torn).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from asr_adapt.core.files import write_text_atomic
from asr_adapt.profiles.info import (
    PROFILE_FILE, ProfileError, ProfileInfo, dumps_info, is_profile_name, profiles_root, read_info,
    validate_profile_name,
)

log = logging.getLogger(__name__)

_STAGED = re.compile(r"\.(?P<name>.+)\.(?P<what>new|old|trash|import)-(?P<pid>\d+)-[0-9a-f]+")

#: Staging paths this process is writing right now (never cleaned as leftovers, even when
#: a previous process that died left the same pid in a name).
ACTIVE: set[Path] = set()


# --------------------------------------------------------------------------- low-level helpers


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def fsync_tree(folder: Path) -> None:
    """Flush every file below ``folder``, and the folders themselves, to disk."""
    for current, _folders, files in os.walk(folder):
        for name in files:
            path = Path(current) / name
            if path.is_symlink():
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(current))


def _pid_alive(pid: int) -> bool:
    """True when a process with this id exists (or cannot be ruled out)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def is_leftover(path: Path, pid: int) -> bool:
    """A staging path left by a process that is gone (or by an earlier life of our pid)."""
    if pid == os.getpid():
        return path not in ACTIVE
    return not _pid_alive(pid)


def remove_path(path: Path) -> None:
    """Delete a file or folder tree, ignoring what is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the platform or file system cannot, so that the caller falls back
    to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def oserror_text(error: BaseException) -> str:
    """A short reason for a failed file operation, for the ``(...)`` of a message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


def random_tag() -> str:
    """A short random hex tag that keeps staged and temporary names apart."""
    return secrets.token_hex(4)


def staging_path(root: Path, name: str, what: str) -> Path:
    """A fresh ``.<name>.<what>-<pid>-<tag>`` path in ``root`` (``what``: new, old, trash, import)."""
    return root / f".{name}.{what}-{os.getpid()}-{random_tag()}"


# --------------------------------------------------------------------------- staged installs


def install(staging: Path, target: Path, force: bool) -> None:
    """Move the complete profile folder ``staging`` to ``target``.

    Without ``force`` an existing ``target`` is an error. With it, the two folders are
    swapped in one step where the system allows (so that a profile is always at
    ``target``), else by two renames whose gap :func:`recover` repairs after a crash;
    the old profile is deleted last.
    """
    name = target.name
    if not force:
        if target.exists():
            raise ProfileError(f"profile '{name}' exists; use --force to replace it")
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():
                raise ProfileError(f"profile '{name}' exists; use --force to replace it") from None
            raise
        fsync_dir(target.parent)
        return
    if not target.exists():
        os.rename(staging, target)
    elif rename_exchange(staging, target):
        pass  # staging now holds the old profile
    else:
        old = staging_path(target.parent, name, "old")
        ACTIVE.add(old)
        try:
            os.rename(target, old)
            os.rename(staging, target)
        finally:
            ACTIVE.discard(old)
        staging = old
    fsync_dir(target.parent)
    remove_path(staging)


def recover(root: Path, only: str | None = None) -> None:
    """Finish or undo what killed processes left in ``root`` (all names, or just ``only``).

    A staged ``.new`` profile whose target is missing and whose ``profile.json`` is valid
    was committed but not yet moved: it is moved into place. A profile moved aside while
    being replaced (``.old``) is moved back if nothing took its place. Everything else
    left by a dead process is deleted, a removed profile (``.trash``) included.
    """
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    staged = []
    for entry in entries:
        match = _STAGED.fullmatch(entry.name)
        if not match or (only is not None and match["name"] != only):
            continue
        if is_leftover(entry, int(match["pid"])):
            staged.append((match["what"], match["name"], entry))
    # Finish committed creations first, then restore replaced profiles, then delete.
    order = {"new": 0, "old": 1, "trash": 2, "import": 3}
    for what, name, entry in sorted(staged, key=lambda item: order[item[0]]):
        target = root / name
        if what in ("new", "old") and not target.exists() and is_profile_name(name):
            try:
                read_info(entry, f"'{name}'")
                os.rename(entry, target)
                log.warning("recovered profile '%s' left by an interrupted run", name)
                continue
            except (ProfileError, OSError):
                pass
        log.info("removing leftover %s", entry)
        remove_path(entry)


def create_folder(root: Path, info: ProfileInfo, force: bool,
                  fill: Callable[[Path], None] | None = None) -> Path:
    """Build the profile folder of ``info`` beside ``root/<name>`` and install it.

    ``fill(folder)`` puts content (e.g. enrollment recordings) into the staged folder
    before ``profile.json`` is written and the folder is installed, so a profile replaced
    with ``force`` is swapped out only for a complete one: when ``fill`` fails (bad audio,
    a full disk, Ctrl-C) the existing profile is untouched and nothing half-built is left.
    Returns the installed folder. Raises :class:`ProfileError` when it exists (without
    ``force``) or cannot be written.
    """
    name = info.name
    target = root / name
    staging = staging_path(root, name, "new")
    ACTIVE.add(staging)
    try:
        for folder in ("enrollment", "adapters", "reports"):
            (staging / folder).mkdir(parents=True)
        if fill is not None:
            fill(staging)
        # profile.json last: a staged folder without it is debris, never "recovered" into place.
        write_text_atomic(staging / PROFILE_FILE, dumps_info(info))
        install(staging, target, force)
    except OSError as error:
        raise ProfileError(f"cannot create profile '{name}' in {root} "
                           f"({oserror_text(error)}); check free space and permissions") from error
    finally:
        ACTIVE.discard(staging)
        if staging.exists():
            remove_path(staging)
    return target


# --------------------------------------------------------------------------- many profiles


def make_root(root: Path) -> None:
    """Create the profiles folder, or say how to choose a writable one."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProfileError(f"cannot create the profiles folder {root} ({oserror_text(error)}); "
                           "set ASR_ADAPT_HOME to a writable folder") from None


def _profile_names(root: Path) -> list[str]:
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return sorted(entry.name for entry in entries if entry.is_dir() and is_profile_name(entry.name))


def _missing_message(name: str, root: Path) -> str:
    names = _profile_names(root)
    if names:
        return f"no profile '{name}'; existing profiles: {', '.join(names)}"
    return (f"no profile '{name}', and there are no profiles yet in {root}; make one with "
            f"`asr-adapt enroll {name}`")


def existing_folder(name: str) -> Path:
    """The folder of the existing profile ``name`` (after repairing a killed run's swap)."""
    validate_profile_name(name)
    root = profiles_root()
    recover(root, only=name)
    folder = root / name
    if not folder.is_dir():
        raise ProfileError(_missing_message(name, root))
    return folder


def list_profiles() -> list[ProfileInfo]:
    """Every profile, sorted by name; one whose profile.json is unreadable has ``damaged``."""
    root = profiles_root()
    recover(root)
    infos = []
    for name in _profile_names(root):
        try:
            info = read_info(root / name, f"'{name}'")
            info.name = name
        except ProfileError as error:
            info = ProfileInfo(name=name, damaged=str(error))
        infos.append(info)
    return infos


def remove_profile(name: str) -> None:
    """Delete the profile ``name`` (damaged or not) with everything in it.

    The folder is first renamed aside, so a crash halfway through deleting never leaves
    part of a profile that looks valid.
    """
    folder = existing_folder(name)
    root = folder.parent
    trash = staging_path(root, name, "trash")
    ACTIVE.add(trash)
    try:
        os.rename(folder, trash)
        fsync_dir(root)
        shutil.rmtree(trash)
    except OSError as error:
        if folder.exists():
            raise ProfileError(f"cannot remove profile '{name}' ({oserror_text(error)}); "
                               "check the permissions of its folder") from error
        log.warning("profile '%s' removed, but deleting %s failed (%s); it is retried later",
                    name, trash, oserror_text(error))
    finally:
        ACTIVE.discard(trash)


__all__ = ["list_profiles", "remove_profile"]
