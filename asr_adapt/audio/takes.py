"""What makes a good take: recording options, levels, and the checks on a recorded take.

Pure functions on arrays, no device and no profile: :class:`RecordOptions` (validated on
creation), :func:`dbfs`, :func:`frame_levels`, :func:`speech_threshold`, :func:`level_meter`,
:func:`check_take` (is this take usable?) and :func:`trim_silence`. Recording a take from a
source is :mod:`asr_adapt.audio.capture`.

Levels. The first ``lead_in_seconds`` of a take measure the noise floor; a 30 ms frame is
speech when its RMS is ``speech_margin_db`` above that floor, the threshold clamped to
[``silence_rms_floor``, ``silence_rms_ceiling``] (or fixed by ``silence_rms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, rms
from asr_adapt.core.errors import OptionsError

#: Levels are measured on 30 ms frames.
FRAME_SECONDS = 0.03
FRAME = int(round(FRAME_SECONDS * SAMPLE_RATE))
#: Less speech than this in a take is "no speech heard".
SILENT_SPEECH_SECONDS = 0.1

NO_SPEECH_MESSAGE = "no speech heard - move closer or check the input device"


@dataclass(frozen=True)
class RecordOptions:
    """How takes are recorded and judged. Validated on creation (:class:`OptionsError`)."""

    #: A take stops at this length whatever happens.
    max_seconds_per_prompt: float = 20.0
    #: End of speech: this much silence after speech stops the take.
    end_silence_seconds: float = 1.2
    #: A take needs this much speech (frames above the threshold) to count.
    min_speech_seconds: float = 0.6
    #: Stop a take in which no speech was heard after this long (``None``: wait to the max).
    no_speech_timeout_seconds: float | None = 8.0
    #: Fixed speech threshold (RMS of a 30 ms frame); ``None`` measures the noise floor.
    silence_rms: float | None = None
    #: The start of a take that measures the noise floor (speech in it still counts).
    lead_in_seconds: float = 0.3
    #: A frame is speech when this many dB above the noise floor ...
    speech_margin_db: float = 10.0
    #: ... and the threshold is never below this (about -50 dBFS) ...
    silence_rms_floor: float = 0.003
    #: ... nor above this (about -30 dBFS; a noise floor measured during speech).
    silence_rms_ceiling: float = 0.03
    #: Samples at or above this magnitude are clipped ...
    clip_level: float = 0.99
    #: ... and a take with more than this fraction of them is rejected as too loud.
    max_clipped_fraction: float = 0.001
    #: Silence kept before the first and after the last speech when a take is trimmed.
    padding_seconds: float = 0.25

    def __post_init__(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
                bound = ">= 0" if allow_zero else "> 0"
                raise OptionsError(f"{name} must be a number {bound}, not {value!r}")
            return float(value)

        longest = positive("max_seconds_per_prompt")
        end = positive("end_silence_seconds")
        speech = positive("min_speech_seconds")
        if end + speech > longest:
            raise OptionsError(f"max_seconds_per_prompt ({longest:g}) must exceed "
                               f"end_silence_seconds + min_speech_seconds ({end + speech:g})")
        if self.no_speech_timeout_seconds is not None:
            positive("no_speech_timeout_seconds")
        positive("speech_margin_db", allow_zero=True)
        floor = positive("silence_rms_floor")
        ceiling = positive("silence_rms_ceiling")
        if floor > ceiling or ceiling >= 1:
            raise OptionsError(f"need silence_rms_floor <= silence_rms_ceiling < 1, not "
                               f"{floor:g} and {ceiling:g}")
        if self.silence_rms is None:
            if positive("lead_in_seconds") < FRAME_SECONDS:
                raise OptionsError(f"lead_in_seconds must be at least {FRAME_SECONDS:g} to "
                                   "measure the noise floor (or set silence_rms)")
        elif positive("silence_rms") >= 1:
            raise OptionsError(f"silence_rms must be below 1, not {self.silence_rms!r}")
        positive("lead_in_seconds", allow_zero=True)
        clip = positive("clip_level")
        if clip > 1:
            raise OptionsError(f"clip_level must be in (0, 1], not {clip:g}")
        if positive("max_clipped_fraction", allow_zero=True) >= 1:
            raise OptionsError("max_clipped_fraction must be below 1")
        positive("padding_seconds", allow_zero=True)


# --------------------------------------------------------------------------- levels


def dbfs(value: float) -> float:
    """An RMS or peak value in dB relative to full scale (-120 for silence)."""
    return 20.0 * float(np.log10(max(float(value), 1e-6)))


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """RMS of each whole 30 ms frame (one value for a shorter, non-empty input)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    count = len(audio) // FRAME
    if count == 0:
        return np.array([rms(audio)]) if audio.size else np.empty(0)
    frames = audio[:count * FRAME].astype(np.float64).reshape(count, FRAME)
    return np.sqrt(np.mean(np.square(frames), axis=1))


