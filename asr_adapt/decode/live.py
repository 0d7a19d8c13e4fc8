"""A live transcription session: an audio source feeds the streaming processor, a display
shows committed text and the tentative tail, and the transcript is written at the end.

The display is passed in (a :class:`LiveDisplay`): ``asr-adapt live`` gives the terminal ones
of :mod:`asr_adapt.ui.live_terminal`, which also reads the profile switches typed meanwhile.

The session owns the loop and its endings, so that every way out keeps the text:
end of a replayed file, Ctrl-C (``KeyboardInterrupt``), or a microphone that disappears
(:class:`~asr_adapt.audio.devices.MicrophoneError` raised by ``read`` after the audio that did
arrive). In each case the tail is flushed through the processor and the caller writes what
:meth:`LiveSession.run` returns. With a :class:`AudioKeeper` the captured audio goes into a
profile as unlabeled audio (pieces of at most 30 s, cut in pauses), for domain confusion.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from asr_adapt.audio.devices import MicrophoneError
from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.audio.sources import AudioSource
from asr_adapt.audio.vad import VadOptions, frame_levels, speech_mask
from asr_adapt.core.errors import OptionsError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.decode.streaming import StreamingProcessor, StreamUpdate
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.info import ProfileError


@dataclass(frozen=True)
class LiveOptions:
    """Session settings (the streaming policy has its own :class:`StreamingOptions`)."""

    #: Longest piece of kept audio (seconds); Whisper's window is 30 s.
    keep_piece_seconds: float = 30.0
    #: How long one wait for audio lasts before the loop looks at commands again.
    read_timeout: float = 0.1

    def __post_init__(self) -> None:
        if not 5.0 <= self.keep_piece_seconds <= 30.0:
            raise OptionsError(f"kept audio pieces must be 5 to 30 seconds long, got {self.keep_piece_seconds}")
        if not 0.01 <= self.read_timeout <= 1.0:
            raise OptionsError(f"read timeout must be between 0.01 and 1 s, got {self.read_timeout}")


@dataclass(frozen=True)
class LiveResult:
    """What a session produced and how it ended."""

    text: str
    phrases: tuple[str, ...]
    audio_seconds: float
    decodes: int
    compute_seconds: float
    overflows: int
    dropped_blocks: int
    interrupted: bool               # ended by Ctrl-C
    error: str | None               # the device failed (the text so far is kept)
    kept: tuple[Path, ...] = ()     # audio pieces stored into the profile
    switches: tuple[str, ...] = ()  # profile switches done during the session
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def real_time_factor(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


# --------------------------------------------------------------------------- keeping audio


class AudioKeeper:
    """Stores captured audio into ``profile`` as unlabeled pieces of at most
    ``piece_seconds``, each cut in the quietest moment of its last third, written as soon as
    it is complete (so a killed session loses at most one piece). Pieces without speech are
    not kept: silence teaches domain confusion nothing."""

    MIN_SPEECH_SECONDS = 0.5

    def __init__(self, profile: Profile, piece_seconds: float = 30.0, vad: VadOptions | None = None) -> None:
        self.profile = profile
        self.piece = int(piece_seconds * SAMPLE_RATE)
        self.vad = vad or VadOptions()
        self._blocks: list[np.ndarray] = []
        self._samples = 0
        self.kept: list[Path] = []
        self.skipped = 0

    def add(self, block: np.ndarray) -> None:
        self._blocks.append(np.asarray(block, dtype=np.float32).reshape(-1))
        self._samples += len(self._blocks[-1])
        if self._samples >= self.piece:
            audio = np.concatenate(self._blocks)
            while len(audio) >= self.piece:
                cut = self._cut_point(audio[:self.piece])
                self._store(audio[:cut])
                audio = audio[cut:]
            self._blocks, self._samples = [audio], len(audio)

    def _cut_point(self, piece: np.ndarray) -> int:
        frame = self.vad.frame_samples
        start = len(piece) * 2 // 3
        levels = frame_levels(piece[start:], frame)
        return start + int(np.argmin(levels)) * frame + frame // 2 if len(levels) else len(piece)

    def _store(self, audio: np.ndarray) -> None:
        speech = speech_mask(audio, self.vad).sum() * self.vad.frame_seconds
        if speech < self.MIN_SPEECH_SECONDS:
            self.skipped += 1
            return
        utterance = self.profile.add_unlabeled_audio(audio, source="live")
        self.kept.append(Path(utterance.audio))

    def flush(self) -> None:
        """Store what is left (end of the session)."""
        if self._samples:
            self._store(np.concatenate(self._blocks))
        self._blocks, self._samples = [], 0


# --------------------------------------------------------------------------- displays


class LiveDisplay(Protocol):
    """What a session shows its progress on."""

    def update(self, update: StreamUpdate) -> None:
        """Show newly committed words and the current tentative tail."""
        ...

    def note(self, text: str) -> None:
        """Show a message (a profile switch, a problem) apart from the transcript."""
        ...

    def close(self) -> None:
        """The session ended: show what is left and release the screen."""
        ...


# --------------------------------------------------------------------------- the session


class LiveSession:
    """Runs ``source`` through ``processor`` until the source ends, Ctrl-C, or the device
    fails; see the module docstring. ``switcher`` (an
    :class:`~asr_adapt.profiles.personal.AdapterSwitcher`) and ``commands`` (a queue of typed lines)
    allow switching profiles while it runs."""

    BASE_COMMANDS = ("base", "none", "-")

    def __init__(self, source: AudioSource, processor: StreamingProcessor, display: LiveDisplay,
                 keeper: AudioKeeper | None = None, switcher=None, commands: queue.Queue | None = None,
                 options: LiveOptions | None = None) -> None:
        self.source = source
        self.processor = processor
        self.display = display
        self.keeper = keeper
        self.switcher = switcher
        self.commands = commands
        self.options = options or LiveOptions()
        self._switches: list[str] = []
        self._notes: list[str] = []

    def note(self, text: str) -> None:
        self._notes.append(text)
        self.display.note(text)

    def _apply_commands(self) -> None:
        if self.commands is None:
            return
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if self.switcher is None:
                self.note("profile switching is not available in this session")
                continue
            name = None if command.casefold() in self.BASE_COMMANDS else command
            try:
                self.switcher.use(name)
            except ProfileError as error:
                self.note(f"cannot switch: {error}")
                continue
            self._switches.append(name or "base")
            self.note(f"now using {'profile ' + repr(name) if name else 'the base model'}")

    def run(self) -> LiveResult:
        """Run to the end; never raises for Ctrl-C or a lost device (see :class:`LiveResult`)."""
        processor, source = self.processor, self.source
        processor.reset()
        interrupted, error = False, None
        compute = 0.0
        try:
            while True:
                block = source.read(self.options.read_timeout)
                if block is None and source.ended:
                    break
                while block is not None:  # take all that is waiting: never fall behind the device
                    processor.insert_audio(block)
                    if self.keeper is not None:
                        self.keeper.add(block)
                    block = source.read(0)
                self._apply_commands()
                if processor.ready():
                    update = processor.process_iter()
                    compute += update.compute_seconds
                    self.display.update(update)
        except KeyboardInterrupt:
            interrupted = True
        except MicrophoneError as lost:
            error = str(lost)
        finally:
            source.close()
        try:
            update = processor.finish()
            compute += update.compute_seconds
            self.display.update(update)
        except KeyboardInterrupt:  # a second Ctrl-C: keep what is committed, skip the tail
            interrupted = True
        kept: tuple[Path, ...] = ()
        if self.keeper is not None:
            try:
                self.keeper.flush()
            except ProfileError as failure:
                self.note(str(failure))
            kept = tuple(self.keeper.kept)
        self.display.close()
        return LiveResult(text=processor.text, phrases=tuple(processor.phrases),
                          audio_seconds=processor.stream_samples / SAMPLE_RATE, decodes=processor.decodes,
                          compute_seconds=compute, overflows=int(source.overflows),
                          dropped_blocks=int(getattr(source, "dropped_blocks", 0)), interrupted=interrupted,
                          error=error, kept=kept, switches=tuple(self._switches), notes=tuple(self._notes))


# --------------------------------------------------------------------------- transcripts


def default_transcript_path(folder: str | Path | None = None, now: datetime | None = None) -> Path:
    """``live-YYYYMMDD-HHMMSS.txt`` in ``folder`` (the current directory by default)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(folder or Path.cwd()) / f"live-{stamp}.txt"


def write_transcript(result: LiveResult, path: str | Path) -> Path:
    """Write the committed text, one phrase per line (atomically)."""
    path = Path(path)
    text = "\n".join(result.phrases)
    write_text_atomic(path, text + ("\n" if text else ""))
    return path


def wait_for_audio(source, timeout: float = 5.0) -> bool:
    """Wait until a microphone delivers its first block (PulseAudio can take ~2 s)."""
    waiter = getattr(source, "wait_until_started", None)
    if waiter is None:
        return True
    deadline = time.monotonic() + timeout
    return bool(waiter(max(0.0, deadline - time.monotonic())))


__all__ = [
    "AudioKeeper",
    "LiveDisplay",
    "LiveOptions",
    "LiveResult",
    "LiveSession",
    "default_transcript_path",
    "wait_for_audio",
    "write_transcript",
]
