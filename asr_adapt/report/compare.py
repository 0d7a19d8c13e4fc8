"""Before/after comparison of two evaluations of the same utterances (no model needed).

The usual pair is a profile's base model ("unadapted") and the same model with the
profile's LoRA adapter ("adapted"). :func:`compare_reports` works on any two
:class:`~asr_adapt.data.scoring.EvalReport` objects and returns a :class:`Comparison`, which
renders itself as JSON and markdown. Running both evaluations for a profile is
:mod:`asr_adapt.report.profile_compare`; the chart is :mod:`asr_adapt.report.plot`; the
files are written by :mod:`asr_adapt.report.compare_files`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.data.scoring import EvalReport, UtteranceScore
from asr_adapt.report.markdown import cell, describe_reduction, percent, shown


class CompareError(AsrAdaptError):
    """Two reports that cannot be compared (they cover different utterances)."""


@dataclass(frozen=True)
class SpeakerChange:
    """One speaker's pooled WER before and after."""

    n_utterances: int
    reference_words: int
    errors_before: int
    errors_after: int
    wer_before: float | None
    wer_after: float | None
    #: (before - after) / before; positive = fewer errors. None when before is 0 or n/a.
    relative_reduction: float | None


@dataclass(frozen=True)
class UtteranceChange:
    """One utterance whose word errors changed."""

    id: str
    speaker: str
    reference: str
    hypothesis_before: str
    hypothesis_after: str
    errors_before: int
    errors_after: int

    @property
    def delta(self) -> int:
        """Word errors gained (negative: fixed)."""
        return self.errors_after - self.errors_before


@dataclass
class Comparison:
    """What changed between two evaluations of the same utterances.

    ``wer_change`` is ``wer_after - wer_before`` (negative = better);
    ``wer_relative_reduction`` is ``(wer_before - wer_after) / wer_before`` (positive =
    better, ``None`` when ``wer_before`` is 0 or unknown); likewise for CER. ``fixed``,
    ``broken`` and ``unchanged`` count utterances with fewer, more or equal word errors
    after. ``plot`` is the chart's file name once
    :func:`~asr_adapt.report.compare_files.save_comparison` drew it.
    ``before`` and ``after`` hold the full reports (saved beside, not in ``to_dict``).
    """

    labels: tuple[str, str]
    n_utterances: int
    reference_words: int
    wer_before: float | None
    wer_after: float | None
    wer_change: float | None
    wer_relative_reduction: float | None
    cer_before: float | None
    cer_after: float | None
    cer_relative_reduction: float | None
    per_speaker: dict[str, SpeakerChange]
    fixed: int
    broken: int
    unchanged: int
    worst_regressions: list[UtteranceChange]
    best_fixes: list[UtteranceChange]
    meta: dict[str, Any] = field(default_factory=dict)
    plot: str | None = None
    #: The profile's picture of labeled vs unlabeled encoder states (domain confusion), as
    #: copied beside the report by :func:`~asr_adapt.report.compare_files.save_comparison`;
    #: its source is ``meta["domain picture"]``.
    domain_plot: str | None = None
    before: EvalReport | None = field(default=None, repr=False, compare=False)
    after: EvalReport | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (without the two full reports)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__
                if name not in ("before", "after")}
        data["labels"] = list(self.labels)
        data["per_speaker"] = {k: asdict(v) for k, v in self.per_speaker.items()}
        for key in ("worst_regressions", "best_fixes"):
            data[key] = [asdict(u) for u in data[key]]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The comparison as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    def to_markdown(self, max_rows: int = 10) -> str:
        """Markdown: overall and per-speaker tables, counts, regressions and fixes.

        ``max_rows`` limits the regressions and fixes tables.
        """
        a, b = self.labels
        parts = [f"# Comparison: {a} vs {b}", "",
                 f"**WER {percent(self.wer_before)}% → {percent(self.wer_after)}% "
                 f"({describe_reduction(self.wer_relative_reduction)})**", ""]
        # The reports' own meta ("before", "after") is in the JSON; too long for here.
        facts = [f"- **{cell(k)}**: {cell(shown(v))}" for k, v in self.meta.items()
                 if k not in ("before", "after")]
        parts += [*facts, ""] if facts else []
        parts += [*_markdown_overall(self), *_markdown_speakers(self)]
        parts += ["## Utterances", "",
                  f"Fixed (fewer word errors): **{self.fixed}** · broken (more): "
                  f"**{self.broken}** · unchanged: **{self.unchanged}** "
                  f"(of {self.n_utterances})", ""]
        parts += _markdown_changes("Worst regressions", self.worst_regressions, max_rows, a, b)
        parts += _markdown_changes("Best fixes", self.best_fixes, max_rows, a, b)
        if self.plot:
            parts += [f"Plot: [{self.plot}]({self.plot})", ""]
        if self.domain_plot:
            parts += ["Encoder states of labeled vs unlabeled audio, before and after adaptation "
                      f"(PCA): [{self.domain_plot}]({self.domain_plot})", ""]
        return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------- comparing


