"""The README's main job: `asr-adapt demo` end to end on the bundled model and samples/,
and the short summary it ends with (checked fast, on a made-up result)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from conftest import SAMPLES
from cli_runner import run_cli
from fake_reports import make_report

#: The summary's lines, as `asr-adapt demo` prints them on stdout.
SUMMARY = [r"^WER on held-out sample speech: [\d.]+% -> [\d.]+% \([\d.]+% relative (reduction|increase)\)$",
           r"^utterances: \d+ fixed \(fewer word errors\), \d+ broken \(more\), \d+ unchanged, of \d+$",
           r"^report: .*compare\.md \(per speaker and per utterance; data in compare\.json\)$",
           r"^plot: .*compare\.png$",
           r"^demo took \d+ s$"]


def assert_short_summary(stdout):
    """stdout ends with the summary lines and holds none of the report's tables."""
    lines = stdout.strip().splitlines()
    assert len(lines) == len(SUMMARY), stdout
    for pattern, line in zip(SUMMARY, lines):
        assert re.match(pattern, line), (pattern, line)
    assert "Worst regressions" not in stdout and "| ID |" not in stdout and "## " not in stdout


def test_demo_ends_with_a_short_summary_not_the_whole_report(capsys, tmp_path, monkeypatch):
    from asr_adapt.report import demo
    from asr_adapt.report.compare import compare_reports
    from asr_adapt.report.compare_files import save_comparison

    def fake_run_demo(out_dir, **kwargs):
        comparison = compare_reports(make_report(2), make_report(3))
        written = save_comparison(comparison, out_dir)
        training = SimpleNamespace(baseline_heldout_wer=0.5, best_heldout_wer=0.1, best_epoch=2, epochs_run=3,
                                   train_utterances=30, train_seconds_of_audio=120.0, wall_seconds=40.0,
                                   domain=None)
        adaptation = SimpleNamespace(training=training, generic_wer_before=None, generic_wer_after=None,
                                     self_training=None, plot=None, warnings=[], saved=True, adapter_dir="x")
        return demo.DemoResult(comparison=comparison, adaptation=adaptation, written=written, wall_seconds=61.4)

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "--out", out)
    assert code == 0, err
    assert_short_summary(stdout)
    assert stdout.strip().splitlines()[:2] == [
        "WER on held-out sample speech: 26.3% -> 21.1% (20.0% relative reduction)",
        "utterances: 3 fixed (fewer word errors), 2 broken (more), 1 unchanged, of 6"]
    assert f"report: {out / 'compare.md'} " in stdout and f"plot: {out / 'compare.png'}" in stdout
    assert "demo took 61 s" in stdout
    assert "held-out WER 50.0% -> 10.0%" in err  # the adaptation's figures stay on stderr
    assert (out / "compare.md").is_file() and (out / "compare.png").is_file()


@pytest.mark.slow
def test_demo_adapts_the_sample_speaker_and_writes_the_report(capsys, tmp_path, monkeypatch):
    if not (SAMPLES / "enroll" / "manifest.jsonl").is_file():
        pytest.skip("samples/ is not in this checkout")
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    out = tmp_path / "demo"
    # Three epochs instead of up to eight: the same path, about half the time.
    code, stdout, err = run_cli(capsys, "demo", "--out", out, "--epochs", 3, "--min-epochs", 1)
    assert code == 0, err
    assert_short_summary(stdout)
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
