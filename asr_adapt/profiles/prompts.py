"""The sentences an enrollment asks the speaker to read: which ones, in which order.

:func:`choose_prompts` reads a prompts file (one sentence per line) and leaves out what is
already recorded, so enrollment resumes where it stopped. The shipped file
(:data:`asr_adapt.core.samples.DEFAULT_PROMPTS`) also holds the sentences of the held-out
test set and the generic reference set: those are never offered, so no adapter hears them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.core.samples import DEFAULT_PROMPTS

#: The last lines of the shipped prompts are the held-out test sentences of samples/.
HELD_OUT_PROMPTS = 30
#: Lines 290-301 (1-based) of the shipped prompts are samples/generic, the forgetting guard.
GENERIC_PROMPT_LINES = range(290, 302)


class EnrollmentError(AsrAdaptError):
    """Enrollment cannot run (no terminal, no prompts file, ...)."""


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


__all__ = [
    "DEFAULT_PROMPTS",
    "GENERIC_PROMPT_LINES",
    "HELD_OUT_PROMPTS",
    "EnrollmentError",
    "choose_prompts",
]
