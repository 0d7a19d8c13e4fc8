"""The comparison chart: WER before and after, overall and per speaker, as a PNG bar chart.

Drawn with matplotlib's Figure and Agg canvas directly, never pyplot: no display, no global
state. matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asr_adapt.core.files import save_figure_atomic
from asr_adapt.report.compare import Comparison, SpeakerChange
from asr_adapt.report.markdown import describe_reduction, percent

#: Speakers drawn in the chart at most (the worst ones); more would be unreadable.
MAX_PLOT_SPEAKERS = 30
#: Bar colours: before in grey, after in blue.
BEFORE_COLOR, AFTER_COLOR = "#9e9e9e", "#1f77b4"


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Draw a PNG bar chart of WER before/after, overall and per speaker; return ``path``.

    Speakers are sorted worst first (by WER before) and capped at
    :data:`MAX_PLOT_SPEAKERS`. The file is written to a temporary name and renamed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = comparison
    speakers = _worst_speakers_first(c)
    shown = speakers[:MAX_PLOT_SPEAKERS]
    names = ["Overall"] + [name for name, _ in shown]
    before = [c.wer_before] + [s.wer_before for _, s in shown]
    after = [c.wer_after] + [s.wer_after for _, s in shown]
    figure = Figure(figsize=(max(6.0, 1.2 + 0.6 * len(names)), 4.8), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)
    _draw_bars(figure.add_subplot(), names, before, after, c.labels)
    title = _title(c)
    if len(speakers) > len(shown):
        title += f"; {len(shown)} of {len(speakers)} speakers shown, worst first"
    figure.suptitle(title, fontsize=11)
    return save_figure_atomic(figure, path)


def _worst_speakers_first(c: Comparison) -> list[tuple[str, SpeakerChange]]:
    """Speakers by WER before, highest first (ties by name, so charts are reproducible)."""
    return sorted(c.per_speaker.items(), key=lambda item: (-(item[1].wer_before or 0.0), item[0]))


def _draw_bars(axes: Any, names: list[str], before: list[float | None],
               after: list[float | None], labels: tuple[str, str]) -> None:
    """Pairs of bars (before, after) per name, labelled with their values."""
    many = len(names) > 8
    positions = range(len(names))
    width = 0.4
    for offset, values, label, color in ((-width / 2, before, labels[0], BEFORE_COLOR),
                                         (width / 2, after, labels[1], AFTER_COLOR)):
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


def _title(c: Comparison) -> str:
    # Two short lines: one long line would be cut off in the narrowest (6 in) chart.
    return (f"WER {c.labels[0]} → {c.labels[1]}\n{percent(c.wer_before)}% → "
            f"{percent(c.wer_after)}% ({describe_reduction(c.wer_relative_reduction)})")



__all__ = ["MAX_PLOT_SPEAKERS", "plot_comparison"]
