"""Utterances and the manifests that list them.

A manifest is a JSONL file, one utterance a line::

    {"id": "u1", "audio": "audio/u1.flac", "text": "Hello there.", "speaker": "alice",
     "domain": "phone", "duration": 2.5, "age": 31}

Only ``id`` and ``audio`` are required. ``audio`` may be relative: it is resolved against
the manifest's own folder, so a manifest and its audio can move together. ``text`` absent or
``null`` marks unlabeled audio (usable for domain confusion, not for supervised training).
Any other field (``age``, ``gender`` in speechocean762) is kept in :attr:`Utterance.extra`
and written back unchanged.

Importers turn other layouts into the same :class:`Utterance` list: a folder of audio with
``.txt`` transcripts beside it (:func:`import_folder`) and a Kaldi data dir
(:func:`import_kaldi`); :func:`load_any` picks the right one for a path.

Every problem is raised as :class:`~asr_adapt.errors.ManifestError` whose message names the
file, the line and the field, and says what to do.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from asr_adapt.audio.io import audio_info
from asr_adapt.core.errors import ManifestError
from asr_adapt.core.files import write_text_atomic

log = logging.getLogger(__name__)

#: Suffixes (lower case) that :func:`import_folder` treats as audio.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
#: The file name :func:`load_any` looks for inside a folder.
MANIFEST_NAME = "manifest.jsonl"
#: Speaker given to utterances whose source names none.
UNKNOWN_SPEAKER = "unknown"
#: Fields with a place of their own in :class:`Utterance`; everything else goes to ``extra``.
CORE_FIELDS = ("id", "audio", "text", "speaker", "domain", "duration")


@dataclass(frozen=True)
class Utterance:
    """One recording and, when labeled, what was said in it.

    ``audio`` is absolute once read through this module. ``text`` is ``None`` for unlabeled
    audio. ``extra`` holds any other manifest fields and is written back as it was read.
    """

    id: str
    audio: Path
    text: str | None = None
    speaker: str = UNKNOWN_SPEAKER
    domain: str | None = None
    duration: float | None = None
    # hash=False: a dict is unhashable, and the other fields identify an utterance anyway.
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        clash = sorted(set(self.extra) & set(CORE_FIELDS))
        if clash:
            raise ValueError(f"Utterance {self.id!r}: extra must not hold core fields {clash}")

    @property
    def labeled(self) -> bool:
        """True when the utterance has a transcript."""
        return self.text is not None


@dataclass(frozen=True)
class ManifestSummary:
    """Counts that describe a list of utterances (see :func:`summarize`)."""

    count: int
    seconds: float
    speakers: int
    labeled: int
    #: Utterances whose duration is not known; ``seconds`` leaves them out.
    unknown_durations: int = 0

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    def __str__(self) -> str:
        text = (f"{self.count} utterances, {self.minutes:.1f} min, {self.speakers} speakers, "
                f"{self.labeled} labeled")
        if self.unknown_durations:
            text += f" (duration unknown for {self.unknown_durations})"
        return text


def summarize(utterances: Iterable[Utterance]) -> ManifestSummary:
    """Count utterances, seconds of audio, distinct speakers and labeled utterances."""
    utterances = list(utterances)
    known = [u.duration for u in utterances if u.duration is not None]
    return ManifestSummary(
        count=len(utterances),
        seconds=float(sum(known)),
        speakers=len({u.speaker for u in utterances}),
        labeled=sum(u.labeled for u in utterances),
        unknown_durations=len(utterances) - len(known),
    )


# --------------------------------------------------------------------------- JSONL reading


def read_manifest(path: str | Path, *, check_audio: bool = True,
                  require_text: bool = False) -> list[Utterance]:
    """Read and validate a JSONL manifest.

    Relative ``audio`` paths resolve against the manifest's folder. Blank lines are skipped.
    With ``check_audio`` every audio file must exist; with ``require_text`` every utterance
    must have a non-blank transcript. Raises :class:`ManifestError` naming the file, line
    and field of the first problem.
    """
    path = Path(path)
    base = _absolute(path).parent
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    for number, record in _json_lines(path):
        where = f"{path} line {number}"
        utterance = _utterance_from_record(record, base, where, check_audio)
        if utterance.id in first_line:
            raise ManifestError(f"{where}: id {utterance.id!r} repeats line "
                                f"{first_line[utterance.id]}; ids must be unique")
        if require_text:
            _check_has_text(utterance, where)
        first_line[utterance.id] = number
        utterances.append(utterance)
    if not utterances:
        raise ManifestError(f"{path}: holds no utterances; add one JSON object per line")
    return utterances


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file."""
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, not a manifest file; give the .jsonl file "
                            f"(or the folder to `manifest import`)")
    try:
        handle = open(path, "rb")  # bytes: decode per line, so errors carry a line number
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file; check the path") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read ({error.strerror}); "
                            "check its permissions") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise ManifestError(f"{path} line {number}: not UTF-8 text; save the manifest "
                                    "as UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{path} line {number}: not valid JSON ({error.msg} at "
                                    f"column {error.colno}); write one JSON object per "
                                    "line") from None
            if not isinstance(record, dict):
                raise ManifestError(f"{path} line {number}: expected a JSON object {{...}}, "
                                    f"found {_json_type(record)}")
            yield number, record


