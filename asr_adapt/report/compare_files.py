"""Writing a comparison to a folder: the chart, JSON, markdown, and both full reports."""

from __future__ import annotations

from pathlib import Path

from asr_adapt.core.files import copy_file_atomic, write_text_atomic
from asr_adapt.report.compare import Comparison
from asr_adapt.report.plot import plot_comparison

#: File names :func:`save_comparison` writes inside its folder.
COMPARE_JSON, COMPARE_MD, COMPARE_PNG = "compare.json", "compare.md", "compare.png"
BEFORE_JSON, AFTER_JSON = "before.json", "after.json"
DOMAIN_PNG = "domain.png"


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


__all__ = ["AFTER_JSON", "BEFORE_JSON", "COMPARE_JSON", "COMPARE_MD", "COMPARE_PNG", "DOMAIN_PNG",
           "save_comparison"]
