"""Audio sources: what hands out float32 mono blocks at :data:`asr_adapt.audio.io.SAMPLE_RATE`.

The code that consumes audio (recording enrollment takes, live transcription) never cares
where it comes from. An :class:`AudioSource` has:

* ``read(timeout)``: the next block, or ``None`` when nothing arrived within ``timeout``
  seconds (and, once ``ended`` is true, for good);
* ``discard_pending()``: drop what arrived but was not read yet (call it before a take, so
  that the take starts *now* and not with what the microphone heard minutes ago);
* ``overflows``: how many times the device dropped input because it was not read in time;
* ``ended`` and ``close()``.

:class:`ArraySource` replays an array (or a file) in blocks, optionally in real time: it is
what tests and file replays use instead of hardware. The microphone is
:class:`asr_adapt.audio.microphone.MicrophoneSource`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, load_audio, resample

#: Seconds of audio one :meth:`AudioSource.read` returns at most (50 ms).
BLOCK_SECONDS = 0.05


@runtime_checkable
class AudioSource(Protocol):
    """Anything that hands out float32 mono blocks at :data:`SAMPLE_RATE`."""

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next block, or ``None`` when none arrived within ``timeout`` (or ``ended``)."""
        ...

    def discard_pending(self) -> int:
        """Drop audio that arrived but was not read yet; return how many blocks."""
        ...

    @property
    def overflows(self) -> int:
        """How many times input was lost because it was not read in time."""
        ...

    @property
    def ended(self) -> bool:
        """True when no more audio will ever come."""
        ...

    def close(self) -> None:
        """Release the device (idempotent)."""
        ...


class ArraySource:
    """Replays an array in blocks, as an :class:`AudioSource` (tests, file replay).

    ``audio`` is mono float audio at ``sample_rate`` (resampled to 16 kHz here). With
    ``realtime`` the blocks come no faster than they would from a microphone: ``read``
    waits (up to its timeout) for the next block to be due, and :meth:`discard_pending`
    skips the blocks that fell due unread, as a microphone's queue would.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                 block_seconds: float = BLOCK_SECONDS, realtime: bool = False,
                 speed: float = 1.0) -> None:
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 2:
            data = data.mean(axis=1)
        if data.ndim != 1:
            raise ValueError("ArraySource needs mono audio (a 1-D array)")
        self.audio = resample(data, int(sample_rate))
        self.block = max(1, int(round(SAMPLE_RATE * block_seconds)))
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.position = 0
        self._started: float | None = None
        self._closed = False

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ArraySource:
        """Replay an audio file (any format :func:`asr_adapt.audio.load_audio` reads)."""
        return cls(load_audio(path), SAMPLE_RATE, **kwargs)

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def overflows(self) -> int:
        return 0

    @property
    def ended(self) -> bool:
        return self._closed or self.position >= len(self.audio)

    def _due(self) -> int:
        """Samples that a real-time device would have delivered by now."""
        if self._started is None:
            self._started = time.monotonic() - self.position / (SAMPLE_RATE * self.speed)
        return int((time.monotonic() - self._started) * SAMPLE_RATE * self.speed)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        if self.ended:
            return None
        end = min(self.position + self.block, len(self.audio))
        if self.realtime:
            wait = (end - self._due()) / (SAMPLE_RATE * self.speed)
            if wait > 0:
                if timeout is not None and wait > timeout:
                    time.sleep(max(0.0, timeout))
                    return None
                time.sleep(wait)
        block = self.audio[self.position:end].copy()
        self.position = end
        return block

    def discard_pending(self) -> int:
        if not self.realtime or self.ended:
            return 0
        due = min(self._due(), len(self.audio))
        skipped = max(0, due - self.position) // self.block
        self.position += skipped * self.block
        return skipped

    def close(self) -> None:
        self._closed = True


__all__ = [
    "BLOCK_SECONDS",
    "ArraySource",
    "AudioSource",
]