def _utterance_from_record(record: dict[str, Any], base: Path, where: str,
                           check_audio: bool) -> Utterance:
    utt_id = _string_field(record, "id", where, required=True)
    audio_text = _string_field(record, "audio", where, required=True)
    audio = _resolve(audio_text, base)
    if check_audio:
        _check_audio_file(audio_text, audio, where, relative_to="the manifest's folder")
    text = _optional_field(record, "text", str, "a string", where)
    speaker = _string_field(record, "speaker", where, required=False) or UNKNOWN_SPEAKER
    domain = _string_field(record, "domain", where, required=False)
    duration = _duration_field(record, where)
    extra = {key: value for key, value in record.items() if key not in CORE_FIELDS}
    return Utterance(id=utt_id, audio=audio, text=text, speaker=speaker, domain=domain,
                     duration=duration, extra=extra)


def _string_field(record: dict[str, Any], name: str, where: str, *, required: bool) -> str | None:
    """A string field that, when present, must not be blank."""
    if required and name not in record:
        raise ManifestError(f"{where}: field {name!r} is missing")
    value = _optional_field(record, name, str, "a string", where)
    if value is None:
        if required:
            raise ManifestError(f"{where}: field {name!r} is null; give it a value")
        return None
    if not value.strip():
        hint = "give it a value" if required else "leave the field out instead"
        raise ManifestError(f"{where}: field {name!r} is empty; {hint}")
    return value


def _optional_field(record: dict[str, Any], name: str, kind: type, described: str,
                    where: str) -> Any:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{where}: field {name!r} must be {described}, found "
                            f"{_json_type(value)} {json.dumps(value)[:40]}")
    return value


def _duration_field(record: dict[str, Any], where: str) -> float | None:
    value = _optional_field(record, "duration", (int, float), "a number of seconds", where)
    if value is None:
        return None
    if not math.isfinite(value) or value < 0:
        raise ManifestError(f"{where}: field 'duration' must be a non-negative number of "
                            f"seconds, found {value}")
    return float(value)


def _check_has_text(utterance: Utterance, where: str) -> None:
    if utterance.text is None:
        raise ManifestError(f"{where}: field 'text' is missing; this step needs a transcript "
                            f"for every utterance (utterance {utterance.id!r})")
    if not utterance.text.strip():
        raise ManifestError(f"{where}: field 'text' is empty; this step needs a transcript "
                            f"for every utterance (utterance {utterance.id!r})")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- paths


def _absolute(path: Path) -> Path:
    """Absolute and normalised (``..`` folded) without resolving symlinks."""
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(path))))


def _resolve(audio: str, base: Path) -> Path:
    candidate = Path(os.path.expanduser(audio))
    return _absolute(candidate if candidate.is_absolute() else base / candidate)


def _check_audio_file(given: str, resolved: Path, where: str, *, relative_to: str) -> None:
    if resolved.is_file():
        return
    if resolved.is_dir():
        raise ManifestError(f"{where}: audio {given!r} is a folder, not a file ({resolved})")
    hint = "" if Path(given).is_absolute() else f"; relative paths start from {relative_to}"
    raise ManifestError(f"{where}: audio {given!r} not found (looked for {resolved}){hint}")


def _relative_if_inside(audio: Path, folder: Path) -> str:
    """``audio`` relative to ``folder`` when it lies inside it, else absolute (POSIX style)."""
    audio = _absolute(audio)
    if audio.is_relative_to(folder):
        return audio.relative_to(folder).as_posix()
    return audio.as_posix()


# --------------------------------------------------------------------------- writing


def write_manifest(utterances: Iterable[Utterance], path: str | Path) -> Path:
    """Write utterances as JSONL, atomically; return the path written.

    Audio inside the manifest's folder is written relative to it (the folder can then be
    moved as a whole); audio elsewhere is written as an absolute path. Durations are rounded
    to milliseconds. Parent folders are created. Raises :class:`ManifestError` for an empty
    list or a repeated id.
    """
    path = Path(path)
    folder = _absolute(path).parent
    lines: list[str] = []
    seen: set[str] = set()
    for utterance in utterances:
        if utterance.id in seen:
            raise ManifestError(f"{path}: id {utterance.id!r} appears twice; ids must be unique")
        seen.add(utterance.id)
        lines.append(json.dumps(_record(utterance, folder), ensure_ascii=False))
    if not lines:
        raise ManifestError(f"{path}: no utterances to write")
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _record(utterance: Utterance, folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": utterance.id,
        "audio": _relative_if_inside(utterance.audio, folder),
        "text": utterance.text,  # null on purpose: says "unlabeled" rather than "forgotten"
        "speaker": utterance.speaker,
    }
    if utterance.domain is not None:
        record["domain"] = utterance.domain
    if utterance.duration is not None:
        record["duration"] = round(utterance.duration, 3)
    record.update(utterance.extra)
    return record


# --------------------------------------------------------------------------- folder import


def import_folder(folder: str | Path) -> list[Utterance]:
    """Import a folder (searched recursively) of audio files with transcripts beside them.

    ``talk/a.wav`` takes its text from ``talk/a.txt``; audio without a ``.txt`` is unlabeled.
    The id is the path below ``folder`` without suffix (``alice/a``); the speaker is the
    name of the folder that holds the file, or ``"unknown"`` for files directly in
    ``folder``. Durations come from the audio headers. Hidden files are skipped.
    """
    root = _absolute(Path(folder))
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


# --------------------------------------------------------------------------- Kaldi import

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
    root = _absolute(Path(folder))
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
    in_data_dir = _resolve(value, data_dir)
    if in_data_dir.is_file() or Path(value).is_absolute():
        _check_audio_file(value, in_data_dir, where, relative_to="the data dir")
        return in_data_dir
    in_cwd = _absolute(Path(value))
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


# --------------------------------------------------------------------------- dispatch


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
