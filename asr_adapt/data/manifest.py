"""Utterances and the manifests that list them.

A manifest is a JSONL file, one utterance a line::

    {"id": "u1", "audio": "audio/u1.flac", "text": "Hello there.", "speaker": "alice",
     "domain": "phone", "duration": 2.5, "age": 31}

Only ``id`` and ``audio`` are required. ``audio`` may be relative: it is resolved against
the manifest's own folder, so a manifest and its audio can move together. ``text`` absent or
``null`` marks unlabeled audio (usable for domain confusion, not for supervised training).
Any other field (``age``, ``gender`` in speechocean762) is kept in :attr:`Utterance.extra`
and written back unchanged.

Importers (:mod:`asr_adapt.data.importers`) turn other layouts into the same
:class:`Utterance` list: a folder of audio with ``.txt`` transcripts, a Kaldi data dir;
their ``load_any`` reads whichever a path holds.

Every problem is raised as :class:`~asr_adapt.core.errors.ManifestError` whose message names
the file, the line and the field, and says what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from asr_adapt.core.errors import ManifestError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.data.paths import absolute_path, check_audio_file, relative_if_inside, resolve_audio_path

#: A manifest's file name inside a folder (a profile's, or one given to ``load_any``).
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
    base = absolute_path(path).parent
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


#: A manifest line longer than this is not an utterance (a wrong file, or an attack on memory).
MAX_LINE_BYTES = 1 << 20
#: More lines than this is not one user's audio (a million utterances is about 1,500 hours).
MAX_LINES = 1_000_000


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file."""
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, not a manifest file; give the .jsonl file "
                            f"(or the folder to `manifest import`)")
    if path.exists() and not path.is_file():
        raise ManifestError(f"{path}: is not a regular file (a pipe or a device); save the manifest to a file")
    try:
        handle = open(path, "rb")  # bytes: decode per line, so errors carry a line number
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file; check the path") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read ({error.strerror}); "
                            "check its permissions") from None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise ManifestError(f"{path} line {number}: longer than {MAX_LINE_BYTES >> 20} MiB; one line holds "
                                    "one utterance's fields")
            if number > MAX_LINES:
                raise ManifestError(f"{path}: more than {MAX_LINES:,} lines; split the manifest")
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
            except RecursionError:  # json's parser recurses once per level: "[[[[..." ends here
                raise ManifestError(f"{path} line {number}: JSON nested too deeply; write one flat "
                                    "JSON object per line") from None
            if not isinstance(record, dict):
                raise ManifestError(f"{path} line {number}: expected a JSON object {{...}}, "
                                    f"found {_json_type(record)}")
            yield number, record


def _utterance_from_record(record: dict[str, Any], base: Path, where: str,
                           check_audio: bool) -> Utterance:
    utt_id = _string_field(record, "id", where, required=True)
    audio_text = _string_field(record, "audio", where, required=True)
    audio = resolve_audio_path(audio_text, base)
    if check_audio:
        check_audio_file(audio_text, audio, where, relative_to="the manifest's folder")
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


# --------------------------------------------------------------------------- writing


def write_manifest(utterances: Iterable[Utterance], path: str | Path) -> Path:
    """Write utterances as JSONL, atomically; return the path written.

    Audio inside the manifest's folder is written relative to it (the folder can then be
    moved as a whole); audio elsewhere is written as an absolute path. Durations are rounded
    to milliseconds. Parent folders are created. Raises :class:`ManifestError` for an empty
    list or a repeated id.
    """
    path = Path(path)
    folder = absolute_path(path).parent
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
        "audio": relative_if_inside(utterance.audio, folder),
        "text": utterance.text,  # null on purpose: says "unlabeled" rather than "forgotten"
        "speaker": utterance.speaker,
    }
    if utterance.domain is not None:
        record["domain"] = utterance.domain
    if utterance.duration is not None:
        record["duration"] = round(utterance.duration, 3)
    record.update(utterance.extra)
    return record
