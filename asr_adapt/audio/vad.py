"""Voice activity detection that works offline: frame energy against an adaptive noise floor.

Live transcription needs two answers from a VAD, both cheap: *is there any speech in this
stretch?* (so that silence is never sent to Whisper, which invents text for it) and *how
long has it been quiet?* (a pause ends a phrase: its text can be committed and its audio
dropped). A neural VAD would be more precise in loud rooms, but would add a model download;
an energy detector with a noise floor that follows the room is enough to find pauses
between phrases, which is all the streaming policy asks of it.

The detector is streaming: :meth:`EnergyVad.accept` takes blocks as they come, and every
query is about absolute sample positions of the stream (so the caller can drop audio from
its own buffer without telling the VAD, or tell it with :meth:`EnergyVad.forget_before`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.errors import OptionsError


@dataclass(frozen=True)
class VadOptions:
    """Settings of :class:`EnergyVad`, checked once here."""

    #: Analysis frame length in seconds (20 ms: short enough to see gaps between words).
    frame_seconds: float = 0.02
    #: A frame quieter than this (dBFS) is never speech, whatever the noise floor.
    min_level_db: float = -50.0
    #: A frame is speech when it is this many dB above the noise floor.
    margin_db: float = 12.0
    #: How fast the noise floor may rise (dB per second) when no quieter frame comes; it
    #: falls at once to any quieter frame. Slow rise: speech does not pull the floor up.
    floor_rise_db_per_second: float = 2.0

    def __post_init__(self) -> None:
        if not 0.005 <= self.frame_seconds <= 0.1:
            raise OptionsError(f"VAD frame must be between 5 and 100 ms, got {self.frame_seconds} s")
        if not -100.0 <= self.min_level_db <= 0.0:
            raise OptionsError(f"VAD minimum level must be between -100 and 0 dBFS, got {self.min_level_db}")
        if not 0.0 < self.margin_db <= 60.0:
            raise OptionsError(f"VAD margin must be between 0 and 60 dB, got {self.margin_db}")
        if self.floor_rise_db_per_second < 0:
            raise OptionsError("VAD floor rise must not be negative")

    @property
    def frame_samples(self) -> int:
        return max(1, round(self.frame_seconds * SAMPLE_RATE))


def frame_levels(audio: np.ndarray, frame: int) -> np.ndarray:
    """Level in dBFS of each whole ``frame``-sample frame of ``audio``."""
    count = len(audio) // frame
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    frames = np.asarray(audio[:count * frame], dtype=np.float64).reshape(count, frame)
    return 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)


class EnergyVad:
    """A streaming speech/non-speech decision per frame (see the module docstring)."""

    def __init__(self, options: VadOptions | None = None) -> None:
        self.options = options or VadOptions()
        self._frame = self.options.frame_samples
        self._rise = self.options.floor_rise_db_per_second * self.options.frame_seconds
        self._pending = np.zeros(0, dtype=np.float32)
        # Set by the first frame, capped at the absolute minimum so that a stream that
        # starts mid-word is still heard as speech.
        self._floor: float | None = None
        self._speech: list[bool] = []
        self._first_frame = 0          # absolute index of self._speech[0]
        self._last_speech: int | None = None  # absolute frame index of the latest speech frame

    @property
    def samples_seen(self) -> int:
        """Stream samples analysed so far (whole frames only)."""
        return (self._first_frame + len(self._speech)) * self._frame

    @property
    def noise_floor_db(self) -> float | None:
        return self._floor

    def accept(self, block: np.ndarray) -> None:
        """Analyse the next block of the stream (any length)."""
        data = np.concatenate([self._pending, np.asarray(block, dtype=np.float32).reshape(-1)])
        levels = frame_levels(data, self._frame)
        self._pending = data[len(levels) * self._frame:]
        opts = self.options
        for level in levels:
            # The floor follows quiet frames at once and creeps up slowly otherwise.
            if self._floor is None:
                self._floor = min(level, opts.min_level_db)
            self._floor = min(level, self._floor + self._rise)
            speech = level > max(opts.min_level_db, self._floor + opts.margin_db)
            if speech:
                self._last_speech = self._first_frame + len(self._speech)
            self._speech.append(bool(speech))

    def _frames(self, start: int, end: int) -> tuple[int, int]:
        """Frame index range (relative to the kept list) covering samples [start, end)."""
        first = max(0, start // self._frame - self._first_frame)
        last = min(len(self._speech), -(-end // self._frame) - self._first_frame)
        return first, max(first, last)

    def speech_seconds(self, start: int = 0, end: int | None = None) -> float:
        """Seconds of speech frames between stream samples ``start`` and ``end``."""
        first, last = self._frames(start, self.samples_seen if end is None else end)
        return sum(self._speech[first:last]) * self.options.frame_seconds

    def has_speech(self, start: int = 0, end: int | None = None, min_seconds: float = 0.1) -> bool:
        """True when at least ``min_seconds`` of speech lie in [start, end)."""
        return self.speech_seconds(start, end) >= min_seconds

    def trailing_silence(self) -> float:
        """Seconds since the last speech frame (all analysed audio when there was none)."""
        total = self._first_frame + len(self._speech)
        if self._last_speech is None:
            return total * self.options.frame_seconds
        return (total - 1 - self._last_speech) * self.options.frame_seconds

    def pauses(self, start: int, end: int, min_seconds: float) -> list[tuple[int, int]]:
        """Runs of non-speech of at least ``min_seconds`` in [start, end), as stream sample
        ranges, in order."""
        first, last = self._frames(start, end)
        need = max(1, round(min_seconds / self.options.frame_seconds))
        runs, run_start = [], None
        for i in range(first, last + 1):
            quiet = i < last and not self._speech[i]
            if quiet and run_start is None:
                run_start = i
            elif not quiet and run_start is not None:
                if i - run_start >= need:
                    runs.append(((run_start + self._first_frame) * self._frame,
                                 (i + self._first_frame) * self._frame))
                run_start = None
        return runs

    def forget_before(self, sample: int) -> None:
        """Drop decisions about audio before stream sample ``sample`` (keeps memory bounded)."""
        drop = min(len(self._speech), max(0, sample // self._frame - self._first_frame))
        if drop:
            del self._speech[:drop]
            self._first_frame += drop


def speech_mask(audio: np.ndarray, options: VadOptions | None = None) -> np.ndarray:
    """Per-frame speech decisions for a whole array (one bool per frame)."""
    vad = EnergyVad(options)
    vad.accept(audio)
    return np.array(vad._speech, dtype=bool)


__all__ = ["EnergyVad", "VadOptions", "frame_levels", "speech_mask"]
