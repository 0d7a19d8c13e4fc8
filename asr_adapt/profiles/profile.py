"""Profiles: one folder per speaker (or group) holding enrollment audio and LoRA adapters.

Layout, under :func:`profiles_root` (``$ASR_ADAPT_HOME/profiles`` or the platform's user
data folder)::

    <root>/<name>/profile.json          the commit point: written atomically, and last
    <root>/<name>/enrollment/manifest.jsonl + enrollment/<id>.flac   (16 kHz mono)
    <root>/<name>/unlabeled/manifest.jsonl + unlabeled/<id>.flac     kept audio without text
    <root>/<name>/adapters/<version>/   PEFT save_pretrained output
    <root>/<name>/reports/              compare reports and the like

Crash safety. Every change is staged beside its target and made visible by one rename, so
a run killed at any moment leaves the old state or the new one, never a mix:

* a new or replaced profile is built in ``<root>/.<name>.new-<pid>-<tag>`` and renamed
  into place after its ``profile.json`` is written (a replaced one is swapped out in the
  same step on Linux, else moved to ``.<name>.old-...`` just before); a removed profile is
  first renamed to ``<root>/.<name>.trash-<pid>-<tag>``, and never comes back;
* an adapter is written to ``adapters/<version>.partial-<pid>``, checked, renamed to
  ``adapters/<version>``, and only then named in ``profile.json``;
* an enrollment recording is written under a temporary name and renamed before its
  manifest line is appended (flushed and fsynced), so a line never points at a missing file.

Leftovers of a killed process (names carrying a process id that is no longer alive) are
removed the next time the profile, or the list of profiles, is opened. Names of staged
folders start with ``.``, which no profile name may, so they never clash with a profile.

Two processes writing the same profile at the same time are not coordinated: the last
``profile.json`` written wins (neither is ever torn).

Every problem a user can fix is raised as :class:`ProfileError` with a one-line message.
Export and import (one archive per profile) are in :mod:`asr_adapt.profiles.archive`.
"""

from __future__ import annotations

import ctypes
import errno
import json
import dataclasses
import logging
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.core.errors import AsrAdaptError, AudioError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.data.manifest import MANIFEST_NAME, UNKNOWN_SPEAKER, Utterance, read_manifest, write_manifest

log = logging.getLogger(__name__)

#: The ``format_version`` this module writes, and the only one it reads.
FORMAT_VERSION = 1
PROFILE_FILE = "profile.json"
KINDS = ("speaker", "group")
#: Files a PEFT ``save_pretrained`` folder must hold for an adapter to be usable.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Adapter folders kept after a commit: the current one and the previous one (rollback).
KEEP_ADAPTERS = 2
MAX_NAME_LENGTH = 64
NAME_RULE = ("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
             "without '..'")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION = re.compile(r"\d{8}T\d{6}Z(-\d+)?")
_PARTIAL = re.compile(r"(?P<version>.+)\.partial-(?P<pid>\d+)")
_STAGED = re.compile(r"\.(?P<name>.+)\.(?P<what>new|old|trash|import)-(?P<pid>\d+)-[0-9a-f]+")
_ENROLL_TMP = re.compile(r"\..+\.tmp-(?P<pid>\d+)\.flac")

#: Staging paths this process is writing right now (never cleaned as leftovers, even when
#: a previous process that died left the same pid in a name).
_ACTIVE: set[Path] = set()


class ProfileError(AsrAdaptError):
    """A profile that cannot be found, created, read, saved, exported or imported."""


# --------------------------------------------------------------------------- names, places


def profiles_root() -> Path:
    """Where profiles live: ``$ASR_ADAPT_HOME/profiles``, else the user data folder."""
    override = os.environ.get("ASR_ADAPT_HOME")
    if override:
        return Path(os.path.abspath(os.path.expanduser(override))) / "profiles"
    from platformdirs import user_data_dir

    return Path(os.path.abspath(user_data_dir("asr-adapt"))) / "profiles"


