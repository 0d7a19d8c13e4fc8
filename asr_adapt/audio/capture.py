"""Recording one take from an audio source, stopping at the end of speech.

:class:`SpeechDetector` follows a stream of blocks frame by frame (speech heard? speech
ended?); :func:`record_take` pulls blocks from any :class:`~asr_adapt.audio.sources.AudioSource`
until end of speech (speech, then ``end_silence_seconds`` of silence), the length limit, or a
stop event (an interactive caller sets it when Enter is pressed). What counts as speech, and
whether the take is usable, is :mod:`asr_adapt.audio.takes`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asr_adapt.audio.devices import MicrophoneError
from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.audio.sources import AudioSource
from asr_adapt.audio.takes import (
    FRAME, FRAME_SECONDS, SILENT_SPEECH_SECONDS, RecordOptions, frame_levels, speech_threshold,
)


class SpeechDetector:
    """Frame-by-frame speech / end-of-speech detection on a stream of blocks.

    Until ``lead_in_seconds`` have been seen the threshold is unknown; then it is set from
    the quietest lead-in frames and the lead-in is classified after the fact.
    """

    def __init__(self, options: RecordOptions) -> None:
        self.options = options
        self.threshold: float | None = options.silence_rms
        self.noise_rms: float | None = None
        self.frames = 0
        self.voiced_frames = 0
        self.trailing_silent_frames = 0
        self._rest = np.empty(0, dtype=np.float32)
        self._lead_in: list[float] = []
        self._lead_in_frames = max(1, int(round(options.lead_in_seconds / FRAME_SECONDS)))

    def feed(self, block: np.ndarray) -> None:
        """Take the next block; whole 30 ms frames are classified, the rest waits for more."""
        data = np.concatenate([self._rest, np.asarray(block, dtype=np.float32).reshape(-1)])
        count = len(data) // FRAME
        self._rest = data[count * FRAME:]
        if count:
            for level in frame_levels(data[:count * FRAME]):
                self._frame(float(level))

    def _frame(self, level: float) -> None:
        self.frames += 1
        if self.threshold is not None:
            self._classify(level)
            return
        self._lead_in.append(level)
        if len(self._lead_in) >= self._lead_in_frames:
            self.noise_rms = float(np.percentile(self._lead_in, 20))
            self.threshold = speech_threshold(self.noise_rms, self.options)
            for earlier in self._lead_in:
                self._classify(earlier)
            self._lead_in = []

    def _classify(self, level: float) -> None:
        # Called only once the noise floor is known (lead-in frames wait for it).
        threshold = self.threshold if self.threshold is not None else float("inf")
        if level > threshold:
            self.voiced_frames += 1
            self.trailing_silent_frames = 0
        else:
            self.trailing_silent_frames += 1

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS

    @property
    def speech_seconds(self) -> float:
        return self.voiced_frames * FRAME_SECONDS

    @property
    def speech_heard(self) -> bool:
        return self.speech_seconds >= SILENT_SPEECH_SECONDS

    @property
    def ended(self) -> bool:
        """Enough speech, followed by ``end_silence_seconds`` of silence."""
        return (self.speech_seconds >= self.options.min_speech_seconds
                and self.trailing_silent_frames * FRAME_SECONDS
                >= self.options.end_silence_seconds - 1e-9)


@dataclass(frozen=True)
class LevelUpdate:
    """What a level meter gets after each block of a take."""

    block: np.ndarray
    seconds: float           # recorded so far in this take
    speech_heard: bool
    max_seconds: float


@dataclass
class Take:
    """A recorded take and why it stopped."""

    audio: np.ndarray
    stop_reason: str         # end_of_speech, max_length, stopped, no_speech, source_ended
    speech_seconds: float
    threshold: float | None
    overflows: int = 0       # input overflows the source reported during the take

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def record_take_detailed(source: AudioSource, options: RecordOptions | None = None,
                         on_level: Callable[[LevelUpdate], None] | None = None,
                         stop_event: threading.Event | None = None,
                         poll_seconds: float = 0.1) -> Take:
    """Record one take from ``source``; see :func:`record_take`.

    A :class:`MicrophoneError` from the source is re-raised with the audio recorded so far
    in its ``partial_audio`` attribute.
    """
    options = options or RecordOptions()
    detector = SpeechDetector(options)
    limit = int(round(options.max_seconds_per_prompt * SAMPLE_RATE))
    blocks: list[np.ndarray] = []
    total = 0
    overflows_before = source.overflows
    reason = "source_ended"
    while True:
        if stop_event is not None and stop_event.is_set():
            reason = "stopped"
            break
        try:
            block = source.read(timeout=poll_seconds)
        except MicrophoneError as error:
            error.partial_audio = _join(blocks)  # type: ignore[attr-defined]
            raise
        if block is None:
            if source.ended:
                reason = "source_ended"
                break
            continue
        block = np.asarray(block, dtype=np.float32).reshape(-1)[:limit - total]
        if block.size == 0:
            continue
        blocks.append(block)
        total += len(block)
        detector.feed(block)
        if on_level is not None:
            on_level(LevelUpdate(block=block, seconds=total / SAMPLE_RATE,
                                 speech_heard=detector.speech_heard,
                                 max_seconds=options.max_seconds_per_prompt))
        if detector.ended:
            reason = "end_of_speech"
            break
        if total >= limit:
            reason = "max_length"
            break
        timeout = options.no_speech_timeout_seconds
        if timeout is not None and not detector.speech_heard and total / SAMPLE_RATE >= timeout:
            reason = "no_speech"
            break
    return Take(audio=_join(blocks), stop_reason=reason, speech_seconds=detector.speech_seconds,
                threshold=detector.threshold, overflows=source.overflows - overflows_before)


def record_take(source: AudioSource, options: RecordOptions | None = None,
                on_level: Callable[[LevelUpdate], None] | None = None,
                stop_event: threading.Event | None = None) -> np.ndarray:
    """Record from ``source`` until end of speech, the length limit, or ``stop_event``.

    End of speech is ``min_speech_seconds`` of speech followed by ``end_silence_seconds``
    of silence; with no speech at all the take ends after ``no_speech_timeout_seconds``.
    ``on_level`` gets a :class:`LevelUpdate` after every block. Returns the whole take
    (float32, 16 kHz, lead-in and trailing silence included: see :func:`trim_silence`).
    """
    return record_take_detailed(source, options, on_level, stop_event).audio


def _join(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.float32)


__all__ = [
    "LevelUpdate",
    "SpeechDetector",
    "Take",
    "record_take",
    "record_take_detailed",
]
