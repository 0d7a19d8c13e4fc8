"""One run at a time changes a profile: an advisory lock per profile name.

Two ``asr-adapt adapt alice`` started together would both train, and the one that commits
second deletes adapter folders the first just named (only the current and previous versions
are kept). A run that changes a profile's adapter or replaces the whole profile holds the lock
of that name; a second run is refused at once, in one line, rather than waiting behind a
training that may take an hour. The lock files live beside the profiles folder (in
``locks/``), so that the profile folders themselves stay exactly what the user put there;
the operating system drops a lock when its process dies, even by ``kill -9``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from asr_adapt.profiles.info import ProfileError, profiles_root
from asr_adapt.profiles.store import oserror_text


@contextmanager
def profile_lock(name: str, action: str) -> Iterator[None]:
    """Hold the lock of profile ``name`` while ``action`` (e.g. "adapt") runs; ProfileError
    at once if another process holds it."""
    folder = profiles_root().parent / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"{name}.lock"))
        lock.acquire(timeout=0)
    except Timeout:
        raise ProfileError(f"profile '{name}' is being changed by another asr-adapt run; wait for it to "
                           f"finish, then {action} again") from None
    except OSError as error:
        raise ProfileError(f"cannot lock profile '{name}' in {folder} ({oserror_text(error)}); "
                           "check free space and permissions") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def lock_if_free(name: str) -> Iterator[bool]:
    """Hold the lock of profile ``name`` if no other process does: yields True then, else
    False (and never waits). For tidying that must not race a run in progress."""
    try:
        with profile_lock(name, "retry"):
            yield True
            return
    except ProfileError:
        pass
    yield False


__all__ = ["lock_if_free", "profile_lock"]
