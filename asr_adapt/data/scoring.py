"""Scoring transcripts against references: WER, CER, per-speaker and per-utterance detail.

Independent of any model: it takes strings and returns an :class:`EvalReport`. Both sides
are normalized with Whisper's English text normalizer first, because Whisper writes cased,
punctuated text with digits ("2648.") while references are often plain prompts
("TWO SIX FOUR EIGHT"); scoring the raw strings would count style as errors.

Rendering a report as markdown, and saving and loading report files, is
:mod:`asr_adapt.report.eval_report`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from asr_adapt.data.manifest import UNKNOWN_SPEAKER

#: What :func:`score` records in ``meta["normalizer"]`` when the caller names none.
NORMALIZER_NAME = "whisper-english (transformers EnglishTextNormalizer + OpenAI spelling table)"


@functools.lru_cache(maxsize=1)
def normalizer() -> Callable[[str], str]:
    """Whisper's English text normalizer (built once, then shared).

    It lower-cases, removes punctuation and filler words ("uh", "um"), expands contractions
    and standardizes numbers, so that "TWO SIX FOUR EIGHT" and "2648", or "Hello, World!" and
    "hello world", compare equal.

    The British -> American spelling mapping (~1,700 words such as "colour" -> "color") is
    OpenAI's ``english.json``, read from the ``whisper-normalizer`` package (transformers
    does not ship it and nothing is downloaded here). Without that package the mapping is
    empty and "colour" and "color" count as different words.

    Known quirks of this normalizer (kept, so that our figures stay comparable): a digit
    string loses leading zeros ("0351" -> "351", while "ZERO THREE FIVE ONE" -> "0351"),
    and spaced digits keep their spaces with a lone "1" spelled out ("1 2 3" -> "one 2 3").
    """
    # Imported here: transformers is heavy, and scoring is not needed on every code path.
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(english_spelling_mapping())


def english_spelling_mapping() -> dict[str, str]:
    """OpenAI Whisper's British -> American spelling table, or {} when it is not installed."""
    from importlib import resources

    try:
        table = resources.files("whisper_normalizer") / "normalizers" / "english.json"
        return json.loads(table.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError, ValueError):
        return {}


@dataclass(frozen=True)
class UtteranceScore:
    """How one hypothesis compares with its reference (after normalization).

    ``wer`` is ``None`` when the normalized reference is empty: there is nothing to divide
    by, and every hypothesis word counts as an insertion.
    """

    id: str
    speaker: str
    reference: str
    hypothesis: str
    normalized_reference: str
    normalized_hypothesis: str
    reference_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    errors: int
    wer: float | None
    #: Word-level diff, e.g. ``the [cat->hat] sat [+on] [-mat]``.
    alignment: str


@dataclass(frozen=True)
class SpeakerScore:
    """Errors pooled over one speaker's words (not an average of utterance WERs)."""

    wer: float | None
    n_utterances: int
    reference_words: int
    errors: int


@dataclass
class EvalReport:
    """WER and CER over a set of utterances, with detail per speaker and per utterance.

    ``wer`` = (substitutions + deletions + insertions) / reference_words, pooled over all
    words; utterances whose normalized reference is empty add no reference words but their
    hypothesis words count as insertions. ``wer``/``cer`` are ``None`` when there are no
    reference words at all. ``meta`` records how the report was made (model, options,
    normalizer, scorer).
    """

    wer: float | None
    cer: float | None
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    reference_words: int
    reference_chars: int
    n_utterances: int
    n_empty_references: int
    per_speaker: dict[str, SpeakerScore]
    utterances: list[UtteranceScore]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, numbers, strings) suitable for JSON."""
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        # default=str: callers may record paths or other objects in ``meta``.
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. a saved ``report.json``)."""
        values = dict(data)
        values["per_speaker"] = {name: SpeakerScore(**score)
                                 for name, score in data["per_speaker"].items()}
        values["utterances"] = [UtteranceScore(**u) for u in data["utterances"]]
        return cls(**values)


# --------------------------------------------------------------------------- scoring


def score(references: Sequence[str], hypotheses: Sequence[str],
          ids: Sequence[str] | None = None, speakers: Sequence[str] | None = None,
          meta: dict[str, Any] | None = None,
          normalize: Callable[[str], str] | None = None) -> EvalReport:
    """Score hypotheses against references (WER, CER, per speaker, per utterance).

    Both sides pass through ``normalize`` (default :func:`normalizer`). ``ids`` default to
    ``"1"``, ``"2"``, ...; ``speakers`` to ``"unknown"``. ``meta`` is copied into the report;
    the normalizer and scorer used are added to it unless given.
    """
    n = _check_lengths(references, hypotheses, ids, speakers)
    normalize = normalize or normalizer()
    ids = [str(i) for i in ids] if ids is not None else [str(i + 1) for i in range(n)]
    speakers = list(speakers) if speakers is not None else [UNKNOWN_SPEAKER] * n
    refs = [_clean(normalize(_text(r, "reference", i))) for i, r in enumerate(references)]
    hyps = [_clean(normalize(_text(h, "hypothesis", i))) for i, h in enumerate(hypotheses)]

    utterances = _score_utterances(references, hypotheses, refs, hyps, ids, speakers)
    char_errors, ref_chars = _character_errors(refs, hyps)
    totals = {key: sum(getattr(u, key) for u in utterances)
              for key in ("hits", "substitutions", "deletions", "insertions", "reference_words")}
    errors = totals["substitutions"] + totals["deletions"] + totals["insertions"]
    report_meta = dict(meta or {})
    report_meta.setdefault("normalizer", NORMALIZER_NAME if normalize is normalizer()
                           else getattr(normalize, "__name__", type(normalize).__name__))
    report_meta.setdefault("scorer", f"jiwer {_jiwer_version()}")
    return EvalReport(
        wer=_rate(errors, totals["reference_words"]),
        cer=_rate(char_errors, ref_chars),
        reference_chars=ref_chars,
        n_utterances=n,
        n_empty_references=sum(1 for r in refs if not r),
        per_speaker=_per_speaker(utterances),
        utterances=utterances,
        meta=report_meta,
        **totals,
    )


