"""Enrollment from the microphone: read prompts aloud, one take each, saved as they go.

Three layers, each testable on its own:

* pure functions on arrays: :func:`level_meter`, :func:`check_take` (is this take usable?),
  :func:`trim_silence`, and :class:`SpeechDetector` (end-of-speech detection);
* :func:`record_take`: pulls blocks from any :class:`~asr_adapt.microphone.AudioSource`
  until end of speech (speech, then ``end_silence_seconds`` of silence), the length limit,
  or a stop event (the interactive layer sets it when Enter is pressed);
* :func:`enroll_from_microphone`: the interactive loop. It talks to the user only through
  an :class:`EnrollmentUI` (:class:`TerminalUI` by default, :class:`ScriptedUI` in tests),
  and saves each accepted take at once, so an interrupted session loses nothing accepted.

Levels. The first ``lead_in_seconds`` of a take measure the noise floor; a 30 ms frame is
speech when its RMS is ``speech_margin_db`` above that floor, the threshold clamped to
[``silence_rms_floor``, ``silence_rms_ceiling``] (or fixed by ``silence_rms``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, rms
from asr_adapt.core.samples import DEFAULT_PROMPTS
from asr_adapt.core.errors import AsrAdaptError, OptionsError
from asr_adapt.audio.microphone import AudioSource, MicrophoneError, MicrophoneSource

#: The last lines of the shipped prompts are the held-out test sentences of samples/.
HELD_OUT_PROMPTS = 30
#: Lines 290-301 (1-based) of the shipped prompts are samples/generic, the forgetting guard.
GENERIC_PROMPT_LINES = range(290, 302)
FRAME_SECONDS = 0.03
FRAME = int(round(FRAME_SECONDS * SAMPLE_RATE))
#: Less speech than this in a take is "no speech heard".
SILENT_SPEECH_SECONDS = 0.1

NO_SPEECH_MESSAGE = "no speech heard - move closer or check the input device"
NO_TERMINAL_MESSAGE = ("interactive enrollment needs a terminal; use --from DIR to enroll from "
                       "recordings")


class EnrollmentError(AsrAdaptError):
    """Enrollment cannot run (no terminal, no prompts file, ...)."""


# --------------------------------------------------------------------------- options


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


# --------------------------------------------------------------------------- recording


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
        assert self.threshold is not None
        if level > self.threshold:
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


# --------------------------------------------------------------------------- prompts


def _normalize(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def choose_prompts(prompts_path: str | Path | None, already_recorded_texts: Iterable[str] = (),
                   count: int | None = None) -> list[str]:
    """The next ``count`` (default: all) prompts to record, in file order.

    Blank lines and lines starting with ``#`` are ignored; a prompt whose text (ignoring
    case and spacing) is already recorded, or repeats an earlier line, is skipped, so
    enrollment resumes where it stopped. The shipped default file's last
    :data:`HELD_OUT_PROMPTS` lines (the held-out test sentences) and lines 290-301 (the
    generic reference set) are never offered.
    """
    path = DEFAULT_PROMPTS if prompts_path is None else Path(prompts_path).expanduser()
    if not path.is_file():
        if prompts_path is None:
            raise EnrollmentError(f"the default prompts file {path} is missing; give one with "
                                  "--prompts FILE (one sentence per line)")
        raise EnrollmentError(f"{path}: no such prompts file; give a text file with one "
                              "sentence per line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise EnrollmentError(f"cannot read prompts file {path} ({reason})") from None
    lines = [" ".join(line.split()) for line in text.splitlines()]
    if _is_shipped(path):
        # Sentences the shipped test and generic sets speak must stay unseen by adapters.
        lines = lines[:-HELD_OUT_PROMPTS] if len(lines) > HELD_OUT_PROMPTS else []
        lines = [line for number, line in enumerate(lines, start=1) if number not in GENERIC_PROMPT_LINES]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise EnrollmentError(f"prompts file {path} holds no prompts; give one sentence per line")
    seen = {_normalize(t) for t in already_recorded_texts if t}
    chosen: list[str] = []
    for line in lines:
        key = _normalize(line)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(line)
        if count is not None and len(chosen) >= count:
            break
    return chosen


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve() == DEFAULT_PROMPTS.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- user interface


class EnrollmentUI:
    """Everything enrollment asks of the user. Subclass it; the defaults do nothing.

    ``choose`` shows ``question`` with ``keys`` (key -> label) and returns one key; Enter
    means ``default``. ``start_take`` returns an event the UI sets to stop the take early
    (Enter); ``level`` draws the meter; ``end_take`` clears it.
    """

    def __enter__(self) -> EnrollmentUI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        pass

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        raise NotImplementedError

    def start_take(self) -> threading.Event:
        return threading.Event()

    def level(self, update: LevelUpdate) -> None:
        pass

    def end_take(self) -> None:
        pass


class ScriptedUI(EnrollmentUI):
    """Preset answers instead of a keyboard (tests, scripted demos).

    Each ``choose`` takes the next answer: a key, ``""`` for Enter (the default), or an
    exception instance to raise (``KeyboardInterrupt()`` simulates Ctrl-C). Running out of
    answers raises :class:`RuntimeError`. ``stop_after_seconds`` presses Enter that far
    into every take. Everything shown is kept in ``messages``, ``prompts``, ``questions``.
    """

    def __init__(self, answers: Iterable[str | BaseException] = (),
                 stop_after_seconds: float | None = None) -> None:
        self.answers = list(answers)
        self.stop_after_seconds = stop_after_seconds
        self.messages: list[str] = []
        self.prompts: list[str] = []
        self.questions: list[str] = []
        self.levels = 0
        self._stop: threading.Event | None = None

    def message(self, text: str) -> None:
        self.messages.append(text)

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        self.prompts.append(prompt)

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        self.questions.append(question)
        if not self.answers:
            raise RuntimeError(f"ScriptedUI ran out of answers at: {question}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "":
            return default
        if answer not in keys:
            raise ValueError(f"scripted answer {answer!r} is not one of {sorted(keys)} "
                             f"for: {question}")
        return answer

    def start_take(self) -> threading.Event:
        self._stop = threading.Event()
        return self._stop

    def level(self, update: LevelUpdate) -> None:
        self.levels += 1
        if (self.stop_after_seconds is not None and self._stop is not None
                and update.seconds >= self.stop_after_seconds):
            self._stop.set()


class TerminalUI(EnrollmentUI):
    """Single keys from the terminal (cbreak mode while open), output on stderr.

    The level meter is one line, redrawn in place (with :mod:`rich` when installed).
    """

    def __init__(self, stdin: Any = None, stream: Any = None) -> None:
        self._in = stdin if stdin is not None else sys.stdin
        self._out = stream if stream is not None else sys.stderr
        self._fd = self._in.fileno()
        self._saved: Any = None
        self._listener: threading.Thread | None = None
        self._done = threading.Event()
        self._live: Any = None
        self._line_width = 0
        self._last_draw = 0.0
        try:
            from rich.console import Console

            self._console: Any = Console(file=self._out, highlight=False)
        except ImportError:
            self._console = None

    # ----------------------------------------------------------------- terminal modes

    def __enter__(self) -> TerminalUI:
        try:
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        except (ImportError, OSError, ValueError):  # not POSIX, or not a real terminal
            self._saved = None
        except Exception:  # termios.error
            self._saved = None
        return self

    def close(self) -> None:
        self.end_take()
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except Exception:
                pass
            self._saved = None

    def _flush_input(self) -> None:
        if self._saved is not None:
            import termios

            try:
                termios.tcflush(self._fd, termios.TCIFLUSH)
            except Exception:
                pass

    def _getkey(self) -> str:
        if self._saved is not None:
            data = os.read(self._fd, 1)
            return data.decode("utf-8", errors="ignore") if data else ""
        try:
            import msvcrt  # type: ignore[import-not-found]

            return msvcrt.getwch()
        except ImportError:
            line = self._in.readline()
            return line.strip()[:1] or ("\n" if line else "")

    # ----------------------------------------------------------------- output

    def _print(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style=style or ""))
        else:
            print(text, file=self._out, flush=True)

    def message(self, text: str) -> None:
        self._print(text)

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        self._print("")
        self._print(f"prompt {number} - {recorded_seconds / 60:.1f} of "
                    f"{suggested_seconds / 60:.1f} min recorded", style="dim")
        self._print(f"  {prompt}", style="bold")

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        hints = "  ".join(f"[{'Enter' if key == default else key}] {label}"
                          for key, label in keys.items())
        self._print(f"{question}  {hints}", style="cyan")
        self._flush_input()
        while True:
            key = self._getkey()
            if key in ("\n", "\r"):
                return default
            if key in ("", "\x04"):  # end of input, Ctrl-D
                return "q" if "q" in keys else default
            if key.lower() in keys:
                return key.lower()

    # ----------------------------------------------------------------- takes

    def start_take(self) -> threading.Event:
        stop = threading.Event()
        self._done.clear()
        self._flush_input()
        self._listener = threading.Thread(target=self._listen, args=(stop,), daemon=True,
                                          name="asr-adapt-enter-key")
        self._listener.start()
        if self._console is not None:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text(""), console=self._console, refresh_per_second=15,
                              transient=True)
            self._live.start()
        return stop

    def _listen(self, stop: threading.Event) -> None:
        """Set ``stop`` when Enter (or space) is pressed, until the take ends."""
        try:
            if self._saved is not None:
                import select

                while not self._done.is_set():
                    ready, _, _ = select.select([self._fd], [], [], 0.05)
                    if ready and os.read(self._fd, 1) in (b"\n", b"\r", b" "):
                        stop.set()
                        return
                return
            import msvcrt  # type: ignore[import-not-found]

            while not self._done.is_set():
                if msvcrt.kbhit() and msvcrt.getwch() in ("\r", "\n", " "):
                    stop.set()
                    return
                time.sleep(0.05)
        except Exception:  # no way to read keys: end-of-speech detection still stops takes
            return

    def level(self, update: LevelUpdate) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.06:
            return
        self._last_draw = now
        state = "speech" if update.speech_heard else "listening"
        line = (f"REC {update.seconds:4.1f}/{update.max_seconds:g} s  {level_meter(update.block)}"
                f"  {state}  (Enter: stop)")
        if self._live is not None:
            from rich.text import Text

            style = "red" if "CLIP" in line else ("green" if update.speech_heard else "yellow")
            self._live.update(Text(line, style=style))
        else:
            self._out.write("\r" + line.ljust(self._line_width))
            self._out.flush()
            self._line_width = len(line)

    def end_take(self) -> None:
        self._done.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(timeout=1.0)
        live, self._live = self._live, None
        if live is not None:
            live.stop()
        elif self._line_width:
            self._out.write("\r" + " " * self._line_width + "\r")
            self._out.flush()
            self._line_width = 0


# --------------------------------------------------------------------------- enrollment


def _base_model_identity(base_model: str) -> tuple[str | None, str]:
    """The weights hash and backend of ``base_model`` (loads it on the CPU: 1-4 s)."""
    from asr_adapt.models.loading import resolve_model

    loaded = resolve_model(base_model, device="cpu")
    return loaded.weights_sha256, loaded.backend


def _recorded_seconds(profile: Any) -> tuple[int, float]:
    utterances = profile.enrollment_utterances()
    return len(utterances), float(sum(u.duration or 0.0 for u in utterances))


def _summary(profile: Any, resume_hint: bool) -> str:
    count, seconds = _recorded_seconds(profile)
    text = (f"'{profile.name}': {count} utterance{'' if count == 1 else 's'}, "
            f"{seconds / 60:.1f} min saved")
    if resume_hint:
        text += f"; run `asr-adapt enroll {profile.name}` again to continue"
    return text


def _open_or_create(name: str, base_model: str, force: bool, ui: EnrollmentUI) -> Any:
    from asr_adapt.profiles.profile import Profile, profiles_root, validate_profile_name

    validate_profile_name(name)
    if not force and (profiles_root() / name).is_dir():
        profile = Profile.open(name)
        count, seconds = _recorded_seconds(profile)
        if profile.info.base_model and profile.info.base_model != base_model:
            ui.message(f"note: '{name}' was made for model {profile.info.base_model}; new "
                       f"recordings are added to it (--force starts afresh with {base_model})")
        ui.message(f"resuming '{name}': {count} utterances ({seconds / 60:.1f} min) recorded")
        return profile
    ui.message(f"loading {base_model} to record which weights '{name}' is for ...")
    sha, backend = _base_model_identity(base_model)
    profile = Profile.create(name, base_model=base_model, base_weights_sha256=sha,
                             backend=backend, force=force)
    ui.message(f"created profile '{name}'")
    return profile


@dataclass
class _Session:
    profile: Any
    prompts: list[str]
    suggested_seconds: float
    options: RecordOptions
    accepted: int = 0
    asked_more: bool = False
    notes: list[str] = field(default_factory=list)


def enroll_from_microphone(name: str, base_model: str, prompts: str | Path | None = None,
                           suggested_minutes: float = 5.0, input_device: str | int | None = None,
                           force: bool = False, source: AudioSource | None = None,
                           ui: EnrollmentUI | None = None,
                           options: RecordOptions | None = None) -> Any:
    """Record prompts read aloud into profile ``name``; return the profile.

    An existing profile resumes (prompts already recorded are skipped) unless ``force``,
    which replaces it. The microphone (or ``source``) is opened before anything is written,
    so a missing microphone leaves no trace. Each accepted take is trimmed and saved at
    once; Ctrl-C prints a one-line summary and re-raises :class:`KeyboardInterrupt`.
    """
    from asr_adapt.profiles.profile import validate_profile_name

    validate_profile_name(name)
    options = options or RecordOptions()
    if isinstance(suggested_minutes, bool) or not isinstance(suggested_minutes, (int, float)) \
            or not suggested_minutes > 0:
        raise OptionsError(f"suggested minutes must be a number > 0, not {suggested_minutes!r}")
    if ui is None:
        if not _stdin_is_terminal():
            raise EnrollmentError(NO_TERMINAL_MESSAGE)
        ui = TerminalUI()
    choose_prompts(prompts, (), 1)  # a missing or empty prompts file fails before anything
    owned = source is None
    if source is None:
        source = MicrophoneSource(input_device).open()
        ui.message(f"microphone: {source.name}")
    try:
        with ui:
            profile = _open_or_create(name, base_model, force, ui)
            recorded = [u.text for u in profile.enrollment_utterances() if u.text]
            session = _Session(profile=profile, prompts=choose_prompts(prompts, recorded),
                               suggested_seconds=float(suggested_minutes) * 60.0,
                               options=options)
            try:
                _run_session(session, source, ui)
            except KeyboardInterrupt:
                ui.end_take()
                ui.message("")
                ui.message(_summary(profile, resume_hint=True))
                raise
            except MicrophoneError:
                ui.end_take()
                ui.message(_summary(profile, resume_hint=True))
                raise
    finally:
        if owned:
            source.close()
    return profile


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _run_session(session: _Session, source: AudioSource, ui: EnrollmentUI) -> None:
    profile = session.profile
    if not session.prompts:
        ui.message("every prompt of the prompts file is recorded; give more with --prompts FILE")
        ui.message(_summary(profile, resume_hint=False))
        return
    ui.message(f"{len(session.prompts)} prompts to go; read each one aloud after pressing Enter. "
               "Recording stops by itself when you stop speaking (or press Enter).")
    count, seconds = _recorded_seconds(profile)
    for prompt in session.prompts:
        if seconds >= session.suggested_seconds and not session.asked_more:
            session.asked_more = True
            more = ui.choose(f"{seconds / 60:.1f} min recorded: the suggested "
                             f"{session.suggested_seconds / 60:g} min are reached. Record more?",
                             {"y": "more", "n": "stop"}, default="n")
            if more != "y":
                ui.message(_summary(profile, resume_hint=False))
                return
        count += 1
        ui.show_prompt(count, prompt, seconds, session.suggested_seconds)
        action = ui.choose("ready?", {"r": "record", "s": "skip", "q": "quit"}, default="r")
        while action == "r":
            action, audio = _one_take(session, source, ui)
            if action == "k":
                utterance = profile.add_enrollment_utterance(audio, prompt)
                session.accepted += 1
                seconds += float(utterance.duration or 0.0)
                ui.message(f"saved {utterance.id} ({utterance.duration:.1f} s); "
                           f"{seconds / 60:.1f} of {session.suggested_seconds / 60:.1f} min")
        if action == "s":
            count -= 1
            continue
        if action == "q":
            ui.message(_summary(profile, resume_hint=True))
            return
    ui.message("no more prompts in the prompts file")
    ui.message(_summary(profile, resume_hint=seconds < session.suggested_seconds))


def _one_take(session: _Session, source: AudioSource, ui: EnrollmentUI
              ) -> tuple[str, np.ndarray | None]:
    """Record and judge one take; return the user's choice (k, r, s, q) and the audio."""
    source.discard_pending()
    stop = ui.start_take()
    try:
        take = record_take_detailed(source, session.options, on_level=ui.level, stop_event=stop)
    finally:
        ui.end_take()
    verdict = check_take(take.audio, session.options)
    if take.overflows:
        ui.message(f"warning: the input overflowed {take.overflows} time(s): parts of this take "
                   "are missing; consider re-recording")
    if take.stop_reason == "max_length" and verdict.ok:
        ui.message(f"note: stopped at the {session.options.max_seconds_per_prompt:g} s limit")
    if not verdict.ok:
        ui.message(f"rejected: {verdict.message}")
        return ui.choose("record again?", {"r": "re-record", "s": "skip", "q": "quit"},
                         default="r"), None
    ui.message(verdict.message)
    choice = ui.choose("keep this take?", {"k": "keep", "r": "re-record", "s": "skip",
                                           "q": "quit"}, default="k")
    return choice, trim_silence(take.audio, session.options) if choice == "k" else None


__all__ = [
    "CLIPPED",
    "DEFAULT_PROMPTS",
    "HELD_OUT_PROMPTS",
    "OK",
    "SILENT",
    "TOO_SHORT",
    "EnrollmentError",
    "EnrollmentUI",
    "LevelUpdate",
    "RecordOptions",
    "ScriptedUI",
    "SpeechDetector",
    "Take",
    "TakeVerdict",
    "TerminalUI",
    "check_take",
    "choose_prompts",
    "enroll_from_microphone",
    "level_meter",
    "record_take",
    "record_take_detailed",
    "trim_silence",
]
