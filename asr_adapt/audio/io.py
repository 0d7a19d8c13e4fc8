"""Audio input: reading, validation, resampling, and cutting long audio into windows.

This module owns the sample rate. Everything downstream receives float32 mono numpy arrays
at :data:`SAMPLE_RATE`, whatever the file held (any rate, any channel count, any format
libsndfile reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_adapt.core.errors import AudioError

SAMPLE_RATE = 16000
#: Whisper's encoder sees at most this many seconds at once.
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
#: Below this RMS (about -60 dBFS) a recording holds no usable speech.
SILENCE_RMS = 1e-3
#: Files longer than this are refused by default: hours of audio in one file is almost
#: always a mistake (a wrong file, a forgotten recorder), and would exhaust memory.
DEFAULT_MAX_SECONDS = 4 * 3600


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding it."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; give the files inside it")


def audio_info(path: str | Path) -> AudioInfo:
    """Read an audio file's header; raise :class:`AudioError` if it is not readable audio."""
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(
            f"{path}: not a readable audio file ({_short(error)}); use WAV, FLAC, OGG or MP3"
        ) from None
    return AudioInfo(path=path, sample_rate=int(info.samplerate), channels=int(info.channels),
                     frames=int(info.frames))


def load_audio(path: str | Path, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Load a file as float32 mono at :data:`SAMPLE_RATE`.

    Several channels are averaged; any sample rate is resampled (soxr, high quality).
    Raises :class:`AudioError` for a missing, unreadable, truncated, empty or too long file.
    """
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{info.path}: holds no audio (zero length); record or export it again")
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(
            f"{info.path}: {info.duration / 60:.1f} min is longer than the {max_seconds / 60:.0f} min "
            "limit; split the file or raise --max-minutes"
        )
    try:
        data, rate = sf.read(str(info.path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{info.path}: audio data is corrupt or truncated ({_short(error)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{info.path}: holds no audio (zero length); record or export it again")
    if data.shape[0] < info.frames * 0.99:
        raise AudioError(
            f"{info.path}: truncated: header promises {info.frames} frames, file holds {data.shape[0]}"
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate)


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float audio from ``rate`` to :data:`SAMPLE_RATE`."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if rate == SAMPLE_RATE:
        return audio
    import soxr  # imported here: only needed when rates differ

    return soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)


def rms(audio: np.ndarray) -> float:
    """Root mean square level of the audio (0 for empty input)."""
    if audio.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def is_silent(audio: np.ndarray, threshold: float = SILENCE_RMS) -> bool:
    """True when the audio holds nothing above the silence level."""
    return rms(audio) < threshold


def duration(audio: np.ndarray) -> float:
    """Seconds of audio in an array at :data:`SAMPLE_RATE`."""
    return len(audio) / SAMPLE_RATE


def split_into_windows(audio: np.ndarray, max_seconds: float = WINDOW_SECONDS - 1,
                       search_seconds: float | None = None) -> list[tuple[int, int]]:
    """Cut audio into pieces no longer than ``max_seconds``, at the quietest moments.

    Each cut is placed at the lowest-energy 20 ms frame within the last ``search_seconds``
    (default: half the window) before the limit, the latest such frame on a tie, so that
    words are rarely split and windows stay long. Returns ``(start, end)`` sample indices
    that cover the whole input in order.
    """
    max_len = int(max_seconds * SAMPLE_RATE)
    if len(audio) <= max_len:
        return [(0, len(audio))]
    frame = SAMPLE_RATE // 50
    search = int((search_seconds if search_seconds is not None else max_seconds / 2) * SAMPLE_RATE)
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(audio) - start > max_len:
        window_end = start + max_len
        lo = max(start + max_len - search, start + frame)
        region = audio[lo:window_end]
        n_frames = len(region) // frame
        if n_frames == 0:
            cut = window_end
        else:
            energy = np.square(region[: n_frames * frame].reshape(n_frames, frame)).mean(axis=1)
            latest_quietest = n_frames - 1 - int(np.argmin(energy[::-1]))
            cut = lo + latest_quietest * frame + frame // 2
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(audio)))
    return pieces


def write_audio(path: str | Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio (format from the suffix: .flac, .wav, .ogg)."""
    sf.write(str(path), np.asarray(audio, dtype=np.float32), rate)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
