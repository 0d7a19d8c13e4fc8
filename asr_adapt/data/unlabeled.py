"""Collecting a user's unlabeled audio for domain confusion.

Sources: a folder of audio (any transcripts beside it are ignored), a manifest whose lines
need no text, a single audio file, and what ``asr-adapt live --keep-audio`` kept in the
profile. Long recordings are cut into utterance-sized pieces at their quietest moments;
silent stretches between them are dropped. A file the user named that holds nothing usable
(empty, silent, too short) is an error naming it; audio the tool kept itself is skipped
with a warning instead, since the user did not choose it file by file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, SILENCE_RMS, load_audio, rms, split_into_windows
from asr_adapt.core.errors import AsrAdaptError, AudioError, OptionsError
from asr_adapt.data.importers import AUDIO_SUFFIXES, load_any
from asr_adapt.data.manifest import Utterance

log = logging.getLogger(__name__)


class UnlabeledError(AsrAdaptError):
    """Unlabeled audio that cannot be used (empty, silent, too short, none at all)."""


@dataclass(frozen=True)
class UnlabeledOptions:
    """How unlabeled recordings are cut and checked. Validated here, once."""

    #: Pieces shorter than this hold too little speech to tell a domain by.
    min_seconds: float = 0.5
    #: Long recordings are cut into pieces of at most this many seconds.
    max_piece_seconds: float = 15.0
    #: A piece (or file) below this RMS holds no speech.
    silence_rms: float = SILENCE_RMS
    #: Use at most this many minutes in all (None: everything); pieces are taken evenly.
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if not 0.1 <= self.min_seconds <= 10:
            raise OptionsError(f"min unlabeled seconds must be 0.1-10, got {self.min_seconds!r}")
        if not max(2.0, self.min_seconds) <= self.max_piece_seconds <= 29:
            raise OptionsError(f"unlabeled pieces must be 2-29 s long at most, got {self.max_piece_seconds!r}")
        if not 0 < self.silence_rms < 1:
            raise OptionsError(f"silence level must be in (0, 1), got {self.silence_rms!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise OptionsError(f"max unlabeled minutes must be positive, got {self.max_minutes!r}")


@dataclass
class UnlabeledPiece:
    """An utterance-sized stretch of an unlabeled recording (16 kHz mono float32)."""

    source: str
    start: float
    audio: np.ndarray = field(repr=False)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class UnlabeledSet:
    """What was collected, from where, and what was left out (and why)."""

    pieces: list[UnlabeledPiece]
    sources: list[str]
    files: int
    skipped: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.pieces)

    def arrays(self) -> list[np.ndarray]:
        return [p.audio for p in self.pieces]

    def summary(self) -> dict:
        return {"sources": list(self.sources), "files": self.files, "pieces": len(self.pieces),
                "minutes": round(self.seconds / 60, 2), "skipped": len(self.skipped)}


def cut_recording(audio: np.ndarray, options: UnlabeledOptions) -> list[tuple[int, np.ndarray]]:
    """Utterance-sized ``(start_sample, piece)`` pairs; silent and too-short pieces dropped."""
    pieces = []
    for start, end in split_into_windows(audio, max_seconds=options.max_piece_seconds):
        piece = audio[start:end]
        if len(piece) >= options.min_seconds * SAMPLE_RATE and rms(piece) >= options.silence_rms:
            pieces.append((start, piece))
    return pieces


def _entries(source: Path) -> list[Path]:
    """Audio files of one source: an audio file, a folder, a manifest (text not needed)."""
    if source.is_file() and source.suffix.lower() in AUDIO_SUFFIXES:
        return [source]
    if not source.exists():
        raise UnlabeledError(f"{source}: no such file or folder; check the --unlabeled path")
    utterances: list[Utterance] = load_any(source)
    if not utterances:
        raise UnlabeledError(f"{source}: holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [u.audio for u in utterances]


def _check_file(path: Path, audio: np.ndarray, options: UnlabeledOptions) -> str | None:
    """Why a whole file is unusable, or None."""
    seconds = len(audio) / SAMPLE_RATE
    if seconds < options.min_seconds:
        return f"{path}: only {seconds:.2f} s of audio, under the {options.min_seconds:g} s minimum"
    level = rms(audio)
    if level < options.silence_rms:
        db = 20 * np.log10(max(level, 1e-12))
        return f"{path}: silent ({db:.0f} dBFS RMS)"
    return None


def collect_unlabeled(sources: Iterable[str | Path] = (), kept: Sequence[Utterance] = (),
                      options: UnlabeledOptions | None = None) -> UnlabeledSet:
    """Load, check and cut unlabeled audio from ``sources`` and a profile's ``kept`` audio.

    A file in ``sources`` that is empty, unreadable, silent or shorter than
    ``options.min_seconds`` raises :class:`UnlabeledError` (or :class:`AudioError`) naming
    it; such files among ``kept`` are skipped and listed in ``skipped``.
    """
    options = options or UnlabeledOptions()
    pieces: list[UnlabeledPiece] = []
    skipped: list[str] = []
    names: list[str] = []
    files = 0
    jobs: list[tuple[Path, bool]] = []
    for source in sources:
        source = Path(source)
        names.append(str(source))
        jobs.extend((p, True) for p in _entries(source))
    if kept:
        names.append("profile (kept audio)")
        jobs.extend((u.audio, False) for u in kept)
    for path, strict in jobs:
        try:
            audio = load_audio(path)
        except AudioError as error:
            if strict:
                raise
            skipped.append(str(error))
            continue
        problem = _check_file(path, audio, options)
        if problem is None:
            cut = cut_recording(audio, options)
            if not cut:
                problem = f"{path}: no stretch of speech of {options.min_seconds:g} s or more"
        if problem:
            if strict:
                raise UnlabeledError(f"{problem}; remove it from the unlabeled audio")
            skipped.append(problem)
            continue
        files += 1
        pieces.extend(UnlabeledPiece(str(path), start / SAMPLE_RATE, piece) for start, piece in cut)
    if skipped:
        log.warning("skipped %d unusable kept recordings (first: %s)", len(skipped), skipped[0])
    if options.max_minutes is not None:
        pieces = _take_evenly(pieces, options.max_minutes * 60)
    return UnlabeledSet(pieces=pieces, sources=names, files=files, skipped=skipped,
                        options={"min_seconds": options.min_seconds,
                                 "max_piece_seconds": options.max_piece_seconds,
                                 "silence_rms": options.silence_rms, "max_minutes": options.max_minutes})


def _take_evenly(pieces: list[UnlabeledPiece], seconds: float) -> list[UnlabeledPiece]:
    """At most ``seconds`` of pieces, spread over the whole list (not just its start)."""
    total = sum(p.seconds for p in pieces)
    if total <= seconds:
        return pieces
    step = total / seconds
    chosen, budget, position = [], 0.0, 0.0
    for piece in pieces:
        position += piece.seconds
        if position >= budget * step and budget + piece.seconds <= seconds:
            chosen.append(piece)
            budget += piece.seconds
    return chosen


__all__ = ["UnlabeledError", "UnlabeledOptions", "UnlabeledPiece", "UnlabeledSet", "collect_unlabeled",
           "cut_recording"]
