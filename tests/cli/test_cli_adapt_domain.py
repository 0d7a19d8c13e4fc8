"""adapt/enroll --domain-confusion --unlabeled --plot over real profiles (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.profiles.profile import Profile
from conftest import sine
from cli_runner import assert_one_line_error, run_cli
from test_cli_enroll import _manifest


@pytest.fixture(autouse=True)
def profiles_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))


def _unlabeled_dir(tmp_path, files=3, seconds=12.0):
    folder = tmp_path / "car"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(files):
        audio = sine(seconds, freq=150 + 50 * i) + rng.normal(0, 0.05, int(seconds * 16000)).astype(np.float32)
        sf.write(folder / f"c{i}.wav", audio, 16000)
    return folder


def _enrolled(capsys, tmp_path, tiny_whisper_dir, name="solo"):
    run_cli(capsys, "enroll", name, "--from", _manifest(tmp_path), "--model", tiny_whisper_dir, "--no-train")
    return Profile.open(name)


FAST_TRAIN = ("--epochs", "1", "--pack-seconds", "0", "--domain-hidden", "8")


def test_domain_confusion_without_unlabeled_audio_says_what_to_do(capsys, tmp_path, tiny_whisper_dir, monkeypatch):
    from asr_adapt.profiles import adaptation

    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    monkeypatch.setattr(adaptation, "resolve_model", lambda *a, **k: pytest.fail("model loaded"))
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", *FAST_TRAIN)
    assert_one_line_error(code, err, r"needs the user's unlabeled audio .*--unlabeled PATH.*live --profile solo --keep-audio")


def test_unlabeled_without_domain_confusion_is_refused(capsys, tmp_path, tiny_whisper_dir):
    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    code, _, err = run_cli(capsys, "adapt", "solo", "--unlabeled", _unlabeled_dir(tmp_path))
    assert_one_line_error(code, err, "used by --domain-confusion or --self-train")


@pytest.mark.parametrize("make,pattern", [
    (lambda p: sf.write(p, np.zeros(48000, np.float32), 16000), r"hush\.wav: silent"),
    (lambda p: sf.write(p, sine(0.2), 16000), r"hush\.wav: only 0\.20 s"),
    (lambda p: p.write_bytes(b""), r"hush\.wav: (not a readable|holds no audio)"),
])
def test_bad_unlabeled_file_is_a_one_line_error_naming_it(capsys, tmp_path, tiny_whisper_dir, make, pattern):
    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    folder = _unlabeled_dir(tmp_path, files=1)
    make(folder / "hush.wav")
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--unlabeled", folder, *FAST_TRAIN)
    assert_one_line_error(code, err, pattern)


def test_too_little_unlabeled_audio(capsys, tmp_path, tiny_whisper_dir):
    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--unlabeled",
                           _unlabeled_dir(tmp_path, files=1, seconds=5), *FAST_TRAIN)
    assert_one_line_error(code, err, r"only 5 s of usable unlabeled audio.*at least 30 s")


def test_bad_domain_flags(capsys, tmp_path, tiny_whisper_dir):
    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--domain-weight", "0")
    assert_one_line_error(code, err, "domain loss weight")


def test_closed_loop_kept_audio_and_folder_adapter_loads_with_plain_peft(capsys, tmp_path, tiny_whisper_dir,
                                                                          monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from asr_adapt.adapt.options import TrainResult

    profile = _enrolled(capsys, tmp_path, tiny_whisper_dir)
    profile.add_unlabeled_audio(sine(6.0, freq=300), source="live")  # what live --keep-audio keeps
    # A random tiny model seldom beats itself; count the run as an improvement so that the
    # real save path runs (training and saving stay real).
    monkeypatch.setattr(TrainResult, "improved", property(lambda self: True))
    picture = tmp_path / "pics" / "domain.png"
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--unlabeled", _unlabeled_dir(tmp_path),
                           "--domain-pooling", "stats", "--plot", picture, *FAST_TRAIN)
    assert code == 0, err
    assert "domain classifier's final accuracy" in err and "picture:" in err
    assert picture.read_bytes()[:4] == b"\x89PNG"
    profile = Profile.open("solo")
    settings, metrics = profile.info.settings, profile.info.metrics
    assert settings["domain"]["enabled"] and settings["domain"]["pooling"] == "stats"
    assert settings["unlabeled"]["files"] == 4  # 3 from the folder + 1 kept
    assert metrics["domain_confusion"] and 0 <= metrics["domain_accuracy"] <= 1
    assert metrics["history"][1]["domain_accuracy"] is not None
    assert {"probe_accuracy_before", "probe_accuracy_after"} <= set(metrics["domain_projection"])
    # The domain head is not part of the adapter: plain PEFT loads the folder as it is.
    names = sorted(p.name for p in profile.adapter_dir.iterdir())
    assert not any("domain" in n or "head" in n for n in names), names
    base = WhisperForConditionalGeneration.from_pretrained(str(tiny_whisper_dir))
    plain = PeftModel.from_pretrained(base, str(profile.adapter_dir)).eval()
    with torch.no_grad():
        logits = plain(input_features=torch.zeros(1, 80, 3000), decoder_input_ids=torch.tensor([[50257, 50362]])).logits
    assert torch.isfinite(logits).all()
    # compare shows what domain confusion did: the facts and the picture beside the report.
    code, out, err = run_cli(capsys, "compare", "--profile", "solo", tmp_path / "enroll.jsonl", "-o", tmp_path / "cmp")
    assert code == 0, err
    assert "**domain confusion**: on, " in out and "domain head" in out and "linear probe" in out
    assert "[domain.png](domain.png)" in out
    assert (tmp_path / "cmp" / "domain.png").read_bytes() == picture.read_bytes()


def test_divergence_is_reported_and_a_better_adapter_kept(capsys, tmp_path, tiny_whisper_dir, monkeypatch):
    from asr_adapt.profiles import adaptation
    from asr_adapt.adapt.options import TrainResult

    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    monkeypatch.setattr(TrainResult, "improved", property(lambda self: True))
    code, _, err = run_cli(capsys, "adapt", "solo", "--epochs", "1", "--pack-seconds", "0", "--select", "heldout")
    assert code == 0, err
    first = Profile.open("solo").adapter_dir
    real = adaptation.train_adapter

    def runaway(*args, **kwargs):
        peft_model, result = real(*args, **kwargs)
        result.diverged = "domain loss 9.00 in epoch 1 is above 3"
        current = Profile.open("solo").info.metrics["heldout_wer_after"]
        if result.best_heldout_wer is not None:
            result.best_heldout_wer = current + 0.1  # worse than the current one
        return peft_model, result

    monkeypatch.setattr(adaptation, "train_adapter", runaway)
    unlabeled = _unlabeled_dir(tmp_path)
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--unlabeled", unlabeled,
                           *FAST_TRAIN, "--select", "heldout")
    assert code == 1
    assert "domain confusion diverged" in err and "keeps its current adapter" in err
    assert Profile.open("solo").adapter_dir == first
    # The fixed schedule holds nothing out: a runaway run cannot show it did better.
    code, _, err = run_cli(capsys, "adapt", "solo", "--domain-confusion", "--unlabeled", unlabeled, *FAST_TRAIN)
    assert code == 1
    assert "keeps its current adapter (nothing held out to compare with)" in err
    assert Profile.open("solo").adapter_dir == first


def test_enroll_passes_domain_confusion_through(capsys, tmp_path, tiny_whisper_dir):
    code, _, err = run_cli(capsys, "enroll", "newbie", "--from", _manifest(tmp_path), "--model", tiny_whisper_dir,
                           "--domain-confusion", *FAST_TRAIN)
    assert_one_line_error(code, err, "needs the user's unlabeled audio")
    from asr_adapt.profiles.info import profiles_root

    assert not (profiles_root() / "newbie").exists()  # refused before anything was enrolled
    code, _, err = run_cli(capsys, "enroll", "newbie", "--from", _manifest(tmp_path), "--model", tiny_whisper_dir,
                           "--domain-confusion", "--unlabeled", _unlabeled_dir(tmp_path), *FAST_TRAIN)
    assert code in (0, 1), err  # a random tiny model may or may not beat itself
    assert "domain confusion on 0.6 min of unlabeled audio" in err
    assert Profile.open("newbie").info.metrics.get("domain_accuracy") is not None or code == 1


def test_self_training_needs_unlabeled_audio_before_anything_is_enrolled(capsys, tmp_path, tiny_whisper_dir):
    code, _, err = run_cli(capsys, "enroll", "newbie", "--from", _manifest(tmp_path), "--model", tiny_whisper_dir,
                           "--self-train", *FAST_TRAIN)
    assert_one_line_error(code, err, r"self-training needs the user's unlabeled audio.*--unlabeled PATH")
    from asr_adapt.profiles.info import profiles_root

    assert not (profiles_root() / "newbie").exists()
    _enrolled(capsys, tmp_path, tiny_whisper_dir)
    code, _, err = run_cli(capsys, "adapt", "solo", "--self-train", "--pseudo-keep", "0", *FAST_TRAIN)
    assert_one_line_error(code, err, "keep share must be in")


def test_self_training_runs_two_rounds_and_records_them(capsys, tmp_path, tiny_whisper_dir, monkeypatch):
    """adapt --self-train: round one's model labels the unlabeled audio, round two trains on
    the enrollment plus the surest labels; the profile says what was kept and which round won,
    and every pseudo-label is written where the user can read it."""
    import json

    from asr_adapt.profiles import adaptation
    from asr_adapt.adapt.options import TrainResult

    profile = _enrolled(capsys, tmp_path, tiny_whisper_dir)
    monkeypatch.setattr(TrainResult, "improved", property(lambda self: True))
    # A random tiny model writes gibberish or nothing; give it words so that labels exist.
    from asr_adapt.models.transcriber import Transcriber

    monkeypatch.setattr(Transcriber, "transcribe_arrays",
                        lambda self, audios: [f"Piece number {i}." for i in range(len(audios))])
    rounds = []
    real = adaptation.train_adapter

    def counted(*args, **kwargs):
        rounds.append(len(kwargs.get("pseudo_labeled", ())))
        return real(*args, **kwargs)

    monkeypatch.setattr(adaptation, "train_adapter", counted)
    folder = _unlabeled_dir(tmp_path, files=10, seconds=3.0)
    # A held-out slice judges the two rounds (the fixed schedule has none: round two is kept).
    code, _, err = run_cli(capsys, "adapt", "solo", "--self-train", "--unlabeled", folder, "--pseudo-keep", "0.8",
                           "--pseudo-beam", "1", *FAST_TRAIN, "--select", "heldout")
    assert code == 0, err
    assert rounds == [0, 8]  # 10 pieces, the surest 80%
    assert "self-training: kept 8 of 10 pseudo-labelled pieces" in err and "kept round" in err
    profile = Profile.open("solo")
    st = profile.info.metrics["self_training"]
    assert st["kept"] == 8 and st["kept_round"] in (1, 2) and st["round_two_heldout_wer"] is not None
    assert profile.info.settings["self_training"]["keep_share"] == 0.8
    assert profile.info.settings["unlabeled"]["files"] == 10
    lines = [json.loads(line) for line in open(st["labels_file"])]
    assert len(lines) == 10 and sum(line["kept"] for line in lines) == 8
    assert all(line["text"].startswith("Piece number") for line in lines)