def compare_reports(before: EvalReport, after: EvalReport,
                    labels: Sequence[str] = ("unadapted", "adapted"),
                    meta: dict[str, Any] | None = None, max_examples: int = 20) -> Comparison:
    """Compare two reports on the same utterances (matched by id).

    Raises :class:`CompareError` when the id sets differ or an id has two references.
    ``max_examples`` caps ``worst_regressions`` and ``best_fixes``. ``meta`` (model,
    profile, adapter, options...) is copied, with both reports' meta under ``"before"``
    and ``"after"``.
    """
    labels = tuple(labels)
    if len(labels) != 2:
        raise ValueError(f"labels must be two names, got {labels!r}")
    pairs = _pair(before, after, labels)
    changes = [UtteranceChange(id=b.id, speaker=b.speaker, reference=b.reference,
                               hypothesis_before=b.hypothesis, hypothesis_after=a.hypothesis,
                               errors_before=b.errors, errors_after=a.errors) for b, a in pairs]
    # Ties broken by id, so that the same reports always list the same examples.
    regressions = sorted((c for c in changes if c.delta > 0), key=lambda c: (-c.delta, c.id))
    fixes = sorted((c for c in changes if c.delta < 0), key=lambda c: (c.delta, c.id))
    return Comparison(
        labels=labels, n_utterances=len(pairs), reference_words=before.reference_words,
        wer_before=before.wer, wer_after=after.wer,
        wer_change=None if before.wer is None or after.wer is None else after.wer - before.wer,
        wer_relative_reduction=relative_reduction(before.wer, after.wer),
        cer_before=before.cer, cer_after=after.cer,
        cer_relative_reduction=relative_reduction(before.cer, after.cer),
        per_speaker=_per_speaker(pairs),
        fixed=len(fixes), broken=len(regressions),
        unchanged=len(changes) - len(fixes) - len(regressions),
        worst_regressions=regressions[:max_examples], best_fixes=fixes[:max_examples],
        meta={**(meta or {}), "before": dict(before.meta), "after": dict(after.meta)},
        before=before, after=after,
    )


def relative_reduction(before: float | None, after: float | None) -> float | None:
    """``(before - after) / before``; ``None`` when before is 0 or either is unknown."""
    if before is None or after is None or before == 0:
        return None
    return (before - after) / before


def _pair(before: EvalReport, after: EvalReport,
          labels: tuple[str, ...]) -> list[tuple[UtteranceScore, UtteranceScore]]:
    by_id = {u.id: u for u in after.utterances}
    only_before = [u.id for u in before.utterances if u.id not in by_id]
    known = {u.id for u in before.utterances}
    only_after = [u.id for u in after.utterances if u.id not in known]
    if only_before or only_after:
        sides = [f"{len(ids)} only in '{label}' (first: {ids[0]!r})"
                 for ids, label in ((only_before, labels[0]), (only_after, labels[1])) if ids]
        raise CompareError(f"the reports cover different utterances: {', '.join(sides)}; "
                           "compare two evaluations of the same manifest")
    pairs = [(u, by_id[u.id]) for u in before.utterances]
    for b, a in pairs:
        if b.reference != a.reference:
            raise CompareError(f"utterance {b.id!r} has different references in the two "
                               "reports; compare two evaluations of the same manifest")
    return pairs


