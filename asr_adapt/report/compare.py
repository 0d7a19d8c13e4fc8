"""Before/after comparison of two evaluations of the same utterances.

The usual pair is a profile's base model ("unadapted") and the same model with the
profile's LoRA adapter ("adapted"): :func:`compare_profile` runs both, :func:`compare_reports`
works on any two :class:`~asr_adapt.evaluation.EvalReport` objects, and
:func:`save_comparison` writes JSON, markdown and a bar chart.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.data.scoring import EvalReport, UtteranceScore
from asr_adapt.core.files import copy_file_atomic, write_text_atomic

if TYPE_CHECKING:  # transcribe imports torch: not needed to compare two reports
    from asr_adapt.data.manifest import Utterance
    from asr_adapt.models.options import TranscribeOptions

#: File names :func:`save_comparison` writes inside its folder.
COMPARE_JSON, COMPARE_MD, COMPARE_PNG = "compare.json", "compare.md", "compare.png"
BEFORE_JSON, AFTER_JSON = "before.json", "after.json"
DOMAIN_PNG = "domain.png"
#: Speakers drawn in the chart at most (the worst ones); more would be unreadable.
MAX_PLOT_SPEAKERS = 30


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
    after. ``plot`` is the chart's file name once :func:`save_comparison` drew it.
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
    #: copied beside the report by :func:`save_comparison`; its source is ``meta["domain picture"]``.
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
                 f"**WER {_percent(self.wer_before)}% → {_percent(self.wer_after)}% "
                 f"({_describe(self.wer_relative_reduction)})**", ""]
        # The reports' own meta ("before", "after") is in the JSON; too long for here.
        facts = [f"- **{_cell(k)}**: {_cell(_shown(v))}" for k, v in self.meta.items()
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


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell (one line, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _describe(reduction: float | None) -> str:
    if reduction is None:
        return "relative change n/a"
    if reduction >= 0:
        return f"{100 * reduction:.1f}% relative reduction"
    return f"{-100 * reduction:.1f}% relative increase"


def _signed_points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f}"


def _markdown_overall(c: Comparison) -> list[str]:
    a, b = c.labels
    cer_change = None if c.cer_before is None or c.cer_after is None else c.cer_after - c.cer_before
    return [
        "## Overall", "",
        f"{c.n_utterances} utterances, {c.reference_words} reference words.", "",
        f"| Metric | {_cell(a)} | {_cell(b)} | Change (points) | Relative reduction |",
        "|---|---:|---:|---:|---:|",
        f"| WER % | {_percent(c.wer_before)} | {_percent(c.wer_after)} | "
        f"{_signed_points(c.wer_change)} | {_ratio(c.wer_relative_reduction)} |",
        f"| CER % | {_percent(c.cer_before)} | {_percent(c.cer_after)} | "
        f"{_signed_points(cer_change)} | {_ratio(c.cer_relative_reduction)} |",
        "",
    ]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _markdown_speakers(c: Comparison) -> list[str]:
    a, b = c.labels
    lines = ["## Per speaker", "",
             f"| Speaker | Utterances | Ref. words | WER % {_cell(a)} | WER % {_cell(b)} | "
             "Relative reduction |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in c.per_speaker.items():
        lines.append(f"| {_cell(name)} | {s.n_utterances} | {s.reference_words} | "
                     f"{_percent(s.wer_before)} | {_percent(s.wer_after)} | "
                     f"{_ratio(s.relative_reduction)} |")
    return lines + [""]


def _markdown_changes(title: str, changes: list[UtteranceChange], max_rows: int,
                      a: str, b: str) -> list[str]:
    shown = changes[:max(max_rows, 0)]
    heading = f"## {title}"
    if len(shown) < len(changes):
        heading += f" ({len(shown)} of {len(changes)} listed)"
    if not changes:
        return [heading, "", "None.", ""]
    lines = [heading, "",
             f"| ID | Speaker | Errors {_cell(a)} → {_cell(b)} | Reference | "
             f"Hypothesis {_cell(a)} | Hypothesis {_cell(b)} |",
             "|---|---|---:|---|---|---|"]
    for u in shown:
        lines.append(f"| {_cell(u.id)} | {_cell(u.speaker)} | {u.errors_before} → "
                     f"{u.errors_after} | {_cell(u.reference)} | {_cell(u.hypothesis_before)} | "
                     f"{_cell(u.hypothesis_after)} |")
    return lines + [""]


# --------------------------------------------------------------------------- plot


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Draw a PNG bar chart of WER before/after, overall and per speaker; return ``path``.

    Speakers are sorted worst first (by WER before) and capped at
    :data:`MAX_PLOT_SPEAKERS`. The file is written to a temporary name and renamed.
    """
    # Figure + Agg canvas directly, never pyplot: no display, no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = comparison
    speakers = sorted(c.per_speaker.items(),
                      key=lambda item: (-(item[1].wer_before or 0.0), item[0]))
    shown = speakers[:MAX_PLOT_SPEAKERS]
    names = ["Overall"] + [name for name, _ in shown]
    before = [c.wer_before] + [s.wer_before for _, s in shown]
    after = [c.wer_after] + [s.wer_after for _, s in shown]

    many = len(names) > 8
    figure = Figure(figsize=(max(6.0, 1.2 + 0.6 * len(names)), 4.8), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(len(names))
    width = 0.4
    for offset, values, label, color in ((-width / 2, before, c.labels[0], "#9e9e9e"),
                                         (width / 2, after, c.labels[1], "#1f77b4")):
        heights = [100 * v if v is not None else 0.0 for v in values]
        bars = axes.bar([p + offset for p in positions], heights, width, label=label, color=color)
        axes.bar_label(bars, labels=[f"{h:.1f}" if v is not None else "n/a"
                                     for h, v in zip(heights, values)],
                       fontsize=7 if many else 9, rotation=90 if many else 0, padding=2)
    # A floor of 1 point: all-zero WERs would otherwise give an empty y range.
    top = max([100 * v for v in before + after if v is not None] + [1.0])
    axes.set_ylim(0, top * (1.25 if many else 1.15))
    axes.set_xticks(list(positions), names, rotation=45 if many else 0,
                    ha="right" if many else "center")
    if len(names) > 1:  # set the overall pair apart from the speakers
        axes.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
    axes.set_ylabel("WER (%)")
    # Above the plot, not over the bars: with many speakers there is no free corner.
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    # Two short lines: one long line would be cut off in the narrowest (6 in) chart.
    title = (f"WER {c.labels[0]} → {c.labels[1]}\n{_percent(c.wer_before)}% → "
             f"{_percent(c.wer_after)}% ({_describe(c.wer_relative_reduction)})")
    if len(speakers) > len(shown):
        title += f"; {len(shown)} of {len(speakers)} speakers shown, worst first"
    figure.suptitle(title, fontsize=11)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temp, format="png")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- files


