"""Print the package's module map for docs/architecture.md: one line per module, its job (the
first line of its docstring). `python scripts/module_map.py --write` rewrites the map in place,
between the markers `<!-- module-map -->` and `<!-- /module-map -->`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asr_adapt"
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- module-map -->", "<!-- /module-map -->"


def job(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first or "(no docstring)"


def module_map() -> str:
    lines = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" and path.parent != PACKAGE:
            relative = path.parent.relative_to(ROOT).as_posix() + "/"
        lines.append(f"- `{relative}`: {job(path)}")
    return "\n".join(lines)


def write() -> None:
    text = DOC.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOC.write_text(f"{before}{START}\n{module_map()}\n{END}{after}", encoding="utf-8")


if __name__ == "__main__":
    write() if "--write" in sys.argv else print(module_map())