def validate_profile_name(name: str) -> str:
    """Return ``name`` if it is a valid profile name, else raise :class:`ProfileError`.

    A name is also a folder name on every platform: 1-64 ASCII letters, digits, ``.``,
    ``_`` or ``-``, starting with a letter or digit, never containing ``..``.
    """
    if not isinstance(name, str):
        raise ProfileError(f"profile name must be text, not {type(name).__name__}")
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is {len(name)} characters long"
    elif any(ch in name for ch in "/\\"):
        problem = "contains a path separator"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "contains a control character"
    elif ".." in name:
        problem = "contains '..'"
    elif not name[0].isascii() or not name[0].isalnum():
        problem = "does not start with a letter or digit"
    elif not _NAME.fullmatch(name):
        problem = "contains a character other than letters, digits, '.', '_' or '-'"
    else:
        return name
    raise ProfileError(f"invalid profile name {name!r}: it {problem}; {NAME_RULE}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _tag() -> str:
    return secrets.token_hex(4)


# --------------------------------------------------------------------------- profile.json


@dataclass
class ProfileInfo:
    """The content of ``profile.json``.

    ``adapter`` is the current adapter folder relative to the profile folder
    (``adapters/<version>``) or ``None`` before the first training. ``history`` holds one
    small dict per committed adapter: ``{"version", "created", "metrics"}``.
    ``damaged`` is not stored: :func:`list_profiles` sets it (to the reason) for a profile
    whose ``profile.json`` cannot be read.
    """

    name: str
    base_model: str = ""
    base_weights_sha256: str | None = None
    kind: str = "speaker"
    backend: str = "whisper"
    created: str = ""
    updated: str = ""
    adapter: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    damaged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``profile.json`` (without ``damaged``)."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "kind": self.kind,
            "base_model": self.base_model,
            "base_weights_sha256": self.base_weights_sha256,
            "backend": self.backend,
            "created": self.created,
            "updated": self.updated,
            "adapter": self.adapter,
            "settings": self.settings,
            "metrics": self.metrics,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "the profile") -> ProfileInfo:
        """Build from a parsed ``profile.json``; raise :class:`ProfileError` on garbage.

        ``where`` names the profile in messages (``profile.json of <where> is damaged: ...``).
        """
        def damaged(problem: str) -> ProfileError:
            return _damaged(where, problem)

        if not isinstance(data, dict):
            raise damaged("expected a JSON object")
        version = data.get("format_version")
        if "format_version" not in data:
            raise damaged("field 'format_version' is missing")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise damaged(f"field 'format_version' must be a positive integer, found {version!r}")
        if version > FORMAT_VERSION:
            raise ProfileError(f"profile.json of {where} has format {version}, newer than this "
                               f"asr-adapt reads ({FORMAT_VERSION}); upgrade asr-adapt")
        values: dict[str, Any] = {}
        for key in ("name", "kind", "base_model", "backend", "created", "updated"):
            if key not in data:
                raise damaged(f"field {key!r} is missing")
            if not isinstance(data[key], str) or not data[key].strip():
                raise damaged(f"field {key!r} must be a non-empty string")
            values[key] = data[key]
        if values["kind"] not in KINDS:
            raise damaged(f"field 'kind' must be 'speaker' or 'group', found {values['kind']!r}")
        for key in ("base_weights_sha256", "adapter"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise damaged(f"field {key!r} must be a string or null")
            values[key] = value
        if values["adapter"] is not None and not _is_adapter_path(values["adapter"]):
            raise damaged(f"field 'adapter' must be 'adapters/<version>', found "
                          f"{values['adapter']!r}")
        for key, kind in (("settings", dict), ("metrics", dict), ("history", list)):
            value = data.get(key, kind())
            if not isinstance(value, kind):
                raise damaged(f"field {key!r} must be a JSON {'object' if kind is dict else 'list'}")
            values[key] = value
        if not all(isinstance(entry, dict) for entry in values["history"]):
            raise damaged("field 'history' must be a list of objects")
        return cls(format_version=version, **values)


def _is_adapter_path(text: str) -> bool:
    """``adapters/<one safe folder name>``: never absolute, never leaving the profile."""
    parts = text.split("/")
    return (len(parts) == 2 and parts[0] == "adapters" and _NAME.fullmatch(parts[1]) is not None
            and ".." not in parts[1])


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(info: ProfileInfo) -> str:
    return json.dumps(info.to_dict(), indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _read_info(folder: Path, where: str) -> ProfileInfo:
    """Read and validate ``folder/profile.json``."""
    path = folder / PROFILE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"profile.json of {where} is missing; restore it from an export, "
                           "or remove the profile and enroll again") from None
    except OSError as error:
        raise ProfileError(f"cannot read {path} ({error.strerror}); check its permissions") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise _damaged(where, f"not valid JSON ({reason})") from None
    return ProfileInfo.from_dict(data, where)


def _damaged(where: str, problem: str) -> ProfileError:
    """The error for a ``profile.json`` that cannot be used."""
    return ProfileError(f"profile.json of {where} is damaged: {problem}; restore it from an "
                        "export, or remove the profile and enroll again")


# --------------------------------------------------------------------------- low-level helpers


def _fsync_dir(folder: Path) -> None:
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


def _fsync_tree(folder: Path) -> None:
    """Flush every file below ``folder``, and the folders themselves, to disk."""
    for current, _folders, files in os.walk(folder):
        for name in files:
            path = Path(current) / name
            if path.is_symlink():
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(current))


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


