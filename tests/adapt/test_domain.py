"""Domain confusion: the reversal layer, the schedule, the head, and training on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_adapt.adapt import confusion, training
from asr_adapt.adapt.domain import DomainClassifier, GradientReversal, domain_loss, pool_states, reverse_gradient
from asr_adapt.adapt.options import DomainOptions, grl_lambda
from asr_adapt.models.whisper.encoder_window import frame_mask
from asr_adapt.core.errors import OptionsError
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.loading import resolve_model
from asr_adapt.adapt.options import TrainOptions, TrainingError
from asr_adapt.adapt.training import train_adapter


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 1.0, 2.5])
def test_reversal_gradient_is_minus_lambda_times_upstream(lambda_):
    torch.manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, dtype=torch.float64)
    y = reverse_gradient(x, lambda_)
    assert torch.equal(y, x)  # identity forward
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.allclose(grad, -lambda_ * upstream)
    # Through a module and a further function: chain rule with the sign flipped.
    module = GradientReversal(lambda_)
    (grad,) = torch.autograd.grad((module(x) ** 2).sum(), x)
    assert torch.allclose(grad, -lambda_ * 2 * x)


def test_reversal_passes_gradcheck():
    # gradcheck compares with finite differences of the forward (identity), so check the
    # analytic backward against -lambda * I explicitly through the Jacobian instead.
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(lambda t: reverse_gradient(t, 0.7), x)
    assert torch.allclose(jacobian, -0.7 * torch.eye(4, dtype=torch.float64))


def test_schedule_values():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert grl_lambda(0.5) == pytest.approx(0.98661, abs=1e-5)
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)  # 0.99991
    assert grl_lambda(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert grl_lambda(-1) == 0.0 and grl_lambda(2) == grl_lambda(1)  # clipped to [0, 1]
    values = [grl_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert DomainOptions(lambda_max=0.5).lambda_at(1.0) == pytest.approx(0.5 * grl_lambda(1.0))


@pytest.mark.parametrize("bad", [dict(weight=0), dict(lambda_max=-1), dict(pooling="max"), dict(layer=1.5),
                                 dict(unlabeled_ratio=0), dict(hidden_size=1), dict(max_domain_loss=0.5),
                                 dict(enabled="yes")])
def test_domain_options_are_validated(bad):
    with pytest.raises(OptionsError):
        DomainOptions(**bad)


def test_pooling_ignores_padding_frames():
    states = torch.zeros(2, 10, 3)
    states[0, :4] = 1.0
    states[0, 4:] = 100.0  # padding: must not count
    states[1] = torch.arange(10.0)[:, None]
    mask = frame_mask([4 * 320, 10 * 320], 10)
    assert mask.sum(1).tolist() == [4, 10]
    mean = pool_states(states, mask, "mean")
    assert torch.allclose(mean[0], torch.ones(3)) and torch.allclose(mean[1], torch.full((3,), 4.5))
    stats = pool_states(states, mask, "stats")
    assert stats.shape == (2, 6) and stats[0, 3:].abs().max() < 1e-2
    scores = torch.zeros(2, 10)
    scores[:, 5:] = 50.0  # attention on padding is masked away
    attentive = pool_states(states, mask, "attentive", scores)
    assert torch.allclose(attentive[0], torch.ones(3))


@pytest.mark.parametrize("pooling", ["mean", "attentive", "stats"])
def test_head_shapes_and_reversed_gradient_to_the_states(pooling):
    torch.manual_seed(0)
    head = DomainClassifier(8, hidden_size=16, pooling=pooling)
    states = torch.randn(4, 20, 8, requires_grad=True)
    mask = frame_mask([6400, 3200, 640, 6400], 20)
    logits = head(states, mask, lambda_=0.0)
    assert logits.shape == (4,)
    loss, correct = domain_loss(logits, torch.tensor([0, 0, 1, 1]))
    assert 0 <= correct <= 4 and loss.item() > 0
    loss.backward()
    assert states.grad.abs().sum() == 0  # lambda 0: the encoder gets nothing
    x = states.detach().requires_grad_()
    targets = torch.tensor([0, 0, 1, 1])
    # lambda -1 reverses nothing (-(-1) = 1): the plain gradient of the domain loss.
    (plain,) = torch.autograd.grad(domain_loss(head(x, mask, -1.0), targets)[0], x)
    (reversed_,) = torch.autograd.grad(domain_loss(head(x, mask, 0.5), targets)[0], x)
    assert plain.abs().sum() > 0
    assert torch.allclose(reversed_, -0.5 * plain, atol=1e-7)


# --------------------------------------------------------------------------- tiny model


def _tone(i: int) -> np.ndarray:
    t = np.arange(int((1.0 + 0.1 * (i % 7)) * 16000)) / 16000
    f = 200 + 120 * (i % 5)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 3 * f * t)).astype(np.float32)


def _telephone(audio: np.ndarray, seed: int) -> np.ndarray:
    """The other domain: 300-3400 Hz band plus noise at about 10 dB SNR."""
    from scipy import signal

    sos = signal.butter(4, (300, 3400), btype="bandpass", fs=16000, output="sos")
    noise = np.random.default_rng(seed).normal(0, 0.1, len(audio))
    return (signal.sosfilt(sos, audio) + noise).astype(np.float32)


def _labeled(tmp_path, count=10):
    words = ["alpha", "bravo", "charlie", "delta", "echo"]
    utterances = []
    for i in range(count):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, _tone(i), 16000)
        utterances.append(Utterance(id=f"u{i}", audio=path, text=words[i % 5].upper(), speaker="s"))
    return utterances


def _sensitive_tiny_model(tiny_whisper_dir):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    with torch.no_grad():
        # A random 16-wide model barely sees its input (0.02-scale convolutions next to unit
        # positional embeddings) and cannot express confident logits: make both visible.
        loaded.model.model.decoder.layer_norm.weight.fill_(40.0)
        for conv in (loaded.model.model.encoder.conv1, loaded.model.model.encoder.conv2):
            conv.weight.mul_(20.0)
    return loaded


def _train(tiny_whisper_dir, tmp_path, lambda_max, monkeypatch, epochs=6):
    # The held-out WER of a random model is noise and costs most of the time: stub it.
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: 0.5)
    loaded = _sensitive_tiny_model(tiny_whisper_dir)
    options = TrainOptions(epochs=epochs, learning_rate=3e-2, batch_size=2, pack_seconds=0, patience=10,
                           selection="heldout", min_heldout=2, warmup_fraction=0.0)
    domain = DomainOptions(enabled=True, weight=1.0, lambda_max=lambda_max, hidden_size=16,
                           min_unlabeled_seconds=1.0)
    unlabeled = [_telephone(_tone(i + 3), i) for i in range(16)]
    # Both halves: the widened decoder norm is what lets the task loss move on this model.
    return train_adapter(loaded, _labeled(tmp_path), LoraSettings(rank=4, where="both"), options, domain=domain,
                         unlabeled=unlabeled)


def test_domain_accuracy_falls_toward_chance_while_task_loss_falls(tiny_whisper_dir, tmp_path, monkeypatch):
    _, confused = _train(tiny_whisper_dir, tmp_path, 1.0, monkeypatch)
    _, control = _train(tiny_whisper_dir, tmp_path, 0.001, monkeypatch)  # reversal all but off
    accuracy = [r.domain_accuracy for r in confused.history[1:]]
    losses = [r.train_loss for r in confused.history[1:]]
    # Measured: accuracy 0.75, 0.88, 0.62, 0.50, 0.50, 0.50; task loss 13.8 -> 9.3.
    assert max(accuracy[:3]) >= 0.7, accuracy          # the head did learn to tell them apart
    assert max(accuracy[-2:]) <= 0.6, accuracy         # ... and then the encoder confused it
    assert losses[-1] < 0.8 * losses[0], losses        # while the task still learned
    assert control.final_domain_accuracy >= 0.9, [r.domain_accuracy for r in control.history]
    assert confused.final_domain_accuracy == accuracy[-1]
    assert confused.domain["lambda_max"] == 1.0 and confused.unlabeled_pieces == 16
    assert confused.history[-1].grl_lambda > 0.9 and confused.diverged is None


def test_plain_training_records_no_domain_fields(tiny_whisper_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: 0.5)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=1, pack_seconds=0, selection="heldout", min_heldout=2)
    _, result = train_adapter(loaded, _labeled(tmp_path), LoraSettings(rank=2), options,
                              domain=DomainOptions(enabled=False), unlabeled=None)
    assert result.domain is None and result.final_domain_accuracy is None
    assert result.history[1].domain_accuracy is None


@pytest.mark.parametrize("scale,reason", [(10.0, "domain loss .* above 3"), (float("nan"), "non-finite loss")])
def test_runaway_domain_loss_is_detected_and_best_state_kept(tiny_whisper_dir, tmp_path, monkeypatch, scale, reason):
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: 0.5)
    real = confusion.domain_loss
    # A runaway game, simulated: the loss the head reports is far above chance (or NaN).
    monkeypatch.setattr(confusion, "domain_loss", lambda logits, domains: (real(logits, domains)[0] * scale,
                                                                         real(logits, domains)[1]))
    loaded = _sensitive_tiny_model(tiny_whisper_dir)
    options = TrainOptions(epochs=3, learning_rate=3e-2, batch_size=2, pack_seconds=0, selection="heldout", min_heldout=2)
    domain = DomainOptions(enabled=True, weight=1.0, hidden_size=16, min_unlabeled_seconds=1.0)
    unlabeled = [_telephone(_tone(i), i) for i in range(8)]
    peft_model, result = train_adapter(loaded, _labeled(tmp_path), LoraSettings(rank=2), options,
                                       domain=domain, unlabeled=unlabeled)
    assert result.diverged and __import__("re").search(reason, result.diverged), result.diverged
    assert result.epochs_run == 1 and result.best_epoch == 0 and not result.improved
    for name, value in peft_model.state_dict().items():
        if "lora_B" in name:
            assert torch.count_nonzero(value) == 0  # the unadapted state was restored


def test_labeled_only_with_domain_confusion_says_unlabeled_audio_is_needed(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    with pytest.raises(TrainingError, match="needs the user's unlabeled audio.*--unlabeled"):
        train_adapter(loaded, _labeled(tmp_path), options=TrainOptions(selection="heldout", min_heldout=2),
                      domain=DomainOptions(enabled=True), unlabeled=[])
    with pytest.raises(TrainingError, match="only 2 s of usable unlabeled audio"):
        train_adapter(loaded, _labeled(tmp_path), options=TrainOptions(selection="heldout", min_heldout=2),
                      domain=DomainOptions(enabled=True), unlabeled=[np.ones(32000, np.float32)])


def test_unlabeled_only_is_refused(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    unlabeled_utts = [Utterance(id=u.id, audio=u.audio, text=None) for u in _labeled(tmp_path)]
    with pytest.raises(TrainingError, match="unlabeled audio alone cannot adapt"):
        train_adapter(loaded, unlabeled_utts, domain=DomainOptions(enabled=True),
                      unlabeled=[_tone(i) for i in range(40)])


def test_bad_layer_fails_before_training(tiny_whisper_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: pytest.fail("trained"))
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    with pytest.raises(OptionsError, match="domain layer 7 does not exist.*2 layers"):
        train_adapter(loaded, _labeled(tmp_path), options=TrainOptions(selection="heldout", min_heldout=2),
                      domain=DomainOptions(enabled=True, layer=7, min_unlabeled_seconds=1),
                      unlabeled=[_tone(i) for i in range(4)])


def test_balanced_domain_gradient_is_a_set_share_of_the_task_gradient():
    """With balance="gradient", the reversed domain gradient on the adapters it reaches has
    weight * lambda times the task gradient's norm there, whatever the losses' scales."""
    import torch

    from asr_adapt.adapt.domain import reverse_gradient
    from asr_adapt.adapt.confusion import balanced_backward

    torch.manual_seed(0)
    shared = torch.nn.Parameter(torch.randn(4, 3))      # an encoder adapter: both losses reach it
    decoder_only = torch.nn.Parameter(torch.randn(3))  # a decoder adapter: the task loss only
    head = torch.nn.Parameter(torch.randn(3))
    x = torch.randn(5, 4)
    states = x @ shared
    task = ((states @ decoder_only) ** 2).mean() * 1000.0  # a task loss on a much larger scale
    lambda_ = 0.5
    dloss = (reverse_gradient(states, lambda_) @ head).sigmoid().mean()
    task_grad = torch.autograd.grad(task, shared, retain_graph=True)[0]
    domain_grad = torch.autograd.grad(dloss, shared, retain_graph=True)[0]
    head_grad = torch.autograd.grad(dloss, head, retain_graph=True)[0]
    decoder_grad = torch.autograd.grad(task, decoder_only, retain_graph=True)[0]

    balanced_backward(task, dloss, [shared, decoder_only], [head], weight=0.3, lambda_=lambda_)
    added = shared.grad - task_grad
    assert torch.allclose(added.norm(), 0.3 * lambda_ * task_grad.norm(), rtol=1e-4)
    # the reversed direction is kept: against the head's own gradient
    assert torch.nn.functional.cosine_similarity(added.flatten(), domain_grad.flatten(), dim=0) > 0.999
    assert torch.allclose(decoder_only.grad, decoder_grad)
    assert torch.allclose(head.grad, head_grad)
