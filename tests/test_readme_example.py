"""The Python example in README.md runs as written, and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md's 'Use it from Python' has no python block"
    return match.group(1)


def test_the_example_is_short_and_uses_only_the_public_api():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    assert "import asr_adapt\n" in code and " from asr_adapt." not in code
    import asr_adapt

    for name in set(re.findall(r"asr_adapt\.(\w+)", code)):
        assert name in asr_adapt.__all__, name


def test_public_names_are_not_shadowed_by_subpackages():
    """``asr_adapt.adapt`` is a subpackage: a public function of that name would be hidden by it
    as soon as anything imported the subpackage."""
    import importlib
    import pkgutil

    import asr_adapt
    import asr_adapt.api

    for module in pkgutil.iter_modules(asr_adapt.__path__):
        importlib.import_module(f"asr_adapt.{module.name}")
    for name in asr_adapt.__all__:
        expected = getattr(asr_adapt.api, name, None) or asr_adapt.AsrAdaptError
        assert getattr(asr_adapt, name) is expected, name


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    if not (SAMPLES / "enroll" / "manifest.jsonl").is_file():
        pytest.skip("samples/ is missing: run python recipes/make_samples.py --out samples")
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(REPO)
    exec(compile(readme_example(), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    before, after = (float(x) for x in re.findall(r"test WER ([\d.]+)% -> ([\d.]+)%", "\n".join(lines))[0])
    assert after < before  # the sample speaker's adapter helps on sentences it never heard
    assert lines[-1].strip() and not lines[-1].startswith("test WER")  # a transcript
    assert (tmp_path / "home" / "profiles" / "sample-speaker" / "profile.json").is_file()
    assert not list(Path(tmp_path).glob("**/*.partial*"))
