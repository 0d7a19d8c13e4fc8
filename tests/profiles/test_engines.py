"""A profile on the ct2 engine: its adapter merged and converted once, cached in the profile and
rebuilt when the adapter changes, decoded as the torch engine decodes it; every command that
decodes takes ``--engine ct2``; what cannot run there is refused in one line."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import soundfile as sf

from cli_runner import assert_one_line_error, run_cli
from conftest import sine
from fake_profiles import make_profile

pytest.importorskip("ctranslate2", reason="the ct2 engine needs ctranslate2")

from asr_adapt.models.options import TranscribeOptions  # noqa: E402
from asr_adapt.models.transcriber import Transcriber  # noqa: E402
from asr_adapt.profiles import engines  # noqa: E402
from asr_adapt.profiles.engines import ENGINES_FOLDER, load_profile_on, switcher_for  # noqa: E402
from asr_adapt.profiles.profile import Profile  # noqa: E402

OPTIONS = TranscribeOptions(beam_size=1, max_new_tokens=6)


@pytest.fixture
def alice(home, tiny_whisper_dir):
    return make_profile("alice", tiny_whisper_dir)


def tones():
    rng = np.random.RandomState(2)
    return [sine(1.0 + i / 2, freq=250 + 70 * i) + 0.05 * rng.randn(int(16000 * (1 + i / 2))).astype(np.float32)
            for i in range(4)]


def conversions(profile):
    folder = profile.path / ENGINES_FOLDER
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_ct2_profile_decodes_as_the_torch_profile_and_is_converted_once(alice, monkeypatch):
    torch_loaded, _ = load_profile_on("alice", engine="torch", device="cpu")
    loaded, _ = load_profile_on("alice", engine="ct2", dtype="float32")
    assert loaded.name == torch_loaded.name and loaded.info["profile"] == "alice"
    assert Transcriber(loaded, OPTIONS).transcribe_arrays(tones()) == Transcriber(torch_loaded, OPTIONS).transcribe_arrays(tones())
    [built] = conversions(alice)
    assert built.startswith("ct2-") and (alice.path / ENGINES_FOLDER / built / "model.bin").is_file()
    monkeypatch.setattr(engines, "convert_loaded", lambda *a, **k: pytest.fail("converted a second time"))
    load_profile_on("alice", engine="ct2")
    assert conversions(alice) == [built]


def test_a_new_adapter_is_converted_again_and_the_old_conversion_goes(alice, tiny_whisper_dir):
    load_profile_on("alice", engine="ct2")
    before = conversions(alice)
    make_profile("other", tiny_whisper_dir, seed=7)  # a second adapter, committed as alice's next version
    other = Profile.open("other")
    alice.commit_adapter(lambda d: [(d / f.name).write_bytes(f.read_bytes()) for f in other.adapter_dir.iterdir()],
                         settings={}, metrics={})
    loaded, _ = load_profile_on("alice", engine="ct2", dtype="float32")
    after = conversions(alice)
    assert len(after) == 1 and after != before
    torch_loaded, _ = load_profile_on("other", engine="torch", device="cpu")
    assert Transcriber(loaded, OPTIONS).transcribe_arrays(tones()) == Transcriber(torch_loaded, OPTIONS).transcribe_arrays(tones())
    record = json.loads((alice.path / ENGINES_FOLDER / after[0] / "asr_adapt_build.json").read_text())
    assert record["profile"] == "alice" and record["adapter"] == Profile.open("alice").info.adapter


def test_a_dead_run_leftover_is_removed_and_a_full_disk_leaves_nothing(alice, monkeypatch, capsys, tmp_path):
    leftover = alice.path / ENGINES_FOLDER / ".ct2-0123456789abcdef.build-999999999-abcd"
    leftover.mkdir(parents=True)
    (leftover / "model.bin").write_bytes(b"half")

    def full(loaded, target, *args):
        target.mkdir()
        (target / "model.bin").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(engines, "convert_loaded", full)
    wav = tmp_path / "tone.wav"
    sf.write(wav, sine(1.0), 16000)
    code, _, err = run_cli(capsys, "transcribe", "--engine", "ct2", "--profile", "alice", wav)
    assert_one_line_error(code, err, r"profile 'alice': cannot build the CTranslate2 model .*No space left on device")
    assert conversions(alice) == []


@pytest.mark.parametrize("command", ["transcribe", "eval", "compare"])
def test_commands_take_engine_ct2(alice, tmp_path, capsys, command):
    wav = tmp_path / "data" / "a.wav"
    wav.parent.mkdir()
    sf.write(wav, sine(1.0), 16000)
    (tmp_path / "data" / "a.txt").write_text("hello there\n")
    flags = ("--engine", "ct2", "--max-new-tokens", "4", "--beam-size", "1")
    if command == "transcribe":
        argv = ("transcribe", "--profile", "alice", *flags, wav)
    else:
        argv = (command, tmp_path / "data", "--profile", "alice", "-o", tmp_path / "out", *flags)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    if command == "eval":
        assert json.loads((tmp_path / "out" / "report.json").read_text())["meta"]["engine"] == "ct2"
    if command == "compare":
        assert json.loads((tmp_path / "out" / "compare.json").read_text())["meta"]["engine"] == "ct2"


def test_live_replays_with_engine_ct2(alice, tmp_path, capsys):
    wav = tmp_path / "tone.wav"
    sf.write(wav, sine(1.0), 16000)
    output = tmp_path / "live.txt"
    code, _, err = run_cli(capsys, "live", "--engine", "ct2", "--profile", "alice", "--replay", wav,
                           "--max-new-tokens", "4", "--no-prompt", "-o", output)
    assert code == 0, err
    assert output.is_file() and "with profile 'alice'" in err and "(int8)" in err


def test_the_live_switcher_swaps_conversions(alice, tiny_whisper_dir):
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.info import ProfileError

    loaded = resolve_model(str(tiny_whisper_dir), engine="ct2", dtype="float32")
    base = loaded.model
    switcher = switcher_for(loaded)
    decode = loaded.engine.streaming_decoder(loaded, max_new_tokens=6, encoder_window="full")
    buffer = tones()[1]
    plain = decode(buffer)
    switcher.use("alice")
    assert loaded.model is not base and loaded.info["profile"] == "alice" and switcher.active == "alice"
    torch_loaded, _ = load_profile_on("alice", engine="torch", device="cpu")
    assert decode(buffer) == torch_loaded.engine.streaming_decoder(torch_loaded, 6, "full")(buffer)
    switcher.use(None)
    assert loaded.model is base and "profile" not in loaded.info and decode(buffer) == plain
    with pytest.raises(ProfileError, match="no profile 'nobody'"):
        switcher.use("nobody")


def test_ctc_profiles_are_refused_on_ct2_in_one_line(home, tmp_path, capsys):
    from wav2vec2_models import build_tiny_ctc

    ctc = build_tiny_ctc(tmp_path / "w2v")
    Profile.create("tones", base_model=str(ctc), base_weights_sha256=None, backend="wav2vec2")
    wav = tmp_path / "tone.wav"
    sf.write(wav, sine(1.0), 16000)
    code, _, err = run_cli(capsys, "transcribe", "--engine", "ct2", "--profile", "tones", wav)
    assert_one_line_error(code, err, r"--engine ct2 runs Whisper models only .*profile 'tones' is a wav2vec2 model")