def _is_leftover(path: Path, pid: int) -> bool:
    """A staging path left by a process that is gone (or by an earlier life of our pid)."""
    if pid == os.getpid():
        return path not in _ACTIVE
    return not _pid_alive(pid)


def _remove(path: Path) -> None:
    """Delete a file or folder tree, ignoring what is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _rename_exchange(a: Path, b: Path) -> bool:
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
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _oserror_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


def _staging_path(root: Path, name: str, what: str) -> Path:
    return root / f".{name}.{what}-{os.getpid()}-{_tag()}"


def _install(staging: Path, target: Path, force: bool) -> None:
    """Move the complete profile folder ``staging`` to ``target``.

    Without ``force`` an existing ``target`` is an error. With it, the two folders are
    swapped in one step where the system allows (so that a profile is always at
    ``target``), else by two renames whose gap :func:`_recover` repairs after a crash;
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
        _fsync_dir(target.parent)
        return
    if not target.exists():
        os.rename(staging, target)
    elif _rename_exchange(staging, target):
        pass  # staging now holds the old profile
    else:
        old = _staging_path(target.parent, name, "old")
        _ACTIVE.add(old)
        try:
            os.rename(target, old)
            os.rename(staging, target)
        finally:
            _ACTIVE.discard(old)
        staging = old
    _fsync_dir(target.parent)
    _remove(staging)


def _recover(root: Path, only: str | None = None) -> None:
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
        if _is_leftover(entry, int(match["pid"])):
            staged.append((match["what"], match["name"], entry))
    # Finish committed creations first, then restore replaced profiles, then delete.
    order = {"new": 0, "old": 1, "trash": 2, "import": 3}
    for what, name, entry in sorted(staged, key=lambda item: order[item[0]]):
        target = root / name
        if what in ("new", "old") and not target.exists() and _name_ok(name):
            try:
                _read_info(entry, f"'{name}'")
                os.rename(entry, target)
                log.warning("recovered profile '%s' left by an interrupted run", name)
                continue
            except (ProfileError, OSError):
                pass
        log.info("removing leftover %s", entry)
        _remove(entry)


def _name_ok(name: str) -> bool:
    try:
        validate_profile_name(name)
    except ProfileError:
        return False
    return True


# --------------------------------------------------------------------------- Profile