def save_comparison(comparison: Comparison, destination_dir: str | Path,
                    max_rows: int = 10) -> list[Path]:
    """Write compare.png, compare.json, compare.md (and before.json / after.json when the
    full reports are known) into ``destination_dir``, each atomically; return the paths.

    Sets ``comparison.plot`` so that the markdown links the chart. The profile's domain
    picture (``meta["domain picture"]``, drawn by ``adapt --plot``), when it still exists,
    is copied beside them as domain.png and linked too.
    """
    folder = Path(destination_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # The charts first: the markdown links them only once they exist.
    written = [plot_comparison(comparison, folder / COMPARE_PNG)]
    comparison.plot = COMPARE_PNG
    source = comparison.meta.get("domain picture")
    if source and Path(source).is_file():
        written.append(copy_file_atomic(Path(source), folder / DOMAIN_PNG))
        comparison.domain_plot = DOMAIN_PNG
    for name, text in ((COMPARE_JSON, comparison.to_json() + "\n"),
                       (COMPARE_MD, comparison.to_markdown(max_rows))):
        write_text_atomic(folder / name, text)
        written.append(folder / name)
    for name, report in ((BEFORE_JSON, comparison.before), (AFTER_JSON, comparison.after)):
        if report is not None:
            write_text_atomic(folder / name, report.to_json() + "\n")
            written.append(folder / name)
    return written


# --------------------------------------------------------------------------- a profile


def compare_profile(profile_name: str, utterances: Sequence[Utterance],
                    options: TranscribeOptions | None = None,
                    device: str = "auto", progress: bool = False,
                    meta: dict[str, Any] | None = None) -> Comparison:
    """Evaluate ``utterances`` with the profile's base model, then with its adapter.

    The base model is loaded once: evaluated as it is, then the adapter is applied to it
    in place and it is evaluated again. ``options`` is a
    :class:`~asr_adapt.transcribe.TranscribeOptions`; ``meta`` adds to what is recorded
    (profile, base model, adapter, device, options).
    """
    # Imported here: they pull in torch and transformers.
    from asr_adapt.report.evaluate import evaluate_manifest
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.personal import apply_adapter, check_base_matches, require_adapter
    from asr_adapt.profiles.profile import Profile
    from asr_adapt.models.options import TranscribeOptions

    options = options or TranscribeOptions()
    profile = Profile.open(profile_name)
    info = profile.info
    require_adapter(profile)  # checked before the (slow) model load
    loaded = resolve_model(info.base_model, device=device)
    check_base_matches(profile, loaded)
    before = evaluate_manifest(loaded, utterances, options, progress=progress)
    apply_adapter(loaded, profile)
    after = evaluate_manifest(loaded, utterances, options, progress=progress)
    record = {"profile": profile.name, "base_model": info.base_model,
              "adapter": str(profile.adapter_dir),
              "adapter_version": profile.adapter_dir.name, "device": str(loaded.placement),
              **adaptation_facts(info.metrics),
              # The options as decoded (the beam resolved for this model), not as asked.
              "options": before.meta.get("options", asdict(options)),
              "encoder_window_read": {"before": before.meta.get("encoder_window_read"),
                                      "after": after.meta.get("encoder_window_read")},
              **(meta or {})}
    return compare_reports(before, after, meta=record)


def adaptation_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the profile's adapter was trained with that a reader of the comparison needs:
    whether domain confusion was on, on how much unlabeled audio, how well the domain head
    told the domains apart at the end (50% = fooled), the linear probe's accuracy before
    and after, the picture's path (``adapt --plot``), and what self-training kept."""
    facts: dict[str, Any] = {}
    if not metrics:
        return facts
    if metrics.get("domain_confusion"):
        accuracy = metrics.get("domain_accuracy")
        head = "" if accuracy is None else f", domain head {100 * accuracy:.0f}% accurate at the end (50% = fooled)"
        diverged = f"; diverged: {metrics['domain_diverged']}" if metrics.get("domain_diverged") else ""
        facts["domain confusion"] = f"on, {metrics.get('unlabeled_minutes', 0)} min of unlabeled audio{head}{diverged}"
    elif "domain_confusion" in metrics:
        facts["domain confusion"] = "off"
    projection = metrics.get("domain_projection") or {}
    if projection.get("probe_accuracy_before") is not None:
        facts["labeled vs unlabeled, linear probe"] = (
            f"{100 * projection['probe_accuracy_before']:.0f}% before -> "
            f"{100 * projection['probe_accuracy_after']:.0f}% after (50% = indistinguishable)")
    if metrics.get("domain_plot"):
        facts["domain picture"] = metrics["domain_plot"]
    st = metrics.get("self_training")
    if st:
        rounds = (f"held-out WER {100 * st['round_one_heldout_wer']:.1f}% after round one"
                  + (f", {100 * st['round_two_heldout_wer']:.1f}% after round two"
                     if st.get("round_two_heldout_wer") is not None else ""))
        facts["self-training"] = (f"{st['kept']} of {st['pieces']} unlabeled pieces pseudo-labelled and kept "
                                  f"({st['kept_minutes']} min); {rounds}; round {st['kept_round']} kept")
    return facts


__all__ = ["Comparison", "CompareError", "SpeakerChange", "UtteranceChange", "compare_profile",
           "adaptation_facts", "compare_reports", "plot_comparison", "relative_reduction", "save_comparison"]
