"""``asr-adapt compare`` end to end on the tiny random Whisper with a real LoRA adapter."""

from __future__ import annotations

import json
import re

import pytest
import soundfile as sf

from fake_profiles import make_profile
from asr_adapt.data.manifest import Utterance, write_manifest
from conftest import sine
from cli_runner import assert_one_line_error, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A random tiny model babbles until the token limit: keep its outputs short.
FAST = ("--max-new-tokens", "4")

@pytest.fixture(autouse=True)
def profiles_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))

@pytest.fixture
def count_loads(monkeypatch):
    """Count base-model loads (compare must load it once for both runs)."""
    from asr_adapt.models import loading as models

    calls = []
    real = models.resolve_model

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "resolve_model", counting)
    return calls

@pytest.fixture
def no_model_load(monkeypatch):
    from asr_adapt.models import loading as models

    monkeypatch.setattr(models, "resolve_model", lambda *a, **k: pytest.fail("model loaded"))


def make_manifest(folder, with_text=True):
    folder.mkdir(parents=True, exist_ok=True)
    utterances = []
    for i, (freq, speaker) in enumerate(((220.0, "alice"), (330.0, "alice"), (440.0, "bob"))):
        path = folder / f"u{i}.wav"
        sf.write(path, sine(1.0, freq=freq), 16000)
        utterances.append(Utterance(id=f"u{i}", audio=path, speaker=speaker, duration=1.0,
                                    text=f"tone number {i}" if with_text else None))
    return write_manifest(utterances, folder / "manifest.jsonl")

def test_compare_writes_reports_and_prints_markdown(capsys, tmp_path, tiny_whisper_dir, count_loads):
    make_profile("me", tiny_whisper_dir)
    manifest = make_manifest(tmp_path / "data")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "compare", "--profile", "me", manifest, "-o", out, *FAST)
    assert code == 0, stderr
    assert len(count_loads) == 1  # one base model load for both evaluations

    names = sorted(p.name for p in out.iterdir())
    assert names == ["after.json", "before.json", "compare.json", "compare.md", "compare.png"]
    png = (out / "compare.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1024

    data = json.loads((out / "compare.json").read_text())
    assert data["n_utterances"] == 3 and set(data["per_speaker"]) == {"alice", "bob"}
    assert data["fixed"] + data["broken"] + data["unchanged"] == 3
    meta = data["meta"]
    assert meta["profile"] == "me" and meta["manifest"] == str(manifest)
    assert meta["options"]["max_new_tokens"] == 4
    assert meta["options"]["beam_size"] == 5  # as decoded: Whisper's default beam, not "None"
    # "auto" windows: this adapter's settings do not say it was trained on short windows only.
    assert meta["encoder_window_read"] == {"before": "full", "after": "full"}
    assert meta["before"]["model"] == str(tiny_whisper_dir)
    assert meta["after"]["model"] == f"{tiny_whisper_dir}+me"

    before = json.loads((out / "before.json").read_text())
    after = json.loads((out / "after.json").read_text())
    assert [u["hypothesis"] for u in before["utterances"]] != \
        [u["hypothesis"] for u in after["utterances"]]  # the adapter really was applied

    assert stdout.startswith("# Comparison: unadapted vs adapted")
    assert stdout == (out / "compare.md").read_text()
    assert "wrote" in stderr and str(out / "compare.md") in stderr

def test_compare_default_output_in_profile_reports(capsys, tmp_path, tiny_whisper_dir):
    profile = make_profile("me", tiny_whisper_dir)
    manifest = make_manifest(tmp_path / "data")
    code, _, stderr = run_cli(capsys, "compare", "--profile", "me", manifest, *FAST)
    assert code == 0, stderr
    folders = list(profile.reports_dir.iterdir())
    assert len(folders) == 1 and re.fullmatch(r"compare-\d{8}T\d{6}Z", folders[0].name)
    assert (folders[0] / "compare.md").is_file() and (folders[0] / "compare.png").is_file()

def test_unknown_profile(capsys, tmp_path, no_model_load):
    manifest = make_manifest(tmp_path / "data")
    code, _, err = run_cli(capsys, "compare", "--profile", "nobody", manifest, *FAST)
    assert_one_line_error(code, err, "no profile 'nobody'")

def test_profile_without_adapter(capsys, tmp_path, tiny_whisper_dir, no_model_load):
    make_profile("fresh", tiny_whisper_dir, with_adapter=False)
    manifest = make_manifest(tmp_path / "data")
    code, _, err = run_cli(capsys, "compare", "--profile", "fresh", manifest, *FAST)
    assert_one_line_error(code, err, "profile 'fresh' has no adapter")

def test_manifest_without_text(capsys, tmp_path, tiny_whisper_dir, no_model_load):
    make_profile("me", tiny_whisper_dir)
    manifest = make_manifest(tmp_path / "data", with_text=False)
    code, _, err = run_cli(capsys, "compare", "--profile", "me", manifest, *FAST)
    assert_one_line_error(code, err, "no transcript|text")

def test_missing_manifest(capsys, tmp_path, tiny_whisper_dir, no_model_load):
    make_profile("me", tiny_whisper_dir)
    code, _, err = run_cli(capsys, "compare", "--profile", "me", tmp_path / "nope.jsonl", *FAST)
    assert_one_line_error(code, err, "no such file")