def speech_threshold(noise_rms: float, options: RecordOptions) -> float:
    """The frame RMS above which a frame counts as speech, given the noise floor."""
    if options.silence_rms is not None:
        return float(options.silence_rms)
    raised = noise_rms * 10 ** (options.speech_margin_db / 20)
    return float(np.clip(raised, options.silence_rms_floor, options.silence_rms_ceiling))


def _take_threshold(levels: np.ndarray, options: RecordOptions) -> float:
    """Threshold for a whole take: its noise floor is its quietest frames."""
    noise = float(np.percentile(levels, 10)) if levels.size else 0.0
    return speech_threshold(noise, options)


def level_meter(block: np.ndarray, width: int = 24, floor_db: float = -60.0) -> str:
    """A one-line text level meter: ``[#########---------] -23.4 dBFS`` (+ ``CLIP``)."""
    block = np.asarray(block, dtype=np.float32)
    level = dbfs(rms(block))
    peak = float(np.max(np.abs(block))) if block.size else 0.0
    filled = int(round(width * min(1.0, max(0.0, (level - floor_db) / -floor_db))))
    bar = "#" * filled + "-" * (width - filled)
    shown = f"{level:6.1f} dBFS" if level > -100 else "  -inf dBFS"
    return f"[{bar}] {shown}" + (" CLIP" if peak >= 0.99 else "")


# --------------------------------------------------------------------------- judging takes

#: What :func:`check_take` can say of a take (:attr:`TakeVerdict.kind`).
OK, SILENT, CLIPPED, TOO_SHORT = "ok", "silent", "clipped", "too_short"


@dataclass(frozen=True)
class TakeVerdict:
    """Whether a take is usable, and why not (``message`` is meant for the user)."""

    kind: str                  # OK, SILENT, CLIPPED or TOO_SHORT
    message: str
    duration: float            # seconds in the take
    speech_seconds: float      # seconds of frames above the speech threshold
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float

    @property
    def ok(self) -> bool:
        return self.kind == OK


def _percent(fraction: float) -> str:
    value = 100.0 * fraction
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def check_take(audio: np.ndarray, options: RecordOptions | None = None) -> TakeVerdict:
    """Judge a take: silent, clipped (too loud), too short, or ok - in that order."""
    options = options or RecordOptions()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    levels = frame_levels(audio)
    speech = 0.0
    if levels.size:
        speech = float(np.count_nonzero(levels > _take_threshold(levels, options))) * FRAME_SECONDS
        speech = min(speech, len(audio) / SAMPLE_RATE)
    clipped = float(np.mean(np.abs(audio) >= options.clip_level)) if audio.size else 0.0
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if speech < SILENT_SPEECH_SECONDS:
        kind, message = SILENT, NO_SPEECH_MESSAGE
    elif clipped > options.max_clipped_fraction:
        kind, message = CLIPPED, (f"too loud: {_percent(clipped)}% of samples clipped - move "
                                  "back or lower the input gain")
    elif speech < options.min_speech_seconds:
        kind, message = TOO_SHORT, (f"too short: only {speech:.1f} s of speech heard - read the "
                                    "whole sentence")
    else:
        kind, message = OK, f"ok: {speech:.1f} s of speech, peak {dbfs(peak):.0f} dBFS"
    return TakeVerdict(kind=kind, message=message, duration=len(audio) / SAMPLE_RATE,
                       speech_seconds=speech, rms_dbfs=dbfs(rms(audio)), peak_dbfs=dbfs(peak),
                       clipped_fraction=clipped)


def trim_silence(audio: np.ndarray, options: RecordOptions | None = None,
                 padding_seconds: float | None = None) -> np.ndarray:
    """Cut the silence before the first and after the last speech, keeping some padding.

    Audio without any speech frame comes back whole (as a copy).
    """
    options = options or RecordOptions()
    pad = int(round((options.padding_seconds if padding_seconds is None else padding_seconds)
                    * SAMPLE_RATE))
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    levels = frame_levels(audio)
    voiced = np.flatnonzero(levels > _take_threshold(levels, options)) if levels.size else []
    if len(voiced) == 0:
        return audio.copy()
    start = max(0, int(voiced[0]) * FRAME - pad)
    end = min(len(audio), (int(voiced[-1]) + 1) * FRAME + pad)
    return audio[start:end].copy()


__all__ = [
    "CLIPPED",
    "FRAME_SECONDS",
    "NO_SPEECH_MESSAGE",
    "OK",
    "SILENT",
    "TOO_SHORT",
    "RecordOptions",
    "TakeVerdict",
    "check_take",
    "dbfs",
    "frame_levels",
    "level_meter",
    "speech_threshold",
    "trim_silence",
]