def _per_speaker(pairs: list[tuple[UtteranceScore, UtteranceScore]]) -> dict[str, SpeakerChange]:
    groups: dict[str, list[tuple[UtteranceScore, UtteranceScore]]] = {}
    for b, a in pairs:
        groups.setdefault(b.speaker, []).append((b, a))
    result = {}
    for speaker in sorted(groups):
        group = groups[speaker]
        words = sum(b.reference_words for b, _ in group)
        before = sum(b.errors for b, _ in group)
        after = sum(a.errors for _, a in group)
        # Pooled over the speaker's words, as in EvalReport.per_speaker.
        wer_before = before / words if words else None
        wer_after = after / words if words else None
        result[speaker] = SpeakerChange(
            n_utterances=len(group), reference_words=words, errors_before=before,
            errors_after=after, wer_before=wer_before, wer_after=wer_after,
            relative_reduction=relative_reduction(wer_before, wer_after))
    return result


# --------------------------------------------------------------------------- markdown


def _signed_points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f}"


def _markdown_overall(c: Comparison) -> list[str]:
    a, b = c.labels
    cer_change = None if c.cer_before is None or c.cer_after is None else c.cer_after - c.cer_before
    return [
        "## Overall", "",
        f"{c.n_utterances} utterances, {c.reference_words} reference words.", "",
        f"| Metric | {cell(a)} | {cell(b)} | Change (points) | Relative reduction |",
        "|---|---:|---:|---:|---:|",
        f"| WER % | {percent(c.wer_before)} | {percent(c.wer_after)} | "
        f"{_signed_points(c.wer_change)} | {_ratio(c.wer_relative_reduction)} |",
        f"| CER % | {percent(c.cer_before)} | {percent(c.cer_after)} | "
        f"{_signed_points(cer_change)} | {_ratio(c.cer_relative_reduction)} |",
        "",
    ]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _markdown_speakers(c: Comparison) -> list[str]:
    a, b = c.labels
    lines = ["## Per speaker", "",
             f"| Speaker | Utterances | Ref. words | WER % {cell(a)} | WER % {cell(b)} | "
             "Relative reduction |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in c.per_speaker.items():
        lines.append(f"| {cell(name)} | {s.n_utterances} | {s.reference_words} | "
                     f"{percent(s.wer_before)} | {percent(s.wer_after)} | "
                     f"{_ratio(s.relative_reduction)} |")
    return lines + [""]


def _markdown_changes(title: str, changes: list[UtteranceChange], max_rows: int,
                      a: str, b: str) -> list[str]:
    listed = changes[:max(max_rows, 0)]
    heading = f"## {title}"
    if len(listed) < len(changes):
        heading += f" ({len(listed)} of {len(changes)} listed)"
    if not changes:
        return [heading, "", "None.", ""]
    lines = [heading, "",
             f"| ID | Speaker | Errors {cell(a)} → {cell(b)} | Reference | "
             f"Hypothesis {cell(a)} | Hypothesis {cell(b)} |",
             "|---|---|---:|---|---|---|"]
    for u in listed:
        lines.append(f"| {cell(u.id)} | {cell(u.speaker)} | {u.errors_before} → "
                     f"{u.errors_after} | {cell(u.reference)} | {cell(u.hypothesis_before)} | "
                     f"{cell(u.hypothesis_after)} |")
    return lines + [""]


__all__ = ["Comparison", "CompareError", "SpeakerChange", "UtteranceChange", "compare_reports",
           "relative_reduction"]
