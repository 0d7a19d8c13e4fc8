"""A profile's recordings on disk: 16 kHz mono FLAC files and the manifest that lists them.

Used for the enrollment (recordings with their transcripts) and the kept unlabeled audio.
Crash safety: a recording is written under a temporary name (``.<id>.tmp-<pid>.flac``),
flushed and renamed into place before its manifest line is appended (flushed and fsynced),
so a line never points at a missing file; a last line cut short by a crash is dropped the
next time the manifest is read.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from asr_adapt.audio.io import MAX_TAKE_SAMPLES, MIN_TAKE_SAMPLES, SAMPLE_RATE, audio_info
from asr_adapt.core.errors import AudioError
from asr_adapt.data.manifest import Utterance, read_manifest
from asr_adapt.profiles.info import MAX_NAME_LENGTH, NAME_RULE, ProfileError, is_safe_name
from asr_adapt.profiles.store import ACTIVE, fsync_dir, remove_path

log = logging.getLogger(__name__)

#: A recording being written (a leftover once its process is gone).
TEMP_RECORDING = re.compile(r"\..+\.tmp-(?P<pid>\d+)\.flac")


def check_audio(audio: Any, where: str = "the recording") -> np.ndarray:
    """``audio`` as a float32 mono array; raise on a wrong shape, no samples or NaN."""
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{where}: expected mono audio (a 1-D array), got shape {array.shape}")
    if array.size == 0:
        raise AudioError(f"{where}: holds no audio (zero length); record it again")
    if not np.all(np.isfinite(array)):
        raise AudioError(f"{where}: holds NaN or infinite samples; record it again")
    return array


#: No transcript of 30 s of speech comes near this (about 100 words); longer is a wrong file.
MAX_TRANSCRIPT_CHARS = 2000


def check_take_seconds(seconds: float, where: str) -> None:
    """Refuse an enrollment take too short or too long to train on (Whisper's 30 s window)."""
    if seconds < MIN_TAKE_SAMPLES / SAMPLE_RATE:
        raise AudioError(f"{where}: {1000 * seconds:.0f} ms is too short for an enrollment take "
                         f"(at least {MIN_TAKE_SAMPLES / SAMPLE_RATE:.1f} s); leave it out")
    if seconds > MAX_TAKE_SAMPLES / SAMPLE_RATE:
        raise AudioError(f"{where}: {seconds:.0f} s is longer than an enrollment take may be "
                         f"({MAX_TAKE_SAMPLES // SAMPLE_RATE} s, Whisper's window); split it into sentences")


def _check_transcript_length(text: str, where: str) -> None:
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise ProfileError(f"{where}: a transcript of {len(text)} characters is not one take's "
                           f"(at most {MAX_TRANSCRIPT_CHARS}); check that it belongs to this audio")


def check_enrollment_files(utterances: list[Utterance]) -> None:
    """Refuse, from the headers and transcripts alone, takes that cannot be enrolled: before
    a model loads or a profile is created (the audio itself is checked as it is copied)."""
    for utterance in utterances:
        where = str(utterance.audio)
        check_take_seconds(audio_info(utterance.audio).duration, where)
        if utterance.text is not None:
            _check_transcript_length(utterance.text, where)


def check_enrollment_take(audio: Any, text: Any, where: str, require_text: bool = True) -> np.ndarray:
    """``audio`` as float32 mono if it and ``text`` can be trained on, else raise: adaptation
    would refuse them later, so they are refused before they enter a profile. ``text`` None
    is accepted without ``require_text`` (an imported utterance kept for self-training)."""
    audio = check_audio(audio, where)
    check_take_seconds(len(audio) / SAMPLE_RATE, where)
    if text is None and not require_text:
        return audio
    if not isinstance(text, str) or not text.strip():
        raise ProfileError(f"{where}: an enrollment utterance needs its transcript; the text is empty")
    _check_transcript_length(text, where)
    return audio


def check_utterance_id(utterance_id: str) -> None:
    """Refuse an utterance id that would not be a safe file name."""
    if not isinstance(utterance_id, str) or not is_safe_name(utterance_id) \
            or len(utterance_id) > MAX_NAME_LENGTH:
        raise ProfileError(f"invalid utterance id {utterance_id!r}: it names a file, so "
                           f"{NAME_RULE}")


def next_ids(existing: list[Utterance], count: int) -> list[str]:
    """``count`` new ids ``0001``, ``0002``, ... after the highest numeric one in ``existing``."""
    numbers = [int(u.id) for u in existing if u.id.isdigit()]
    start = max(numbers, default=0) + 1
    taken = {u.id for u in existing}
    ids: list[str] = []
    number = start
    while len(ids) < count:
        candidate = f"{number:04d}"
        if candidate not in taken:
            ids.append(candidate)
        number += 1
    return ids


def read_recordings(manifest: Path) -> list[Utterance]:
    """The utterances of ``manifest``, oldest first ([] when it is missing or empty)."""
    if not manifest.is_file():
        return []
    repair_manifest_tail(manifest)
    if manifest.stat().st_size == 0:
        return []
    return read_manifest(manifest)


def repair_manifest_tail(manifest: Path) -> None:
    """Drop a last line cut short by a crash (a line written whole keeps it)."""
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        return
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:].decode("utf-8"))
        repair = b"\n"
    except ValueError:
        repair = None
    with open(manifest, "r+b") as handle:
        if repair is None:
            log.warning("%s: dropping a line cut short by an interrupted run", manifest)
            handle.truncate(cut)
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(repair)
        handle.flush()
        os.fsync(handle.fileno())


def write_flac(folder: Path, utt_id: str, audio: np.ndarray) -> Path:
    """Write ``folder/<id>.flac`` under a temporary name, flush it, and rename it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{utt_id}.flac"
    temp = folder / f".{utt_id}.tmp-{os.getpid()}.flac"
    ACTIVE.add(temp)
    # Encoded in memory, then written as bytes: libsndfile writing the file itself reports a
    # full disk through cffi callbacks, which print "Exception ignored ..." tracebacks before
    # the error reaches us. A take is at most 30 s (under 1 MB of FLAC).
    encoded = io.BytesIO()
    sf.write(encoded, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    try:
        with open(temp, "wb") as handle:
            handle.write(encoded.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        remove_path(temp)
        raise
    finally:
        ACTIVE.discard(temp)
    fsync_dir(folder)
    return final


def save_recording(folder: Path, manifest: Path, record: dict[str, Any], audio: np.ndarray) -> Path:
    """Write ``audio`` as ``folder/<record id>.flac``, then append ``record`` to ``manifest``.

    ``record`` is the manifest line (its ``audio`` the FLAC's file name). An ``OSError``
    while appending drops the torn line and the new file before it is re-raised, so a
    failure leaves the earlier recordings as they were. Returns the FLAC path.
    """
    path = write_flac(folder, record["id"], audio)
    try:
        with open(manifest, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        repair_manifest_tail(manifest)
        remove_path(path)
        raise
    return path
