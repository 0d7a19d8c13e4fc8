"""Importers: other layouts of audio and transcripts turned into :class:`Utterance` lists.

A folder of audio with ``.txt`` transcripts beside it (:func:`import_folder`) and a Kaldi
data dir (:func:`import_kaldi`); :func:`load_any` picks the right reader for a path (a
JSONL manifest included). Every problem is raised as
:class:`~asr_adapt.core.errors.ManifestError` whose message names the file (and line) and
says what to do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator

from asr_adapt.audio.io import audio_info
from asr_adapt.core.errors import ManifestError
from asr_adapt.data.manifest import MANIFEST_NAME, UNKNOWN_SPEAKER, Utterance, read_manifest
from asr_adapt.data.paths import absolute_path, check_audio_file, resolve_audio_path

log = logging.getLogger(__name__)


#: Suffixes (lower case) that :func:`import_folder` treats as audio.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def import_folder(folder: str | Path) -> list[Utterance]:
    """Import a folder (searched recursively) of audio files with transcripts beside them.

    ``talk/a.wav`` takes its text from ``talk/a.txt``; audio without a ``.txt`` is unlabeled.
    The id is the path below ``folder`` without suffix (``alice/a``); the speaker is the
    name of the folder that holds the file, or ``"unknown"`` for files directly in
    ``folder``. Durations come from the audio headers. Hidden files are skipped.
    """
    root = absolute_path(Path(folder))
    if not root.is_dir():
        raise ManifestError(f"{folder}: no such folder; check the path")
    audio_files = sorted(p for p in _walk(root) if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audio_files:
        raise ManifestError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found; "
                            "check the folder")
    utterances: list[Utterance] = []
    by_id: dict[str, Path] = {}
    for audio in audio_files:
        utt_id = audio.relative_to(root).with_suffix("").as_posix()
        if utt_id in by_id:
            raise ManifestError(f"{by_id[utt_id]} and {audio.name} share the name {utt_id!r}; "
                                "keep one of them (they would share one transcript)")
        by_id[utt_id] = audio
        parent = audio.parent.relative_to(root)
        utterances.append(Utterance(
            id=utt_id,
            audio=audio,
            text=_read_transcript(audio.with_suffix(".txt")),
            speaker=parent.name if parent.parts else UNKNOWN_SPEAKER,
            duration=audio_info(audio).duration,
        ))
    _warn_orphan_transcripts(root, set(by_id.values()))
    return utterances


def _walk(root: Path) -> Iterator[Path]:
    """Files below ``root``, skipping hidden files and folders (``.git``, macOS ``._x.wav``)."""
    for current, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(current) / name


def _read_transcript(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text; save the transcript as UTF-8") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read ({error.strerror}); "
                            "check its permissions") from None
    text = " ".join(text.split())  # a transcript may be wrapped over several lines
    if not text:
        raise ManifestError(f"{path}: transcript is empty; write what is said, or delete the "
                            "file to mark the audio unlabeled")
    return text


def _warn_orphan_transcripts(root: Path, audio_files: set[Path]) -> None:
    stems = {audio.with_suffix("") for audio in audio_files}
    orphans = [p for p in _walk(root) if p.suffix == ".txt" and p.with_suffix("") not in stems]
    if orphans:
        log.warning("%s: %d .txt files have no audio beside them (first: %s)", root,
                    len(orphans), orphans[0].relative_to(root))


_ARK_OFFSET = re.compile(r"\.ark:\d+$")


def import_kaldi(folder: str | Path) -> list[Utterance]:
    """Import a Kaldi data dir: ``wav.scp`` plus optional ``text`` and ``utt2spk``.

    Utterances of ``wav.scp`` with no line in ``text`` (or with no ``text`` file) are
    unlabeled. Relative audio paths are looked for first in the data dir, then in the
    current folder (Kaldi scripts run from the recipe folder). Refused with a clear
    message: piped commands in ``wav.scp`` (``sox ... |``), archive offsets
    (``x.ark:12``), and a ``segments`` file (cut the recordings into one file per
    utterance first).
    """
    root = absolute_path(Path(folder))
    scp = root / "wav.scp"
    if not scp.is_file():
        raise ManifestError(f"{folder}: no wav.scp; a Kaldi data dir needs one")
    if (root / "segments").exists():
        raise ManifestError(f"{root / 'segments'}: Kaldi segments are not supported; cut the "
                            "recordings into one audio file per utterance and list those in "
                            "wav.scp (or use a folder of audio + .txt)")
    audio = _read_wav_scp(scp)
    texts = _read_kaldi_table(root / "text", allow_empty_value=True)
    speakers = _read_kaldi_table(root / "utt2spk")
    _check_known_ids(root / "text", texts, audio)
    _check_known_ids(root / "utt2spk", speakers, audio)
    utterances = []
    for utt_id, (path, _line) in audio.items():
        if speakers and utt_id not in speakers:
            raise ManifestError(f"{root / 'utt2spk'}: no line for utterance {utt_id!r}; "
                                "utt2spk must cover every utterance of wav.scp")
        text = texts[utt_id][0] if utt_id in texts else None
        speaker = speakers[utt_id][0] if utt_id in speakers else UNKNOWN_SPEAKER
        utterances.append(Utterance(id=utt_id, audio=path, text=text, speaker=speaker,
                                    duration=audio_info(path).duration))
    return utterances


def _read_kaldi_table(path: Path, *, allow_empty_value: bool = False) -> dict[str, tuple[str, int]]:
    """Read ``<key> <value>`` lines into ``{key: (value, line number)}``; ``{}`` if absent."""
    if not path.exists():
        return {}
    table: dict[str, tuple[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read ({error.strerror})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        # Kaldi separates the key from the value by any whitespace; the value is kept as
        # written (a path may hold spaces).
        parts = line.split(maxsplit=1)
        key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            raise ManifestError(f"{path} line {number}: {key!r} has no value; write "
                                "'<utterance-id> <value>'")
        if key in table:
            raise ManifestError(f"{path} line {number}: {key!r} repeats line {table[key][1]}; "
                                "ids must be unique")
        table[key] = (value, number)
    return table


def _read_wav_scp(scp: Path) -> dict[str, tuple[Path, int]]:
    """Map utterance ids to existing audio files, refusing what is not a plain path."""
    audio: dict[str, tuple[Path, int]] = {}
    for utt_id, (value, number) in _read_kaldi_table(scp).items():
        where = f"{scp} line {number}"
        if value.endswith("|"):
            raise ManifestError(f"{where}: {value!r} is a command pipe, not a file; run the "
                                "command once to write the audio to a file, and list that path")
        if _ARK_OFFSET.search(value):
            raise ManifestError(f"{where}: {value!r} points into a Kaldi archive; extract the "
                                "audio to files (e.g. wav-copy) and list their paths")
        audio[utt_id] = (_find_kaldi_audio(value, scp.parent, where), number)
    if not audio:
        raise ManifestError(f"{scp}: lists no utterances; write '<utterance-id> <path>' lines")
    return audio


def _find_kaldi_audio(value: str, data_dir: Path, where: str) -> Path:
    in_data_dir = resolve_audio_path(value, data_dir)
    if in_data_dir.is_file() or Path(value).is_absolute():
        check_audio_file(value, in_data_dir, where, relative_to="the data dir")
        return in_data_dir
    in_cwd = absolute_path(Path(value))
    if in_cwd.is_file():
        return in_cwd
    raise ManifestError(f"{where}: audio {value!r} not found (looked for {in_data_dir} and "
                        f"{in_cwd})")


def _check_known_ids(path: Path, table: dict[str, tuple[str, int]],
                     audio: dict[str, tuple[Path, int]]) -> None:
    for key, (_value, number) in table.items():
        if key not in audio:
            raise ManifestError(f"{path} line {number}: utterance {key!r} is not in wav.scp; "
                                "add its audio or remove the line")


def load_any(source: str | Path, *, check_audio: bool = True,
             require_text: bool = False) -> list[Utterance]:
    """Read utterances from whatever ``source`` is.

    A ``.jsonl`` file is read as a manifest; a folder holding ``wav.scp`` is a Kaldi data
    dir; a folder holding ``manifest.jsonl`` is read through that manifest; any other folder
    is imported as audio + ``.txt`` files. ``check_audio`` applies to manifests only
    (importers always look at the audio, to read durations).
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".jsonl":
        return read_manifest(path, check_audio=check_audio, require_text=require_text)
    if path.is_dir():
        if (path / "wav.scp").is_file():
            utterances = import_kaldi(path)
        elif (path / MANIFEST_NAME).is_file():
            return read_manifest(path / MANIFEST_NAME, check_audio=check_audio,
                                 require_text=require_text)
        else:
            utterances = import_folder(path)
        if require_text:
            _check_all_have_text(utterances, path)
        return utterances
    if not path.exists():
        raise ManifestError(f"{source}: no such file or folder; check the path")
    raise ManifestError(f"{source}: not a manifest (.jsonl), a Kaldi data dir (with wav.scp) "
                        "or a folder of audio files; give one of those")


def _check_all_have_text(utterances: list[Utterance], source: Path) -> None:
    missing = [u.id for u in utterances if u.text is None or not u.text.strip()]
    if missing:
        raise ManifestError(f"{source}: {len(missing)} utterances have no transcript (first: "
                            f"{missing[0]!r}); this step needs a transcript for every utterance")
