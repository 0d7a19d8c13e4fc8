"""The transcribe, eval and models commands: outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from cli_runner import FAST, assert_one_line_error, run_cli
from asr_adapt.data.manifest import Utterance, write_manifest
from conftest import REPO, sine


#: A random tiny model babbles until the token limit: keep its outputs short.


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, sine(1.0), 16000)
    return path


@pytest.mark.parametrize("make,pattern", [
    (lambda d: d / "missing.wav", "no such file"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "fake.wav").write_text("hello") and d / "fake.wav", "not a readable audio file"),
    (lambda d: (d / "empty.flac").write_bytes(b"") == 0 and d / "empty.flac", "not a readable|no audio"),
])
def test_transcribe_bad_audio(capsys, tmp_path, make, pattern):
    code, _, err = run_cli(capsys, "transcribe", make(tmp_path))
    assert_one_line_error(code, err, pattern)


def test_transcribe_checks_every_file_before_loading_the_model(capsys, tmp_path, wav, monkeypatch):
    from asr_adapt.models import loading as models

    monkeypatch.setattr(models, "resolve_model", lambda *a, **k: pytest.fail("model loaded"))
    code, _, err = run_cli(capsys, "transcribe", wav, tmp_path / "typo.wav")
    assert_one_line_error(code, err, "typo.wav: no such file")


@pytest.mark.parametrize("argv,pattern", [
    (["--model", "whisper-huge"], "unknown model 'whisper-huge'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--batch-size", "0"], "batch size"),
    (["--encoder-window", "short"], "encoder window must be 'auto', 'full' or seconds"),
])
def test_transcribe_bad_options(capsys, wav, argv, pattern):
    code, _, err = run_cli(capsys, "transcribe", wav, *argv)
    assert_one_line_error(code, err, pattern)


def test_cuda_without_gpu(capsys, wav):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run_cli(capsys, "transcribe", wav, "--device", "cuda")
    assert_one_line_error(code, err, "no CUDA GPU")


def test_model_folder_missing_files(capsys, wav, tiny_whisper_dir, tmp_path):
    import shutil

    broken = shutil.copytree(tiny_whisper_dir, tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "transcribe", wav, "--model", broken)
    assert_one_line_error(code, err, "cannot load the weights")


def test_transcribe_writes_each_format(capsys, tmp_path, tiny_whisper_dir):
    rng = np.random.default_rng(0)
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.flac"
        sf.write(path, rng.normal(0, 0.1, 16000 * 2).astype(np.float32), 16000)
        files.append(path)
    for fmt in ("txt", "json", "srt"):
        out = tmp_path / f"out_{fmt}"
        code, _, err = run_cli(capsys, "transcribe", *files, "--model", tiny_whisper_dir, *FAST, "--output", fmt,
                               "--output-dir", out)
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == [f"a.{fmt}", f"b.{fmt}"]
    data = json.loads((tmp_path / "out_json" / "a.json").read_text())
    assert data["source"].endswith("a.flac") and data["duration"] == 2.0
    assert data["options"]["beam_size"] == 5  # Whisper's own default beam, recorded
    code, out, _ = run_cli(capsys, "transcribe", files[0], "--model", tiny_whisper_dir, *FAST, "--output", "json")
    assert json.loads(out)["model"] == str(tiny_whisper_dir)


def test_srt_for_several_files_needs_an_output_dir(capsys, tmp_path, wav):
    code, _, err = run_cli(capsys, "transcribe", wav, wav, "--output", "srt")
    assert_one_line_error(code, err, "--output-dir")


@pytest.mark.slow
def test_transcribe_real_speech_stereo_44k(capsys, tmp_path, bundled_model):
    """Any rate and channel count: a 44.1 kHz stereo file of real speech."""
    from conftest import espeak

    import librosa

    mono = tmp_path / "mono.wav"
    espeak("My brother bought a new car last week.", mono)
    audio, rate = sf.read(mono)
    audio = librosa.resample(audio, orig_sr=rate, target_sr=44100)
    sf.write(tmp_path / "stereo.wav", np.stack([audio, audio * 0.5], axis=1), 44100)
    code, out, err = run_cli(capsys, "transcribe", tmp_path / "stereo.wav")
    assert code == 0, err
    assert "brother bought a new car" in out.lower()


def test_eval_manifest_pointing_at_missing_audio(capsys, tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "u1", "audio": "gone.flac", "text": "hi"}) + "\n")
    code, _, err = run_cli(capsys, "eval", tmp_path / "m.jsonl")
    assert_one_line_error(code, err, "line 1.*gone.flac")


def test_eval_unreadable_manifest_line(capsys, tmp_path, wav):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "u1", "audio": str(wav), "text": "hi"}) + "\n{oops\n")
    code, _, err = run_cli(capsys, "eval", tmp_path / "m.jsonl")
    assert_one_line_error(code, err, "line 2")


def test_eval_writes_json_and_markdown(capsys, tmp_path, tiny_whisper_dir, wav):
    manifest = tmp_path / "m.jsonl"
    write_manifest([Utterance(id="u1", audio=wav, text="a tone", speaker="s1", duration=1.0),
                    Utterance(id="u2", audio=wav, text="another tone", speaker="s2", duration=1.0)], manifest)
    code, out, err = run_cli(capsys, "eval", manifest, "--model", tiny_whisper_dir, *FAST, "-o", tmp_path / "rep",
                             "--batch-size", "2")
    assert code == 0, err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["n_utterances"] == 2
    assert set(report["per_speaker"]) == {"s1", "s2"}
    assert report["meta"]["model"] == str(tiny_whisper_dir)
    assert report["meta"]["options"]["batch_size"] == 2
    assert "WER" in out and (tmp_path / "rep" / "report.md").is_file()


@pytest.mark.slow
def test_eval_bundled_on_samples(capsys, tmp_path):
    manifest = REPO / "samples" / "test" / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip("samples/ not generated")
    code, out, err = run_cli(capsys, "eval", manifest, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_utterances"] >= 20
    assert 0.05 < report["wer"] < 0.9


def test_models_list(capsys):
    code, out, _ = run_cli(capsys, "models", "list")
    assert code == 0 and "whisper-tiny.en (default)" in out


def test_console_script_is_installed():
    """`asr-adapt --help` works as a real process (the entry point users type)."""
    result = subprocess.run([sys.executable, "-m", "asr_adapt.cli.main", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for command in ("transcribe", "eval", "manifest", "models"):
        assert command in result.stdout
