"""A profile whose adaptation kept no adapter still works: with the base model, said in one line."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from asr_adapt.adapt import training
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.options import TrainOptions
from asr_adapt.data.manifest import Utterance, write_manifest
from asr_adapt.profiles.adaptation import adapt_profile
from asr_adapt.profiles.info import ProfileError
from asr_adapt.profiles.personal import require_adapter
from asr_adapt.profiles.profile import Profile
from cli_runner import FAST, assert_one_line_error, run_cli
from conftest import sine
from fake_profiles import make_profile

REASON = "no epoch beat the base model on the held-out utterances (50.0% unadapted, 60.0% at best)"


def _kept_nothing(name, tiny_whisper_dir):
    profile = make_profile(name, tiny_whisper_dir, with_adapter=False)
    profile.record_metrics({"kept_nothing": REASON})
    return Profile.open(name)


def _utterances(tmp_path, count=8):
    utterances = []
    for i in range(count):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, sine(1.0 + 0.1 * i, freq=180 + 40 * i), 16000)
        utterances.append(Utterance(id=f"u{i}", audio=path, text=f"WORD NUMBER {i}", speaker="solo"))
    return utterances


def test_a_run_that_keeps_nothing_is_recorded_with_its_reason(home, tmp_path, tiny_whisper_dir, monkeypatch):
    wers = iter([0.5, 0.6, 0.7])
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: next(wers))
    profile = make_profile("solo", tiny_whisper_dir, with_adapter=False)
    profile.import_enrollment(_utterances(tmp_path))
    report = adapt_profile(profile, LoraSettings(rank=2), TrainOptions(selection="heldout", epochs=2, min_heldout=2,
                                                                      pack_seconds=0), generic=[])
    assert not report.saved
    reopened = Profile.open("solo")
    assert reopened.adapter_dir is None
    assert reopened.kept_nothing == REASON.replace("60.0% at best", "60.0% at best")
    assert require_adapter(reopened) == (f"profile 'solo' keeps no adapter ({REASON}); "
                                         f"using {tiny_whisper_dir} as it is")


def test_a_profile_never_adapted_is_still_refused(home, tiny_whisper_dir):
    make_profile("fresh", tiny_whisper_dir, with_adapter=False)
    with pytest.raises(ProfileError, match="has no adapter yet; run: asr-adapt adapt fresh"):
        require_adapter(Profile.open("fresh"))


def test_transcribe_compare_and_show_use_the_base_model_and_say_so(capsys, home, tmp_path, tiny_whisper_dir):
    _kept_nothing("solo", tiny_whisper_dir)
    audio = tmp_path / "u0.wav"
    sf.write(audio, sine(1.2), 16000)
    code, out, err = run_cli(capsys, "transcribe", audio, "--profile", "solo", *FAST, "-f", "json")
    assert code == 0, err
    notices = [line for line in err.splitlines() if "keeps no adapter" in line]
    assert notices == [f"profile 'solo' keeps no adapter ({REASON}); using {tiny_whisper_dir} as it is"]
    code, plain, _ = run_cli(capsys, "transcribe", audio, "--model", tiny_whisper_dir, *FAST, "-f", "json")
    assert json.loads(out)["text"] == json.loads(plain)["text"]  # the base model's words

    write_manifest([Utterance(id="t0", audio=audio, text="WORD")], tmp_path / "test.jsonl")
    code, _, err = run_cli(capsys, "compare", "--profile", "solo", tmp_path / "test.jsonl", "-o", tmp_path / "cmp",
                           *FAST)
    assert code == 0, err
    assert "keeps no adapter" in err
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["wer_before"] == result["wer_after"]

    code, out, _ = run_cli(capsys, "profiles", "show", "solo")
    assert code == 0 and f"adapter: none kept ({REASON})" in out and "asr-adapt adapt solo" in out


def test_using_a_never_adapted_profile_is_a_one_line_error(capsys, home, tmp_path, tiny_whisper_dir):
    make_profile("fresh", tiny_whisper_dir, with_adapter=False)
    audio = tmp_path / "u0.wav"
    sf.write(audio, sine(1.2), 16000)
    code, _, err = run_cli(capsys, "transcribe", audio, "--profile", "fresh", *FAST)
    assert_one_line_error(code, err, "has no adapter yet; run: asr-adapt adapt fresh")


def test_a_fixed_schedule_run_stopped_before_its_first_epoch_keeps_nothing_and_says_why(home, tmp_path,
                                                                                       tiny_whisper_dir, monkeypatch):
    """Nothing held out and no epoch finished (a runaway domain game in epoch 1): no adapter,
    a warning and a recorded reason, not a crash on the missing held-out WER."""
    from asr_adapt.profiles import adaptation

    real = adaptation.train_adapter

    def stopped(*args, **kwargs):
        peft_model, result = real(*args, **kwargs)
        result.best_epoch, result.diverged = 0, "non-finite loss in epoch 1 (task nan, domain nan)"
        return peft_model, result

    monkeypatch.setattr(adaptation, "train_adapter", stopped)
    profile = make_profile("solo", tiny_whisper_dir, with_adapter=False)
    profile.import_enrollment(_utterances(tmp_path, count=5))
    report = adapt_profile(profile, LoraSettings(rank=2), TrainOptions(fixed_epochs=1, pack_seconds=0), generic=[])
    assert not report.saved and report.training.baseline_heldout_wer is None
    assert any("adaptation kept no epoch (training diverged: non-finite loss" in w for w in report.warnings)
    assert Profile.open("solo").kept_nothing.startswith("training diverged: non-finite loss")
