"""``asr-adapt manifest import`` and ``check`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.cli import main as cli_main


@pytest.fixture(autouse=True)
def only_manifest_command(monkeypatch):
    # The other sub-commands load models; these tests need none of them.
    monkeypatch.setattr(cli_main, "COMMANDS", ("manifest_cmd",))


def make_audio(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(seconds * 16000), dtype=np.float32) + 0.01, 16000)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    make_audio(root / "alice" / "a.wav", 30.0)
    (root / "alice" / "a.txt").write_text("Hello there.")
    make_audio(root / "bob" / "b.flac", 60.0)
    return root


def test_import_writes_manifest_and_prints_summary(recordings, capsys):
    out = recordings / "manifest.jsonl"
    assert cli_main.main(["manifest", "import", str(recordings), "-o", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{out}: 2 utterances, 1.5 min, 2 speakers, 1 labeled"
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["audio"] for r in records] == ["alice/a.wav", "bob/b.flac"]


def test_import_overrides_speaker_and_domain(recordings, tmp_path, capsys):
    out = tmp_path / "out" / "m.jsonl"
    assert cli_main.main(["manifest", "import", str(recordings), "-o", str(out),
                          "--speaker", "me", "--domain", "phone"]) == 0
    assert "1 speakers" in capsys.readouterr().out
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert {(r["speaker"], r["domain"]) for r in records} == {("me", "phone")}
    assert Path(records[0]["audio"]).is_absolute()  # audio lies outside the manifest's folder


def test_check_validates_and_summarizes(recordings, capsys):
    out = recordings / "m.jsonl"
    cli_main.main(["manifest", "import", str(recordings), "-o", str(out)])
    capsys.readouterr()
    assert cli_main.main(["manifest", "check", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (f"{out}: ok, 2 utterances, 1.5 min, "
                                               "2 speakers, 1 labeled")
    assert cli_main.main(["manifest", "check", str(out), "--require-text"]) == 2
    assert "line 2: field 'text' is missing" in capsys.readouterr().err


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "a"}\n')
    assert cli_main.main(["manifest", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"asr-adapt: error: {bad} line 1: field 'audio' is missing\n"
    assert cli_main.main(["manifest", "import", str(tmp_path / "nope"), "-o", str(bad)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_import_needs_output_and_non_empty_names(recordings):
    with pytest.raises(SystemExit):
        cli_main.main(["manifest", "import", str(recordings)])
    with pytest.raises(SystemExit):
        cli_main.main(["manifest", "import", str(recordings), "-o", "x.jsonl", "--speaker", " "])
    with pytest.raises(SystemExit):
        cli_main.main(["manifest"])