class Profile:
    """One profile folder and its ``profile.json``.

    Get one with :meth:`create` or :meth:`open`; ``info`` changes are written by
    :meth:`save` (and by the methods that change the profile).
    """

    def __init__(self, path: Path, info: ProfileInfo) -> None:
        self.path = Path(path)
        self.info = info

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, path={str(self.path)!r})"

    # ----------------------------------------------------------------- places

    @property
    def name(self) -> str:
        """The profile's name (its folder name)."""
        return self.info.name

    @property
    def enrollment_dir(self) -> Path:
        """Folder of enrollment recordings (``<id>.flac``) and their manifest."""
        return self.path / "enrollment"

    @property
    def enrollment_manifest(self) -> Path:
        """The enrollment manifest (may not exist yet)."""
        return self.enrollment_dir / MANIFEST_NAME

    @property
    def unlabeled_dir(self) -> Path:
        """Folder reserved for unlabeled audio (not created until something uses it)."""
        return self.path / "unlabeled"

    @property
    def adapters_dir(self) -> Path:
        """Folder holding one sub-folder per committed adapter version."""
        return self.path / "adapters"

    @property
    def adapter_dir(self) -> Path | None:
        """The current adapter folder (PEFT format), or ``None`` before any training."""
        return self.path / self.info.adapter if self.info.adapter else None

    @property
    def previous_adapter_dir(self) -> Path | None:
        """The adapter before the current one, kept for rollback, if it still exists."""
        versions = [entry.get("version") for entry in self.info.history]
        current = self.info.adapter.split("/")[1] if self.info.adapter else None
        older = [v for v in versions if isinstance(v, str) and v != current
                 and _NAME.fullmatch(v) and ".." not in v]
        if not older:
            return None
        folder = self.adapters_dir / older[-1]
        return folder if folder.is_dir() else None

    @property
    def reports_dir(self) -> Path:
        """Folder for compare reports and the like."""
        return self.path / "reports"

    # ----------------------------------------------------------------- create / open

    @classmethod
    def create(cls, name: str, base_model: str, base_weights_sha256: str | None,
               backend: str = "whisper", kind: str = "speaker", force: bool = False) -> Profile:
        """Create an empty profile ``name`` and return it.

        An existing profile is an error unless ``force``; with ``force`` it is replaced
        only once the new one is complete (built beside it and swapped in by rename).
        """
        validate_profile_name(name)
        if kind not in KINDS:
            raise ProfileError(f"profile kind must be 'speaker' or 'group', not {kind!r}")
        if not isinstance(base_model, str) or not base_model.strip():
            raise ProfileError("a profile needs the name of its base model; give --model")
        root = profiles_root()
        _make_root(root)
        _recover(root, only=name)
        target = root / name
        if target.exists() and not force:
            raise ProfileError(f"profile '{name}' exists; use --force to replace it")
        stamp = _iso(_now())
        info = ProfileInfo(name=name, kind=kind, base_model=base_model,
                           base_weights_sha256=base_weights_sha256, backend=backend,
                           created=stamp, updated=stamp)
        staging = _staging_path(root, name, "new")
        _ACTIVE.add(staging)
        try:
            for folder in ("enrollment", "adapters", "reports"):
                (staging / folder).mkdir(parents=True)
            write_text_atomic(staging / PROFILE_FILE, _dumps(info))
            _install(staging, target, force)
        except OSError as error:
            raise ProfileError(f"cannot create profile '{name}' in {root} "
                               f"({_oserror_text(error)}); check free space and permissions") from error
        finally:
            _ACTIVE.discard(staging)
            if staging.exists():
                _remove(staging)
        return cls(target, info)

    @classmethod
    def open(cls, name: str) -> Profile:
        """Open the existing profile ``name``; clean up what killed runs left inside it."""
        folder = _existing_folder(name)
        info = _read_info(folder, f"'{name}'")
        info.name = name  # the folder name wins (a profile folder may have been renamed)
        profile = cls(folder, info)
        profile._clean_leftovers()
        return profile

    def _clean_leftovers(self) -> None:
        """Remove partial adapters and half-written recordings of dead processes."""
        for folder, pattern in ((self.adapters_dir, _PARTIAL), (self.enrollment_dir, _ENROLL_TMP),
                                (self.unlabeled_dir, _ENROLL_TMP)):
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match and _is_leftover(entry, int(match["pid"])):
                    log.info("removing leftover %s", entry)
                    _remove(entry)

    # ----------------------------------------------------------------- saving

    def save(self) -> None:
        """Write ``profile.json`` atomically (``updated`` set to now)."""
        self.info.updated = _iso(_now())
        text = _dumps(self.info)
        try:
            write_text_atomic(self.path / PROFILE_FILE, text)
        except OSError as error:
            raise ProfileError(f"saving profile.json of '{self.name}' failed "
                               f"({_oserror_text(error)}); the previous one is intact") from error

    def record_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` (WERs and the like) into the profile and save it.

        They also go into the history entry of the current adapter.
        """
        self.info.metrics.update(metrics)
        current = self.info.adapter.split("/")[1] if self.info.adapter else None
        if current and self.info.history and self.info.history[-1].get("version") == current:
            entry = self.info.history[-1]
            entry["metrics"] = {**(entry.get("metrics") or {}), **metrics}
        self.save()

    # ----------------------------------------------------------------- enrollment

    def enrollment_utterances(self) -> list[Utterance]:
        """The enrollment utterances, oldest first (an empty list before any)."""
        manifest = self.enrollment_manifest
        if not manifest.is_file():
            return []
        self._repair_manifest_tail()
        if manifest.stat().st_size == 0:
            return []
        return read_manifest(manifest)

    def _repair_manifest_tail(self, manifest: Path | None = None) -> None:
        """Drop a last line cut short by a crash (a line written whole keeps it)."""
        manifest = manifest or self.enrollment_manifest
        try:
            data = manifest.read_bytes()
        except FileNotFoundError:
            return
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:].decode("utf-8"))
            repair = b"\n"
        except ValueError:
            repair = None
        with open(manifest, "r+b") as handle:
            if repair is None:
                log.warning("%s: dropping a line cut short by an interrupted run", manifest)
                handle.truncate(cut)
            else:
                handle.seek(0, os.SEEK_END)
                handle.write(repair)
            handle.flush()
            os.fsync(handle.fileno())

    def _next_ids(self, existing: list[Utterance], count: int) -> list[str]:
        numbers = [int(u.id) for u in existing if u.id.isdigit()]
        start = max(numbers, default=0) + 1
        taken = {u.id for u in existing}
        ids: list[str] = []
        number = start
        while len(ids) < count:
            candidate = f"{number:04d}"
            if candidate not in taken:
                ids.append(candidate)
            number += 1
        return ids

    def _write_flac(self, utt_id: str, audio: np.ndarray, folder: Path | None = None) -> Path:
        """Write ``<id>.flac`` under a temporary name, flush it, and rename it into place."""
        folder = folder or self.enrollment_dir
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{utt_id}.flac"
        temp = folder / f".{utt_id}.tmp-{os.getpid()}.flac"
        _ACTIVE.add(temp)
        try:
            with open(temp, "w+b") as handle:
                sf.write(handle, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC",
                         subtype="PCM_16")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            _remove(temp)
            raise
        finally:
            _ACTIVE.discard(temp)
        _fsync_dir(folder)
        return final

    def add_enrollment_utterance(self, audio: np.ndarray, text: str,
                                 utterance_id: str | None = None,
                                 speaker: str | None = None) -> Utterance:
        """Store one recording (16 kHz mono float) and its transcript; return it.

        The FLAC is written (under a temporary name, then renamed) before its manifest line
        is appended and fsynced, so an interrupted run loses at most this utterance. Ids
        run ``0001``, ``0002``, ... after the highest existing one. ``speaker`` defaults to
        the speaker of the existing utterances when they share one, else the profile's name.
        """
        audio = _check_audio(audio)
        if not isinstance(text, str) or not text.strip():
            raise ProfileError("an enrollment utterance needs its transcript; the text is empty")
        existing = self.enrollment_utterances()
        if utterance_id is None:
            utterance_id = self._next_ids(existing, 1)[0]
        else:
            _check_utterance_id(utterance_id)
            if any(u.id == utterance_id for u in existing):
                raise ProfileError(f"profile '{self.name}' already has an enrollment utterance "
                                   f"{utterance_id!r}; choose another id")
        try:
            path = self._write_flac(utterance_id, audio)
        except OSError as error:
            raise ProfileError(f"saving recording {utterance_id} of '{self.name}' failed "
                               f"({_oserror_text(error)}); earlier recordings are intact") from error
        if speaker is None:
            speakers = {u.speaker for u in existing}
            # one speaker so far (an imported or renamed profile keeps its label), else the name
            speaker = speakers.pop() if len(speakers) == 1 else self.name
        utterance = Utterance(id=utterance_id, audio=path, text=" ".join(text.split()),
                              speaker=speaker, duration=len(audio) / SAMPLE_RATE)
        record = {"id": utterance.id, "audio": path.name, "text": utterance.text,
                  "speaker": utterance.speaker, "duration": round(utterance.duration, 3)}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            with open(self.enrollment_manifest, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            self._repair_manifest_tail()
            _remove(path)
            raise ProfileError(f"saving recording {utterance_id} of '{self.name}' failed "
                               f"({_oserror_text(error)}); earlier recordings are intact") from error
        return utterance

    # ----------------------------------------------------------------- unlabeled audio

    @property
    def unlabeled_manifest(self) -> Path:
        """The manifest of the profile's unlabeled audio (may not exist yet)."""
        return self.unlabeled_dir / MANIFEST_NAME

    def unlabeled_utterances(self) -> list[Utterance]:
        """Unlabeled audio kept for this profile (``text`` is None), oldest first."""
        manifest = self.unlabeled_manifest
        if not manifest.is_file():
            return []
        self._repair_manifest_tail(manifest)
        if manifest.stat().st_size == 0:
            return []
        return read_manifest(manifest)

    def add_unlabeled_audio(self, audio: np.ndarray, source: str | None = None) -> Utterance:
        """Keep a recording (16 kHz mono float) as unlabeled audio of this profile.

        Used by ``live --keep-audio`` and read back by domain-confusion adaptation. The FLAC
        is written and renamed into place before its manifest line is appended, as for
        enrollment, so an interrupted run loses at most this recording. ``source`` (e.g.
        ``"live"``) is stored in the manifest line.
        """
        audio = _check_audio(audio)
        existing = self.unlabeled_utterances()
        utterance_id = f"{_now().strftime('%Y%m%dT%H%M%SZ')}-{_tag()}"
        try:
            path = self._write_flac(utterance_id, audio, self.unlabeled_dir)
        except OSError as error:
            raise ProfileError(f"keeping audio for '{self.name}' failed ({_oserror_text(error)}); "
                               f"earlier audio is intact") from error
        speakers = {u.speaker for u in existing} | {u.speaker for u in self.enrollment_utterances()}
        speaker = speakers.pop() if len(speakers) == 1 else self.name
        utterance = Utterance(id=utterance_id, audio=path, text=None, speaker=speaker,
                              duration=len(audio) / SAMPLE_RATE)
        record = {"id": utterance.id, "audio": path.name, "text": None, "speaker": speaker,
                  "duration": round(utterance.duration, 3)}
        if source:
            record["source"] = source
        try:
            with open(self.unlabeled_manifest, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            self._repair_manifest_tail(self.unlabeled_manifest)
            _remove(path)
            raise ProfileError(f"keeping audio for '{self.name}' failed ({_oserror_text(error)}); "
                               f"earlier audio is intact") from error
        return utterance

    def import_enrollment(self, utterances: list[Utterance]) -> int:
        """Copy utterances into the enrollment, as 16 kHz mono FLAC; return how many.

        They are added after the existing ones, under new ids (the original id is kept as
        ``source_id``); text, speaker, domain and extra fields are kept. A speaker of
        ``"unknown"`` becomes the profile's name. The manifest is rewritten atomically once
        every file is in place, so a failure adds nothing. A profile whose enrollment then
        holds several speakers becomes a ``group`` profile.
        """
        utterances = list(utterances)
        if not utterances:
            return 0
        existing = self.enrollment_utterances()
        ids = self._next_ids(existing, len(utterances))
        added: list[Utterance] = []
        written: list[Path] = []
        try:
            for new_id, source in zip(ids, utterances):
                audio = _check_audio(load_audio(source.audio), where=str(source.audio))
                path = self._write_flac(new_id, audio)
                written.append(path)
                speaker = self.name if source.speaker == UNKNOWN_SPEAKER else source.speaker
                extra = {key: value for key, value in source.extra.items()}
                extra.setdefault("source_id", source.id)
                added.append(Utterance(id=new_id, audio=path, text=source.text, speaker=speaker,
                                       domain=source.domain, duration=len(audio) / SAMPLE_RATE,
                                       extra=extra))
            write_manifest(existing + added, self.enrollment_manifest)
        except BaseException as error:
            for path in written:
                _remove(path)
            if isinstance(error, OSError):
                raise ProfileError(f"importing recordings into '{self.name}' failed "
                                   f"({_oserror_text(error)}); its enrollment is unchanged") from error
            raise
        if len({u.speaker for u in existing + added}) > 1 and self.info.kind != "group":
            self.info.kind = "group"
            self.save()
        return len(added)

    # ----------------------------------------------------------------- adapters

    def _new_version(self) -> str:
        base = _now().strftime("%Y%m%dT%H%M%SZ")
        used = {str(entry.get("version")) for entry in self.info.history}
        try:
            used |= {entry.name.split(".partial-")[0] for entry in self.adapters_dir.iterdir()}
        except OSError:
            pass
        version, counter = base, 1
        while version in used:
            counter += 1
            version = f"{base}-{counter}"
        return version

    def commit_adapter(self, write: Callable[[Path], None], settings: dict[str, Any],
                       metrics: dict[str, Any]) -> Path:
        """Save a new adapter atomically and make it the profile's current one.

        ``write(folder)`` must fill ``folder`` with a PEFT adapter (``model.save_pretrained
        (folder)``). The folder is checked, renamed to ``adapters/<version>``, and only
        then named in ``profile.json`` (with ``settings``, ``metrics`` and a history entry).
        Older adapters but the previous one are deleted afterwards. If anything fails, the
        new files are removed, ``profile.json`` and the previous adapter are untouched, and
        :class:`ProfileError` is raised (``KeyboardInterrupt`` is re-raised as it is).
        Returns the new adapter folder.
        """
        adapters = self.adapters_dir
        version = self._new_version()
        partial = adapters / f"{version}.partial-{os.getpid()}"
        final = adapters / version
        renamed = False
        previous = self.info.adapter
        _ACTIVE.add(partial)
        try:
            adapters.mkdir(parents=True, exist_ok=True)
            partial.mkdir()
            write(partial)
            missing = [name for name in ADAPTER_FILES if not (partial / name).is_file()]
            if missing:
                raise ProfileError(f"saving the adapter of '{self.name}' failed (the trainer "
                                   f"wrote no {' or '.join(missing)}); the previous adapter is intact")
            _fsync_tree(partial)
            os.rename(partial, final)
            renamed = True
            _fsync_dir(adapters)
            stamp = _iso(_now())
            info = dataclasses.replace(
                self.info, adapter=f"adapters/{version}", settings=dict(settings),
                metrics=dict(metrics), updated=stamp,
                history=[*self.info.history, {"version": version, "created": stamp,
                                              "metrics": dict(metrics)}])
            write_text_atomic(self.path / PROFILE_FILE, _dumps(info))
        except BaseException as error:
            _remove(partial)
            if renamed and not self._names_adapter(f"adapters/{version}"):
                _remove(final)  # (an interrupt just after profile.json was replaced keeps it)
            if isinstance(error, ProfileError) or not isinstance(error, Exception):
                raise  # ours already; KeyboardInterrupt and SystemExit stay what they are
            raise ProfileError(f"saving the adapter of '{self.name}' failed "
                               f"({_oserror_text(error)}); the previous adapter is intact") from error
        finally:
            _ACTIVE.discard(partial)
        self.info = info
        self._prune_adapters(keep={version, previous.split("/")[1] if previous else None})
        return final

    def _names_adapter(self, adapter: str) -> bool:
        """True when ``profile.json`` on disk names ``adapter`` as the current one."""
        try:
            return json.loads((self.path / PROFILE_FILE).read_text("utf-8")).get("adapter") == adapter
        except (OSError, ValueError, AttributeError):
            return False

    def _prune_adapters(self, keep: set[str | None]) -> None:
        """Delete committed adapter folders other than ``keep`` (never a partial one)."""
        try:
            entries = list(self.adapters_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name in keep or not _VERSION.fullmatch(entry.name) or not entry.is_dir():
                continue
            log.info("removing old adapter %s", entry)
            _remove(entry)


def _check_audio(audio: Any, where: str = "the recording") -> np.ndarray:
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{where}: expected mono audio (a 1-D array), got shape {array.shape}")
    if array.size == 0:
        raise AudioError(f"{where}: holds no audio (zero length); record it again")
    if not np.all(np.isfinite(array)):
        raise AudioError(f"{where}: holds NaN or infinite samples; record it again")
    return array


def _check_utterance_id(utterance_id: str) -> None:
    if not isinstance(utterance_id, str) or not _NAME.fullmatch(utterance_id) \
            or ".." in utterance_id or len(utterance_id) > MAX_NAME_LENGTH:
        raise ProfileError(f"invalid utterance id {utterance_id!r}: it names a file, so "
                           f"{NAME_RULE}")


def _make_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProfileError(f"cannot create the profiles folder {root} ({_oserror_text(error)}); "
                           "set ASR_ADAPT_HOME to a writable folder") from None


def _profile_names(root: Path) -> list[str]:
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return sorted(entry.name for entry in entries if entry.is_dir() and _name_ok(entry.name))


def _missing_message(name: str, root: Path) -> str:
    names = _profile_names(root)
    if names:
        return f"no profile '{name}'; existing profiles: {', '.join(names)}"
    return (f"no profile '{name}', and there are no profiles yet in {root}; make one with "
            f"`asr-adapt enroll {name}`")


# --------------------------------------------------------------------------- many profiles


def _existing_folder(name: str) -> Path:
    """The folder of the existing profile ``name`` (after repairing a killed run's swap)."""
    validate_profile_name(name)
    root = profiles_root()
    _recover(root, only=name)
    folder = root / name
    if not folder.is_dir():
        raise ProfileError(_missing_message(name, root))
    return folder


def list_profiles() -> list[ProfileInfo]:
    """Every profile, sorted by name; one whose profile.json is unreadable has ``damaged``."""
    root = profiles_root()
    _recover(root)
    infos = []
    for name in _profile_names(root):
        try:
            info = _read_info(root / name, f"'{name}'")
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
    folder = _existing_folder(name)
    root = folder.parent
    trash = _staging_path(root, name, "trash")
    _ACTIVE.add(trash)
    try:
        os.rename(folder, trash)
        _fsync_dir(root)
        shutil.rmtree(trash)
    except OSError as error:
        if folder.exists():
            raise ProfileError(f"cannot remove profile '{name}' ({_oserror_text(error)}); "
                               "check the permissions of its folder") from error
        log.warning("profile '%s' removed, but deleting %s failed (%s); it is retried later",
                    name, trash, _oserror_text(error))
    finally:
        _ACTIVE.discard(trash)


__all__ = [
    "FORMAT_VERSION", "KINDS", "Profile", "ProfileError", "ProfileInfo", "list_profiles", "profiles_root", "remove_profile", "validate_profile_name",
]
