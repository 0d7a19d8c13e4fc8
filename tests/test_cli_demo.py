"""The README's main job: `asr-adapt demo` end to end on the bundled model and samples/."""

from __future__ import annotations

import json
import re

import pytest

from conftest import SAMPLES
from test_cli import run_cli


@pytest.mark.slow
def test_demo_adapts_the_sample_speaker_and_writes_the_report(capsys, tmp_path, monkeypatch):
    if not (SAMPLES / "enroll" / "manifest.jsonl").is_file():
        pytest.skip("samples/ is not in this checkout")
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    out = tmp_path / "demo"
    # Three epochs instead of up to eight: the same path, about half the time.
    code, stdout, err = run_cli(capsys, "demo", "--out", out, "--epochs", 3, "--min-epochs", 1)
    assert code == 0, err
    match = re.search(r"WER on held-out sample speech: ([\d.]+)% -> ([\d.]+)%", stdout + err)
    assert match, stdout[-500:]
    before, after = float(match.group(1)), float(match.group(2))
    assert before > 40 and after < 0.6 * before, (before, after)
    report = (out / "compare.md").read_text()
    assert "Worst regressions" in report and (out / "compare.png").stat().st_size > 1000
    # Offline decoding reads Whisper's full window by default, the adapted model's too.
    meta = json.loads((out / "compare.json").read_text())["meta"]
    assert meta["encoder_window_read"] == {"before": "full", "after": "full"}, meta
    assert "Traceback" not in err
