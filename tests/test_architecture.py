"""The package's shape, enforced: layers import only downwards, no module pair imports each
other (directly or through others), and the CLI answers ``--help`` without loading torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asr_adapt"
#: Size limits from the project guide (library code; the CLI is a thin porch).
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_import_linter_contracts_are_kept():
    """Layers, acyclic siblings and model-family contracts of pyproject.toml ([tool.importlinter])."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is not installed: pip install import-linter (it is in the [test] extra)")
    result = subprocess.run([lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_two_modules_reach_each_other():
    """A walk of every import (module level, in functions, under TYPE_CHECKING): no cycle."""
    import grimp

    graph = grimp.build_graph("asr_adapt", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    reach = {m: graph.find_upstream_modules(m) for m in modules}
    cycles = sorted({tuple(sorted((a, b))) for a in modules for b in reach[a] if a in reach.get(b, ())})
    assert cycles == [], "modules that import each other (directly or through others): " + ", ".join(
        f"{a} <-> {b}" for a, b in cycles[:20])


def test_help_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from asr_adapt.cli.main import COMMANDS, main\n"
        "for command in [None, *[c.removesuffix('_cmd') for c in COMMANDS]]:\n"
        "    try:\n"
        "        main(['--help'] if command is None else [command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
    assert "usage: asr-adapt enroll" in result.stdout and "usage: asr-adapt live" in result.stdout


def _library_modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)


def test_library_modules_are_small():
    long = {str(p.relative_to(PACKAGE)): n for p in _library_modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_library_functions_are_short():
    long = {}
    for path in _library_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_module_map_in_docs_names_every_module():
    """docs/architecture.md lists every module with its job (scripts/module_map.py --write)."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py" and f"`{p.relative_to(PACKAGE.parent).as_posix()}`" not in doc]
    assert missing == [], f"run python scripts/module_map.py --write; missing: {missing}"
    undocumented = [p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")
                    if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert undocumented == [], f"modules without a docstring: {undocumented}"
