"""``asr-adapt live``: one-line errors, device listing, replay, a lost device, and the
whole path through a real (virtual, PulseAudio) microphone with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import read_samples_manifest
from cli_runner import assert_one_line_error, run_cli
from fake_sounddevice import device, fake_sounddevice


@pytest.fixture(autouse=True)
def profiles_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))


@pytest.fixture
def no_model_load(monkeypatch):
    from asr_adapt.models import loading as models

    monkeypatch.setattr(models, "resolve_model", lambda *a, **k: pytest.fail("model loaded"))


def samples_audio(tmp_path, count, gap=0.5):
    """The first ``count`` samples/test utterances, joined with pauses, as one WAV; and the text."""
    from asr_adapt.audio.io import load_audio

    utterances = read_samples_manifest("test")[:count]
    silence = np.zeros(int(gap * 16000), np.float32)
    audio = np.concatenate([silence] + [piece for u in utterances for piece in (load_audio(u.audio), silence)])
    path = tmp_path / "speech.wav"
    sf.write(path, audio, 16000)
    return path, audio, " ".join(u.text for u in utterances)


def wer(reference, hypothesis):
    from asr_adapt.data.scoring import score

    return score([reference], [hypothesis]).wer


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("argv,pattern", [
    (lambda d: ["--replay", d / "missing.wav"], "no such file"),
    (lambda d: ["--replay", (d / "fake.wav").write_text("x") and d / "fake.wav"], "not a readable audio file"),
    (lambda d: ["--profile", "nobody"], "no profile 'nobody'"),
    (lambda d: ["--keep-audio"], "give --profile"),
    (lambda d: ["--hop", "0"], "hop must be"),
    (lambda d: ["--output", d], "is a directory"),
])
def test_bad_input_is_one_line(capsys, tmp_path, no_model_load, argv, pattern):
    code, _, err = run_cli(capsys, "live", *argv(tmp_path))
    assert_one_line_error(code, err, pattern)


def test_no_microphone_points_at_replay(capsys, use_fake, no_model_load):
    use_fake(fake_sounddevice(devices=[], default_input=-1))
    code, _, err = run_cli(capsys, "live")
    assert_one_line_error(code, err, r"no microphone found.*--replay FILE")


def test_unknown_input_device(capsys, use_fake, no_model_load):
    use_fake(fake_sounddevice(devices=[device("USB mic")]))
    code, _, err = run_cli(capsys, "live", "--input-device", "7")
    assert_one_line_error(code, err, r"there is no input device 7; available inputs: 0 'USB mic'")
    code, _, err = run_cli(capsys, "live", "--input-device", "webcam")
    assert_one_line_error(code, err, r"no input device matches 'webcam'")


def test_list_devices(capsys, use_fake):
    use_fake(fake_sounddevice(devices=[device("USB mic"), device("HDMI", inputs=0, outputs=2)]))
    code, out, _ = run_cli(capsys, "live", "--list-devices")
    assert code == 0
    assert out.splitlines() == ["0\tUSB mic (default)\t1 ch, 48000 Hz"]


# --------------------------------------------------------------------------- replay and a lost device


def test_replay_writes_the_transcript(capsys, tmp_path, monkeypatch, bundled_model):
    path, _, text = samples_audio(tmp_path, 1, gap=0.3)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "live", "--replay", path, "--threads", "1")
    assert code == 0, err
    written = sorted(tmp_path.glob("live-*.txt"))
    assert len(written) == 1 and f"written to {written[0]}" in err
    transcript = written[0].read_text()
    assert out.strip() == transcript.strip()   # not a terminal: committed lines only
    assert wer(text, transcript) < 0.5, transcript


def test_a_device_that_disappears_keeps_the_transcript(capsys, tmp_path, use_fake, tiny_whisper_dir):
    _, audio, _ = samples_audio(tmp_path, 1)
    sd = use_fake(fake_sounddevice(devices=[device("USB mic", rate=16000.0)]))
    make = sd.InputStream

    def input_stream(**kwargs):  # the device plays its audio, then is unplugged
        stream = make(**kwargs)
        start = stream.start

        def start_and_feed():
            start()
            threading.Thread(target=lambda: (stream.deliver(audio), stream.vanish()), daemon=True).start()

        stream.start = start_and_feed
        return stream

    sd.InputStream = input_stream
    output = tmp_path / "out" / "talk.txt"
    code, _, err = run_cli(capsys, "live", "--model", tiny_whisper_dir, "--max-new-tokens", "4", "-o", output)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("asr-adapt: error")]
    assert len(errors) == 1
    error = errors[0]
    assert "stopped delivering audio" in error and f"the transcript so far is in {output}" in error
    assert output.is_file()
    assert "Traceback" not in err


# --------------------------------------------------------------------------- a real virtual microphone


def test_live_through_a_virtual_microphone(tmp_path, bundled_model):
    """PulseAudio null sink -> sounddevice -> asr-adapt live (a subprocess: PortAudio lists
    devices once, at start) -> SIGINT -> the transcript file."""
    from virtual_mic import play, virtual_microphone

    path, _, text = samples_audio(tmp_path, 2)
    output = tmp_path / "live.txt"
    with virtual_microphone() as env:
        stderr_path = tmp_path / "stderr.txt"
        with open(tmp_path / "stdout.txt", "wb") as out, open(stderr_path, "wb") as err:
            live = subprocess.Popen([sys.executable, "-m", "asr_adapt.cli.main", "live", "--threads", "1",
                                     "-o", str(output)], env=env, cwd=tmp_path, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while "listening on" not in stderr_path.read_text():
                assert live.poll() is None, f"live ended early: {stderr_path.read_text()}"
                assert time.monotonic() < deadline, f"live never started: {stderr_path.read_text()}"
                time.sleep(0.2)
            play(env, path)
            time.sleep(1.0)
            live.send_signal(signal.SIGINT)   # what Ctrl-C sends
            code = live.wait(timeout=90)
        finally:
            if live.poll() is None:
                live.kill()
                live.wait()
    stderr = stderr_path.read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert f"written to {output}" in stderr
    transcript = output.read_text()
    assert (tmp_path / "stdout.txt").read_text().strip() == transcript.strip()
    assert wer(text, transcript) < 0.5, transcript


def test_keep_audio_stores_the_replayed_speech_in_the_profile(capsys, tmp_path, tiny_whisper_dir):
    from fake_profiles import make_profile

    from asr_adapt.profiles.profile import Profile

    make_profile("alice", tiny_whisper_dir)
    path, audio, _ = samples_audio(tmp_path, 1, gap=0.2)
    output = tmp_path / "alice.txt"
    code, _, err = run_cli(capsys, "live", "--profile", "alice", "--replay", path, "--keep-audio", "-o", output,
                           "--max-new-tokens", "4")
    assert code == 0, err
    assert output.is_file() and "with profile 'alice'" in err
    kept = Profile.open("alice").unlabeled_utterances()
    assert len(kept) == 1 and kept[0].text is None
    assert abs(kept[0].duration - len(audio) / 16000) < 0.1
    assert "kept 1 piece(s) of audio in profile 'alice'" in err
