"""Training-time augmentation: speed perturbation and SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr_adapt.audio.augment import SpecAugment, speed_perturb
from asr_adapt.core.errors import OptionsError
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.whisper.batcher import WhisperBatcher
from asr_adapt.adapt.options import TrainOptions
from asr_adapt.adapt.training import train_adapter
from conftest import sine
from tiny_data import tiny_utterances


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * 16000 / len(audio))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_and_pitch_together(factor):
    audio = sine(2.0, freq=300.0)
    out = speed_perturb(audio, factor)
    assert out.dtype == np.float32
    assert abs(len(out) - len(audio) / factor) <= 2
    assert _peak_hz(out) == pytest.approx(300.0 * factor, abs=2.0)


def test_speed_factor_one_is_the_same_audio():
    audio = sine(1.0)
    assert speed_perturb(audio, 1.0) is audio


def test_spec_augment_masks_speech_frames_only_and_leaves_the_input_alone():
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))
    before = features.clone()
    augment = SpecAugment(freq_masks=2, freq_width=12, time_masks_per_10s=2, time_width=40)
    out = augment(features, [10 * 16000, 5 * 16000], torch.Generator().manual_seed(0))
    assert torch.equal(features, before)
    changed = out != features
    assert changed.any(dim=1).any(dim=1).all()  # both rows were masked somewhere
    # Time masks stay inside the audio: past 10 s (row 0) and 5 s (row 1) only frequency
    # masks may change a frame, and those take at most 24 of the 80 bands.
    assert changed[0, :, 1000:].sum(dim=0).max() <= 24
    assert changed[1, :, 500:].sum(dim=0).max() <= 24
    # Mostly untouched: a few percent of the real frames are time-masked.
    assert changed[0, :, :1000].all(dim=0).float().mean() <= 0.1


def test_spec_augment_is_seeded():
    features = torch.randn(1, 80, 3000)
    augment = SpecAugment()
    first = augment(features, [16000 * 8], torch.Generator().manual_seed(3))
    again = augment(features, [16000 * 8], torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


@pytest.mark.parametrize("bad", [[0.3], [1.0, 2.5], ["fast"], "0.9", [True]])
def test_speed_factors_are_validated(bad):
    with pytest.raises(OptionsError, match="speed factors"):
        TrainOptions(speed_factors=bad)


def test_training_augments_what_it_trains_on_and_judges_the_real_audio(tiny_whisper_dir, tmp_path, monkeypatch):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    seen = {"train": [], "judge": []}
    real_features = WhisperBatcher.features

    def watching_features(self, windows):
        seen["train" if self.augment is not None else "judge"].append(sum(len(w.audio) for w in windows))
        return real_features(self, windows)

    monkeypatch.setattr(WhisperBatcher, "features", watching_features)
    options = TrainOptions(epochs=2, pack_seconds=0, selection="heldout", min_heldout=2, spec_augment=True,
                           speed_factors=[0.8], learning_rate=1e-2)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.options["speed_factors"] == (0.8,) and result.options["spec_augment"] is True
    assert result.epochs_run == 2
    # Every training batch was augmented; the 8 training utterances were slowed to 1/0.8 of
    # their length each epoch, so the audio trained on is 1.25x what was enrolled.
    trained = sum(seen["train"]) / 16000
    assert trained == pytest.approx(2 * result.train_seconds_of_audio / 0.8, rel=0.02)
    assert seen["judge"]  # held-out loss batches ran without augmentation


def test_an_utterance_never_grows_past_the_window_by_slowing_down():
    from asr_adapt.models.base import Example
    from asr_adapt.adapt.examples import perturbed

    long = Example(sine(28.0), "long")
    short = Example(sine(3.0), "short")
    assert perturbed(long, 0.9) is long
    assert len(perturbed(short, 0.9).audio) == pytest.approx(3.0 / 0.9 * 16000, abs=2)
