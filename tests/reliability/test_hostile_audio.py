"""Hostile audio through every command that reads audio: transcribe, eval, compare, enroll
--from, live --replay. Each ends in one line and exit code 2, and the profile store is
byte-for-byte as it was."""

from __future__ import annotations

import json

import pytest

from hostile import BAD_AUDIO, assert_refused, make_audio, run_cli, store_state, tone, wav_bytes

FAST = ("--max-new-tokens", "4")


@pytest.mark.parametrize("kind", sorted(BAD_AUDIO))
def test_transcribe_refuses(capsys, store, tmp_path, kind):
    audio = make_audio(kind, tmp_path)
    assert_refused(capsys, store, ["transcribe", audio, "--profile", "alice", *FAST], BAD_AUDIO[kind])


def manifest_of(folder, audio, text="hello there"):
    path = folder / "test.jsonl"
    path.write_text(json.dumps({"id": "u1", "audio": str(audio), "text": text}) + "\n")
    return path


@pytest.mark.parametrize("kind", ["nan", "truncated", "garbage", "fifo", "huge_amplitude"])
def test_eval_refuses(capsys, store, tmp_path, tiny_whisper_dir, kind):
    manifest = manifest_of(tmp_path, make_audio(kind, tmp_path))
    assert_refused(capsys, store, ["eval", manifest, "--model", tiny_whisper_dir, *FAST], BAD_AUDIO[kind])


@pytest.mark.parametrize("kind", ["nan", "missing", "one_sample"])
def test_compare_refuses(capsys, store, tmp_path, kind):
    manifest = manifest_of(tmp_path, make_audio(kind, tmp_path))
    assert_refused(capsys, store, ["compare", "--profile", "alice", manifest, *FAST], BAD_AUDIO[kind])


@pytest.mark.parametrize("kind", ["nan", "truncated", "one_sample", "huge_amplitude", "garbage"])
def test_enroll_from_recordings_with_one_bad_file_creates_nothing(capsys, store, enrollment_folder, kind):
    bad = make_audio(kind, enrollment_folder)
    bad.with_suffix(".txt").write_text("a bad take\n")
    assert_refused(capsys, store, ["enroll", "bob", "--from", enrollment_folder, "--no-train"], BAD_AUDIO[kind])
    assert not (store / "bob").exists()


def test_enroll_force_from_a_bad_file_keeps_the_existing_profile(capsys, store, enrollment_folder):
    """Data loss before issue 20: --force replaced alice (adapter and enrollment_folder) before it
    found the bad file, leaving an empty profile."""
    bad = make_audio("nan", enrollment_folder)
    bad.with_suffix(".txt").write_text("a bad take\n")
    assert_refused(capsys, store, ["enroll", "alice", "--force", "--from", enrollment_folder, "--no-train"], "NaN")


def test_a_failed_enroll_does_not_block_the_retry(capsys, store, enrollment_folder):
    """Before issue 20 a failed plain ``enroll --from`` left an empty profile behind, and the
    retry was refused with "exists; use --force"."""
    bad = make_audio("garbage", enrollment_folder)
    bad.with_suffix(".txt").write_text("a bad take\n")
    assert_refused(capsys, store, ["enroll", "bob", "--from", enrollment_folder, "--no-train"], "not a readable")
    bad.unlink()
    code, _, err = run_cli(capsys, "enroll", "bob", "--from", enrollment_folder, "--no-train")
    assert code == 0, err
    assert len((store / "bob" / "enrollment" / "manifest.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("kind", ["nan", "garbage", "missing", "fifo", "huge_amplitude"])
def test_live_replay_refuses(capsys, store, tmp_path, kind):
    audio = make_audio(kind, tmp_path)
    assert_refused(capsys, store, ["live", "--replay", audio, "--profile", "alice"], BAD_AUDIO[kind])


# ------------------------------------------------------------------ where the output goes


@pytest.fixture
def good_wav(tmp_path):
    path = tmp_path / "good.wav"
    path.write_bytes(wav_bytes(tone(1.0)))
    return path


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def test_transcribe_output_dir_that_is_a_file(capsys, store, good_wav, a_file, monkeypatch):
    from asr_adapt.models import loading

    monkeypatch.setattr(loading, "resolve_model", lambda *a, **k: pytest.fail("decoded before checking the output"))
    assert_refused(capsys, store, ["transcribe", good_wav, "--output-dir", a_file, *FAST], "not a folder|is a file")
    assert_refused(capsys, store, ["transcribe", good_wav, "--output-dir", a_file / "below", *FAST],
                   "not a folder|is a file")


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_report_output_dir_that_is_a_file_is_refused_before_decoding(capsys, store, tmp_path, good_wav, a_file,
                                                                     monkeypatch, command, tiny_whisper_dir):
    """Before issue 20 eval and compare decoded everything, then failed with a traceback."""
    from asr_adapt.models import loading

    monkeypatch.setattr(loading, "resolve_model", lambda *a, **k: pytest.fail("decoded before checking the output"))
    manifest = manifest_of(tmp_path, good_wav)
    which = ["--model", tiny_whisper_dir] if command == "eval" else ["--profile", "alice"]
    assert_refused(capsys, store, [command, manifest, *which, "--output-dir", a_file, *FAST], "not a folder|is a file")


def test_manifest_import_output_that_is_a_folder(capsys, store, enrollment_folder, tmp_path):
    assert_refused(capsys, store, ["manifest", "import", enrollment_folder, "-o", tmp_path], "is a folder|directory")


def test_manifest_import_output_under_a_file(capsys, store, enrollment_folder, a_file):
    assert_refused(capsys, store, ["manifest", "import", enrollment_folder, "-o", a_file / "x.jsonl"], "not a folder|is a file")


def test_export_to_a_pipe_or_device_is_refused_and_left_alone(capsys, store, tmp_path):
    """Before issue 20 ``profiles export -o /dev/full`` exited 0 and replaced the device node
    with a regular file. A named pipe stands in for the device here."""
    import os
    import stat

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert_refused(capsys, store, ["profiles", "export", "alice", "-o", pipe], "not a regular file")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "pipe"]  # no temporary file beside it


def test_export_under_a_file(capsys, store, a_file):
    assert_refused(capsys, store, ["profiles", "export", "alice", "-o", a_file / "alice.tar.gz"],
                   "not a folder|is a file|Not a directory")


def test_stereo_and_other_rates_are_transcribed(capsys, store, tmp_path, tiny_whisper_dir):
    """Not hostile, only unusual: stereo at 8 kHz and 48 kHz is read, down-mixed and resampled."""
    import numpy as np

    stereo = tmp_path / "stereo8k.wav"
    stereo.write_bytes(wav_bytes(np.stack([tone(1.0)[::2]] * 2, axis=1), rate=8000))
    high = tmp_path / "mono48k.wav"
    high.write_bytes(wav_bytes(np.repeat(tone(1.0), 3), rate=48000))
    before = store_state(store)
    code, out, err = run_cli(capsys, "transcribe", stereo, high, "--model", tiny_whisper_dir, *FAST)
    assert code == 0, err
    assert "Traceback" not in err
    assert store_state(store) == before
