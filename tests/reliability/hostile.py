"""What every hostile-input case checks: one line, the right exit code, no traceback, and a
profile store left byte-for-byte as it was (unless the command's job is to change it)."""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_adapt.cli.main import main


def store_state(root: Path) -> dict[str, str]:
    """Every entry under the profiles folder: its relative path and its bytes' sha256 (or
    what it is, for folders and links). Two equal states mean nothing changed."""
    state: dict[str, str] = {}
    if not root.exists():
        return state
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = f"link -> {path.readlink()}"
        elif path.is_dir():
            state[key] = "dir"
        else:
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """The asr-adapt command in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, root: Path, argv, pattern: str, code: int = 2) -> str:
    """Run ``argv``; assert a one-line error matching ``pattern``, the exit ``code``, no
    traceback, and an unchanged profile store. Returns the message."""
    before = store_state(root)
    exit_code, _, err = run_cli(capsys, *argv)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert exit_code == code, (exit_code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("asr-adapt: error:"), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert store_state(root) == before, "the profile store changed"
    return lines[0]


# ------------------------------------------------------------------ hostile audio files


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    """A WAV file's bytes."""
    import io

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def long_wav(path: Path, hours: float, rate: int = 16000) -> Path:
    """A WAV whose header and size say ``hours`` of 16-bit mono: written sparse (zeros), so
    it costs no disk and no time to make."""
    frames = int(hours * 3600 * rate)
    data_bytes = frames * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes))
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)
    return path


def tone(seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def make_audio(kind: str, folder: Path) -> Path:
    """One hostile (or merely unusual) audio input, by name."""
    path = folder / f"{kind}.wav"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "text_named_wav":
        path.write_text("this is not audio\n")
    elif kind == "header_only":
        path.write_bytes(wav_bytes(np.zeros(0, dtype=np.float32)))
    elif kind == "truncated":
        data = wav_bytes(tone(2.0))
        path.write_bytes(data[: len(data) // 2])
    elif kind == "nan":
        path.write_bytes(wav_bytes(np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT"))
    elif kind == "inf":
        audio = tone(1.0)
        audio[100] = np.inf
        path.write_bytes(wav_bytes(audio, subtype="FLOAT"))
    elif kind == "huge_amplitude":
        path.write_bytes(wav_bytes(tone(1.0) * 32767, subtype="FLOAT"))
    elif kind == "one_sample":
        path.write_bytes(wav_bytes(np.zeros(1, dtype=np.float32)))
    elif kind == "five_hours":
        long_wav(path, 5.0)
    elif kind == "fifo":
        import os

        os.mkfifo(path)
    else:
        raise ValueError(kind)
    return path


#: Each hostile audio input and the message that must name its problem.
BAD_AUDIO = {
    "missing": "no such file|not found",
    "directory": "is a directory",
    "empty": "not a readable audio file|no audio",
    "garbage": "not a readable audio file",
    "text_named_wav": "not a readable audio file",
    "header_only": "no audio|zero length",
    "truncated": "truncated",
    "nan": "NaN or infinite",
    "inf": "NaN or infinite",
    "huge_amplitude": "must lie within",
    "one_sample": "too short",
    "five_hours": "longer than",
    "fifo": "not a regular file",
}
