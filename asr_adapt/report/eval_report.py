"""An evaluation report as people read it (markdown) and as files (JSON and markdown).

The figures themselves (:class:`~asr_adapt.data.scoring.EvalReport`) are computed in
:mod:`asr_adapt.data.scoring`; this module only renders, saves and loads them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from asr_adapt.core.errors import OptionsError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.data.scoring import EvalReport, SpeakerScore, UtteranceScore
from asr_adapt.report.markdown import cell, percent, shown


#: File formats :func:`save_report` writes, by name -> suffix.
REPORT_FORMATS = {"json": ".json", "md": ".md"}


def report_markdown(report: EvalReport, max_utterances: int | None = 20,
                    title: str = "Evaluation report") -> str:
    """Markdown: overall table, per-speaker table, and the worst utterances first.

    ``max_utterances`` limits the utterance table (``None``: all of them).
    """
    parts = [f"# {title}", ""]
    parts += _markdown_meta(report.meta)
    parts += _markdown_overall(report)
    parts += _markdown_speakers(report.per_speaker)
    parts += _markdown_utterances(report.utterances, max_utterances)
    return "\n".join(parts).rstrip() + "\n"


def _markdown_meta(meta: dict[str, Any]) -> list[str]:
    if not meta:
        return []
    lines = [f"- **{cell(key)}**: {cell(shown(value))}" for key, value in meta.items()]
    return lines + [""]


def _markdown_overall(report: EvalReport) -> list[str]:
    lines = [
        "## Overall", "",
        "| Utterances | Ref. words | WER % | CER % | Sub. | Del. | Ins. |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {report.n_utterances} | {report.reference_words} | {percent(report.wer)} | "
        f"{percent(report.cer)} | {report.substitutions} | {report.deletions} | "
        f"{report.insertions} |",
        "",
    ]
    if report.n_empty_references:
        lines += [f"References empty after normalization: {report.n_empty_references} (they "
                  "add no reference words; their hypothesis words count as insertions).", ""]
    return lines


def _markdown_speakers(per_speaker: dict[str, SpeakerScore]) -> list[str]:
    lines = ["## Per speaker", "", "| Speaker | Utterances | Ref. words | Errors | WER % |",
             "|---|---:|---:|---:|---:|"]
    for name, s in per_speaker.items():
        lines.append(f"| {cell(name)} | {s.n_utterances} | {s.reference_words} | {s.errors} | "
                     f"{percent(s.wer)} |")
    return lines + [""]


def _worst_first(utterance: UtteranceScore) -> tuple[float, int]:
    # An empty reference with insertions is as bad as it gets; one with none is perfect.
    wer = utterance.wer if utterance.wer is not None else (math.inf if utterance.errors else 0.0)
    return (-wer, -utterance.errors)


def _markdown_utterances(utterances: list[UtteranceScore], limit: int | None) -> list[str]:
    ranked = sorted(utterances, key=_worst_first)
    shown = ranked if limit is None else ranked[:max(limit, 0)]
    heading = "## Utterances, worst first"
    if len(shown) < len(ranked):
        heading += f" ({len(shown)} of {len(ranked)})"
    lines = [heading, "", "| ID | Speaker | WER % | Errors | Reference | Hypothesis | Diff |",
             "|---|---|---:|---:|---|---|---|"]
    for u in shown:
        lines.append(f"| {cell(u.id)} | {cell(u.speaker)} | {percent(u.wer)} | {u.errors} | "
                     f"{cell(u.reference)} | {cell(u.hypothesis)} | {cell(u.alignment)} |")
    return lines + [""]


def save_report(report: EvalReport, destination: str | Path,
                formats: Sequence[str] = ("json", "md"),
                max_utterances: int | None = 20) -> list[Path]:
    """Write the report in each format; return the paths written.

    ``destination`` ending in ``.json`` or ``.md`` names the file (other formats go beside
    it with the same stem); anything else is a folder that receives ``report.json`` and
    ``report.md``. Files are written atomically.
    """
    choices = " or ".join(REPORT_FORMATS)
    if not formats:
        raise OptionsError(f"no report format asked for; use {choices}")
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown:
        raise OptionsError(f"report format {unknown[0]!r} is not supported; use {choices}")
    destination = Path(destination)
    if destination.suffix.lower() in REPORT_FORMATS.values():
        stem = destination.with_suffix("")
    else:
        stem = destination / "report"
    written = []
    for name in formats:
        path = stem.with_name(stem.name + REPORT_FORMATS[name])
        text = report.to_json() + "\n" if name == "json" else report_markdown(report, max_utterances)
        write_text_atomic(path, text)
        written.append(path)
    return written


def load_report(path: str | Path) -> EvalReport:
    """Read a report saved as JSON by :func:`save_report`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return EvalReport.from_dict(data)
    except FileNotFoundError:
        raise OptionsError(f"{path}: no such report file; check the path") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise OptionsError(f"{path}: not a report written by asr-adapt ({error})") from None


__all__ = ["REPORT_FORMATS", "load_report", "report_markdown", "save_report"]