def _check_lengths(references: Sequence[str], hypotheses: Sequence[str],
                   ids: Sequence[str] | None, speakers: Sequence[str] | None) -> int:
    n = len(references)
    if n == 0:
        raise ValueError("nothing to score: no references given")
    for name, values in (("hypotheses", hypotheses), ("ids", ids), ("speakers", speakers)):
        if values is not None and len(values) != n:
            raise ValueError(f"{len(values)} {name} for {n} references; they must pair up")
    if ids is not None and len(set(map(str, ids))) != n:
        raise ValueError("ids must be unique")
    return n


def _text(value: Any, name: str, index: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} {index} is {type(value).__name__}, not text; score only "
                         "labeled utterances")
    return value


def _clean(text: str) -> str:
    return " ".join(text.split())


def _score_utterances(references: Sequence[str], hypotheses: Sequence[str], refs: list[str],
                      hyps: list[str], ids: list[str], speakers: list[str]) -> list[UtteranceScore]:
    import jiwer

    # jiwer refuses (or, by version, mis-scores) empty references, so it only sees the
    # others; an empty reference turns every hypothesis word into an insertion.
    scored = [i for i, r in enumerate(refs) if r]
    alignments: dict[int, tuple[list[str], list[str], list[Any]]] = {}
    if scored:
        output = jiwer.process_words([refs[i] for i in scored], [hyps[i] for i in scored])
        for k, i in enumerate(scored):
            alignments[i] = (output.references[k], output.hypotheses[k], output.alignments[k])
    results = []
    for i in range(len(refs)):
        if i in alignments:
            counts, diff = _from_alignment(*alignments[i])
        else:
            words = hyps[i].split()
            counts = {"hits": 0, "substitutions": 0, "deletions": 0, "insertions": len(words)}
            diff = " ".join(f"[+{w}]" for w in words)
        ref_words = len(refs[i].split())
        errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
        results.append(UtteranceScore(
            id=ids[i], speaker=str(speakers[i]), reference=references[i],
            hypothesis=hypotheses[i], normalized_reference=refs[i], normalized_hypothesis=hyps[i],
            reference_words=ref_words, errors=errors, wer=_rate(errors, ref_words),
            alignment=diff, **counts,
        ))
    return results


def _from_alignment(ref: list[str], hyp: list[str],
                    chunks: list[Any]) -> tuple[dict[str, int], str]:
    """Counts and a readable diff from one utterance's jiwer alignment chunks."""
    counts = {"hits": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
    pieces: list[str] = []
    for chunk in chunks:
        ref_words = ref[chunk.ref_start_idx:chunk.ref_end_idx]
        hyp_words = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "equal":
            counts["hits"] += len(ref_words)
            pieces += ref_words
        elif chunk.type == "substitute":
            counts["substitutions"] += len(ref_words)
            pieces += [f"[{r}->{h}]" for r, h in zip(ref_words, hyp_words)]
        elif chunk.type == "delete":
            counts["deletions"] += len(ref_words)
            pieces += [f"[-{r}]" for r in ref_words]
        elif chunk.type == "insert":
            counts["insertions"] += len(hyp_words)
            pieces += [f"[+{h}]" for h in hyp_words]
        else:  # a jiwer change we have not seen: fail loudly rather than miscount
            raise RuntimeError(f"unknown jiwer alignment type {chunk.type!r}")
    return counts, " ".join(pieces)


def _character_errors(refs: list[str], hyps: list[str]) -> tuple[int, int]:
    """Character edits and reference characters, pooled (spaces count, as in jiwer's CER)."""
    import jiwer

    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    errors = sum(len(h) for r, h in zip(refs, hyps) if not r)
    chars = sum(len(r) for r, _ in pairs)
    if pairs:
        output = jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs])
        errors += output.substitutions + output.deletions + output.insertions
    return errors, chars


def _per_speaker(utterances: list[UtteranceScore]) -> dict[str, SpeakerScore]:
    groups: dict[str, list[UtteranceScore]] = {}
    for utterance in utterances:
        groups.setdefault(utterance.speaker, []).append(utterance)
    result = {}
    for speaker in sorted(groups):
        group = groups[speaker]
        words = sum(u.reference_words for u in group)
        errors = sum(u.errors for u in group)
        result[speaker] = SpeakerScore(wer=_rate(errors, words), n_utterances=len(group),
                                       reference_words=words, errors=errors)
    return result


def _rate(errors: int, total: int) -> float | None:
    return errors / total if total else None


def _jiwer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jiwer")
    except PackageNotFoundError:
        return "unknown"
