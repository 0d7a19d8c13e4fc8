"""What a profile is called, where profiles live, and what its ``profile.json`` holds.

:class:`ProfileInfo` reads and writes ``profile.json`` (format :data:`FORMAT_VERSION`);
:func:`validate_profile_name` decides which names are allowed (each is also a folder name);
every problem a user can fix is a :class:`ProfileError` with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.core.files import file_in_the_way

#: The ``format_version`` this module writes, and the only one it reads.
FORMAT_VERSION = 1
PROFILE_FILE = "profile.json"
KINDS = ("speaker", "group")
MAX_NAME_LENGTH = 64
#: A profile.json is a few kilobytes (its history grows by a line per adaptation).
MAX_INFO_BYTES = 1 << 20
NAME_RULE = ("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
             "without '..'")
#: The characters of a profile name, an utterance id or an adapter version (all file names).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Names Windows keeps for devices, with or without an extension (``con``, ``nul.txt``, ``COM1``):
#: a profile folder cannot be called that there, so it is not a profile name anywhere.
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})


class ProfileError(AsrAdaptError):
    """A profile that cannot be found, created, read, saved, exported or imported."""


# --------------------------------------------------------------------------- names, places


def profiles_root() -> Path:
    """Where profiles live: ``$ASR_ADAPT_HOME/profiles``, else the user data folder."""
    override = os.environ.get("ASR_ADAPT_HOME")
    if override:
        home = Path(os.path.abspath(os.path.expanduser(override)))
        blocked = file_in_the_way(home)
        if blocked is not None:
            raise ProfileError(f"ASR_ADAPT_HOME={override}: {blocked} is a file, not a folder; "
                               "point ASR_ADAPT_HOME at a writable folder")
        return home / "profiles"
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
    elif not SAFE_NAME.fullmatch(name):
        problem = "contains a character other than letters, digits, '.', '_' or '-'"
    elif name.split(".")[0].upper() in WINDOWS_RESERVED:
        problem = "is a device name on Windows"
    elif name.endswith("."):
        problem = "ends with '.' (Windows drops it)"
    else:
        return name
    raise ProfileError(f"invalid profile name {name!r}: it {problem}; {NAME_RULE}")


def is_profile_name(name: str) -> bool:
    """True when ``name`` is a valid profile name (folders named otherwise are not profiles)."""
    try:
        validate_profile_name(name)
    except ProfileError:
        return False
    return True


def is_safe_name(text: str) -> bool:
    """True for one safe file or folder name: :data:`SAFE_NAME` characters, never ``..``."""
    return SAFE_NAME.fullmatch(text) is not None and ".." not in text


def utc_now() -> datetime:
    """The current time, in UTC (profile timestamps and adapter versions use it)."""
    return datetime.now(timezone.utc)


def iso_stamp(moment: datetime) -> str:
    """``moment`` as written in ``profile.json``: ISO 8601 to the second, ``Z`` for UTC."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- profile.json


