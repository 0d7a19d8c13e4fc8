"""API keys: who may use which profiles.

The keys file holds one line per key: the key's sha256 (never the key itself), the profiles
it may use (comma-separated; ``*`` for all), and an optional ``# label``::

    # asr-adapt API keys
    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 alice,bob  # Alice's laptop
    sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 *          # the team's notes app

``asr-adapt serve --add-key FILE --profiles alice,bob`` makes a key, appends its line and
prints the key once. Keys are compared as hashes, in constant time
(:func:`hmac.compare_digest`); the file is read again when it changes, so keys can be
added or revoked while the server runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from asr_adapt.core.errors import OptionsError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.profiles.info import is_profile_name

ALL = "*"
#: What every key starts with (so that a key pasted in the wrong place is recognisable).
KEY_PREFIX = "aa-"
_LINE = re.compile(r"sha256:(?P<hash>[0-9a-f]{64})\s+(?P<profiles>\S+)\s*(?:#\s*(?P<label>.*))?")
HEADER = ("# asr-adapt API keys: the sha256 of each key (never the key), then the profiles it may use\n"
          "# (comma-separated, * for all), then an optional # label. Made by: asr-adapt serve --add-key FILE\n")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``key_id`` names the key (a hash prefix, safe to log);
    ``profiles`` is None for every profile."""

    key_id: str
    profiles: frozenset[str] | None = None
    label: str = ""

    def may_use(self, profile: str) -> bool:
        """Whether this caller's key may use profile ``profile``."""
        return self.profiles is None or profile in self.profiles


#: The caller of a server without keys (which only listens on loopback).
LOCAL = Caller(key_id="local")


def hash_key(key: str) -> str:
    """What the keys file stores of a key: its sha256, in hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    sha256: str
    caller: Caller


def parse_keys(text: str, where: str) -> list[_Entry]:
    """The entries of a keys file; OptionsError (one line, with the line number) on garbage."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise OptionsError(f"{where}:{number}: expected 'sha256:<64 hex digits> PROFILES [# label]'")
        names = match["profiles"].split(",")
        if names != [ALL] and not all(is_profile_name(n) for n in names):
            raise OptionsError(f"{where}:{number}: profiles must be profile names separated by commas, or *")
        profiles = None if names == [ALL] else frozenset(names)
        caller = Caller(key_id=match["hash"][:12], profiles=profiles, label=(match["label"] or "").strip())
        entries.append(_Entry(match["hash"], caller))
    return entries


class KeyRing:
    """The keys of a keys file, read again whenever the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[_Entry] = []
        self._reload()

    def _reload(self) -> None:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            if self._stamp is None:  # at start-up: the operator's mistake, said at once
                raise OptionsError(f"cannot read the API keys file {self.path}: {error}") from None
            return  # while serving: keep the keys read last
        self._entries = parse_keys(text, str(self.path))
        self._stamp = stamp

    def check(self, key: str | None) -> Caller | None:
        """The caller holding ``key``, or None for a missing or unknown key."""
        with self._lock:
            try:
                self._reload()
            except OptionsError:
                pass  # a half-edited file: keep the keys read last
            entries = self._entries
        if not key:
            return None
        presented = hash_key(key)
        found = None
        for entry in entries:  # every entry is compared: the time taken says nothing
            if hmac.compare_digest(presented, entry.sha256):
                found = entry.caller
        return found


def add_key(path: str | Path, profiles: str, label: str = "") -> str:
    """Make a new key for ``profiles`` (``alice,bob`` or ``*``), append its hash to the keys
    file ``path`` (created, readable by its owner only), and return the key itself."""
    names = [n.strip() for n in profiles.split(",") if n.strip()]
    if names != [ALL] and (not names or not all(is_profile_name(n) for n in names)):
        raise OptionsError(f"--profiles must be profile names separated by commas, or *; got {profiles!r}")
    if any(ch in label for ch in "\r\n"):
        raise OptionsError("a key's label must be one line")
    path = Path(path)
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    except (OSError, UnicodeDecodeError) as error:
        raise OptionsError(f"cannot read the API keys file {path}: {error}") from None
    parse_keys(old, str(path))  # never append to a file the server would refuse
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    line = f"sha256:{hash_key(key)} {','.join(names)}" + (f"  # {label}" if label else "")
    try:
        write_text_atomic(path, old + ("" if old.endswith("\n") or not old else "\n") + line + "\n")
    except OSError as error:
        raise OptionsError(f"cannot write the API keys file {path}: {error.strerror or error}") from None
    return key


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


__all__ = ["ALL", "Caller", "KeyRing", "LOCAL", "add_key", "bearer_token", "hash_key", "parse_keys"]
