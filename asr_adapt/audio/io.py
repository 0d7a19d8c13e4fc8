"""Audio input: reading, validation, resampling, and cutting long audio into windows.

This module owns the sample rate. Everything downstream receives float32 mono numpy arrays
at :data:`SAMPLE_RATE`, whatever the file held (any rate, any channel count, any format
libsndfile reads).
"""

from __future__ import annotations

from collections.abc import Iterator
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
#: Float samples beyond this peak are not audio scaled to +-1 (integer samples stored as float,
#: or a broken export): the model would hear noise and write garbage, so such files are refused.
MAX_FLOAT_PEAK = 4.0
#: Longest and shortest take training accepts whole: Whisper's window, and 0.1 s (enrollment
#: checks them on the way in, adaptation on the way out).
MAX_TAKE_SAMPLES = WINDOW_SAMPLES
MIN_TAKE_SAMPLES = SAMPLE_RATE // 10
#: Files longer than this are read and decoded a block at a time (memory stays flat).
STREAM_BLOCK_SECONDS = 600.0
#: Shorter audio holds no word (a 1-sample file, a header with nothing after it).
MIN_SECONDS = 0.02


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
    if not path.is_file():  # a FIFO or a device would block or never end
        raise AudioError(f"{path}: is not a regular file (a pipe or a device); save the audio to a file first")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise AudioError(f"{path}: cannot be read ({error.strerror or error}); check its permissions") from None


def _declared_wav_bytes(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE file's ``data`` chunk, or None when the
    file is not a plain WAV or its header leaves the size open (streaming writers put 0 or
    0xFFFFFFFF there). libsndfile quietly reads what is there; a shorter file than its header
    says was cut off (an interrupted copy or download)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            for _ in range(64):  # a handful of chunks precede the data in any real file
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                chunk_size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    if chunk_size in (0, 0xFFFFFFFF):
                        return None
                    return chunk_size, size - handle.tell()
                handle.seek(chunk_size + (chunk_size & 1), 1)
    except OSError:
        return None
    return None


def check_samples(audio: np.ndarray, where: str) -> np.ndarray:
    """Refuse samples no microphone makes: NaN, infinities, or float audio far beyond +-1."""
    if audio.size and not np.isfinite(audio).all():
        raise AudioError(f"{where}: holds NaN or infinite samples (a broken export); export it again")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(f"{where}: samples reach {peak:.3g}, but float audio must lie within +-1 "
                         "(integer samples stored as float?); rescale or export it again")
    return audio


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


def _checked_info(path: str | Path, max_seconds: float | None) -> AudioInfo:
    """The header of an audio file that is not empty, not too long and not cut short."""
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{info.path}: holds no audio (zero length); record or export it again")
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(
            f"{info.path}: {info.duration / 60:.1f} min is longer than the {max_seconds / 60:.0f} min "
            "limit; split the file or raise --max-minutes"
        )
    declared = _declared_wav_bytes(info.path)
    if declared is not None and declared[1] < declared[0] * 0.99:
        raise AudioError(f"{info.path}: truncated: its header promises {declared[0]} bytes of audio, the file "
                         f"holds {max(declared[1], 0)}; copy or export it again")
    return info


def _read_failed(path: Path, error: Exception) -> AudioError:
    return AudioError(f"{path}: audio data is corrupt or truncated ({_short(error)})")


def load_audio(path: str | Path, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Load a file as float32 mono at :data:`SAMPLE_RATE`.

    Several channels are averaged; any sample rate is resampled (soxr, high quality).
    Raises :class:`AudioError` for a missing, unreadable, truncated, empty, too short or too
    long file, and for samples no recording holds (NaN, infinities, far beyond +-1).
    """
    return _read_whole(_checked_info(path, max_seconds))


def _read_whole(info: AudioInfo) -> np.ndarray:
    """The file behind a checked header, read at once: float32 mono at SAMPLE_RATE."""
    try:
        data, rate = sf.read(str(info.path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise _read_failed(info.path, error) from None
    if data.shape[0] == 0:
        raise AudioError(f"{info.path}: holds no audio (zero length); record or export it again")
    if data.shape[0] < info.frames * 0.99:
        raise AudioError(
            f"{info.path}: truncated: header promises {info.frames} frames, file holds {data.shape[0]}"
        )
    if data.shape[0] < MIN_SECONDS * rate:
        raise AudioError(f"{info.path}: holds {1000 * data.shape[0] / rate:.1f} ms of audio, too short for "
                         "a word; record or export it again")
    return resample(_mono(data, info.path), rate)


def _mono(data: np.ndarray, path: Path) -> np.ndarray:
    """Frames x channels as one checked channel (channels averaged)."""
    return check_samples(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], str(path))


def audio_blocks(path: str | Path, block_seconds: float = STREAM_BLOCK_SECONDS,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS) -> Iterator[np.ndarray]:
    """The file as consecutive float32 mono blocks at :data:`SAMPLE_RATE`, about
    ``block_seconds`` each, checked as :func:`load_audio` checks a whole file.

    A file no longer than one block is :func:`load_audio`'s array, whole. A longer one is
    read, checked and resampled (one continuous soxr stream) a block at a time, so that the
    memory a two-hour recording takes does not grow with its length.
    """
    info = _checked_info(path, max_seconds)
    if info.duration <= block_seconds:
        yield _read_whole(info)
        return
    import soxr

    frames_per_block = int(block_seconds * info.sample_rate)
    stream = soxr.ResampleStream(info.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    read = 0
    try:
        with sf.SoundFile(str(info.path)) as handle:
            while True:
                data = handle.read(frames_per_block, dtype="float32", always_2d=True)
                read += data.shape[0]
                last = data.shape[0] < frames_per_block or read >= info.frames
                mono = _mono(data, info.path)
                out = mono if info.sample_rate == SAMPLE_RATE else stream.resample_chunk(mono, last=last)
                if len(out):
                    yield np.ascontiguousarray(out, dtype=np.float32)
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as error:
        raise _read_failed(info.path, error) from None
    if read < info.frames * 0.99:
        raise AudioError(f"{info.path}: truncated: header promises {info.frames} frames, file holds {read}")


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