@dataclass
class ProfileInfo:
    """The content of ``profile.json``.

    ``adapter`` is the current adapter folder relative to the profile folder
    (``adapters/<version>``) or ``None`` before the first training. ``history`` holds one
    small dict per committed adapter: ``{"version", "created", "metrics"}``.
    ``damaged`` is not stored: :func:`~asr_adapt.profiles.store.list_profiles` sets it (to
    the reason) for a profile whose ``profile.json`` cannot be read.
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
    #: The group profile this one's adapter starts from (``enroll --base-profile``), or None.
    base_profile: str | None = None
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
            "base_profile": self.base_profile,
            "settings": self.settings,
            "metrics": self.metrics,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "the profile") -> ProfileInfo:
        """Build from a parsed ``profile.json``; raise :class:`ProfileError` on garbage.

        ``where`` names the profile in messages (``profile.json of <where> is damaged: ...``).
        """
        if not isinstance(data, dict):
            raise _damaged(where, "expected a JSON object")
        version = _format_version(data, where)
        values = {**_text_fields(data, where), **_container_fields(data, where)}
        return cls(format_version=version, **values)


def _format_version(data: dict[str, Any], where: str) -> int:
    """The ``format_version`` of a parsed ``profile.json``, if this release reads it."""
    version = data.get("format_version")
    if "format_version" not in data:
        raise _damaged(where, "field 'format_version' is missing")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(where, f"field 'format_version' must be a positive integer, found {version!r}")
    if version > FORMAT_VERSION:
        raise ProfileError(f"profile.json of {where} has format {version}, newer than this "
                           f"asr-adapt reads ({FORMAT_VERSION}); upgrade asr-adapt")
    return version


def _text_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The string fields of a parsed ``profile.json`` (required ones and nullable ones)."""
    values: dict[str, Any] = {}
    for key in ("name", "kind", "base_model", "backend", "created", "updated"):
        if key not in data:
            raise _damaged(where, f"field {key!r} is missing")
        if not isinstance(data[key], str) or not data[key].strip():
            raise _damaged(where, f"field {key!r} must be a non-empty string")
        values[key] = data[key]
    if values["kind"] not in KINDS:
        raise _damaged(where, f"field 'kind' must be 'speaker' or 'group', found {values['kind']!r}")
    for key in ("base_weights_sha256", "adapter"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise _damaged(where, f"field {key!r} must be a string or null")
        values[key] = value
    if values["adapter"] is not None and not _is_adapter_path(values["adapter"]):
        raise _damaged(where, f"field 'adapter' must be 'adapters/<version>', found "
                              f"{values['adapter']!r}")
    base_profile = data.get("base_profile")
    if base_profile is not None and not (isinstance(base_profile, str) and is_profile_name(base_profile)):
        raise _damaged(where, f"field 'base_profile' must be a profile name or null, found {base_profile!r}")
    values["base_profile"] = base_profile
    return values


def _container_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``settings``, ``metrics`` (objects) and ``history`` (a list of objects)."""
    values: dict[str, Any] = {}
    for key, kind in (("settings", dict), ("metrics", dict), ("history", list)):
        value = data.get(key, kind())
        if not isinstance(value, kind):
            raise _damaged(where, f"field {key!r} must be a JSON {'object' if kind is dict else 'list'}")
        values[key] = value
    if not all(isinstance(entry, dict) for entry in values["history"]):
        raise _damaged(where, "field 'history' must be a list of objects")
    return values


def _is_adapter_path(text: str) -> bool:
    """``adapters/<one safe folder name>``: never absolute, never leaving the profile."""
    parts = text.split("/")
    return len(parts) == 2 and parts[0] == "adapters" and is_safe_name(parts[1])


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_info(info: ProfileInfo) -> str:
    """The text of ``profile.json`` for ``info`` (paths and numpy values made plain)."""
    return json.dumps(info.to_dict(), indent=2, ensure_ascii=False, default=_json_default) + "\n"


def read_info(folder: Path, where: str) -> ProfileInfo:
    """Read and validate ``folder/profile.json``; ``where`` names the profile in messages."""
    path = folder / PROFILE_FILE
    try:
        if path.stat().st_size > MAX_INFO_BYTES:
            raise _damaged(where, f"larger than {MAX_INFO_BYTES >> 20} MiB")
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
    except RecursionError:
        raise _damaged(where, "JSON nested too deeply") from None
    return ProfileInfo.from_dict(data, where)


def _damaged(where: str, problem: str) -> ProfileError:
    """The error for a ``profile.json`` that cannot be used."""
    return ProfileError(f"profile.json of {where} is damaged: {problem}; restore it from an "
                        "export, or remove the profile and enroll again")


__all__ = [
    "FORMAT_VERSION", "KINDS", "NAME_RULE", "PROFILE_FILE", "ProfileError", "ProfileInfo",
    "dumps_info", "profiles_root", "read_info", "validate_profile_name",
]
