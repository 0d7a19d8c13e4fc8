"""LoRA training on a tiny model: targets, packing, held-out split, loss falls, adapters round-trip."""

from __future__ import annotations

import contextlib
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from tiny_data import tiny_utterances
from asr_adapt.core.errors import OptionsError
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.attach import attach_lora
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.loading import resolve_model
from asr_adapt.adapt import training
from asr_adapt.models.whisper.text_style import to_whisper_style
from asr_adapt.adapt import options as training_options
from asr_adapt.adapt.options import TrainOptions, TrainingError
from asr_adapt.adapt.examples import pack_windows, split_heldout
from asr_adapt.adapt.training import train_adapter
from asr_adapt.models.base import Example
from asr_adapt.models.whisper.backend import WhisperBackend
from asr_adapt.models.whisper.batcher import WhisperBatcher
from conftest import sine


@pytest.mark.parametrize("raw,styled", [
    ("WE CALL IT BEAR", "We call it bear."),
    ("I THINK I'M LATE", "I think I'm late."),
    ("WHERE IS IT?", "Where is it?"),
    ("Already cased, fine", "Already cased, fine"),
    ("  TWO   SIX ", "Two six."),
])
def test_targets_follow_whisper_style(raw, styled):
    assert to_whisper_style(raw) == styled


def _examples(seconds):
    return [Example(np.full(int(s * 16000), i + 1, dtype=np.float32), f"u{i}") for i, s in enumerate(seconds)]


def test_packing_fills_windows_without_losing_or_splitting_utterances():
    examples = _examples([4, 7, 3, 9, 12, 5, 2, 6])
    options = TrainOptions(pack_seconds=20, pack_gap=0.5)
    windows = pack_windows(examples, options, random.Random(0))
    assert all(len(w.audio) <= 20 * 16000 for w in windows)
    texts = " ".join(w.text for w in windows).split()
    assert sorted(texts) == sorted(e.text for e in examples)
    total = sum(len(e.audio) for e in examples)
    gaps = sum(len(w.text.split()) - 1 for w in windows) * 8000
    assert sum(len(w.audio) for w in windows) == total + gaps
    assert len(windows) < len(examples)
    # Within a window, the texts come in the same order as their audio.
    for window in windows:
        values = [int(v) for v in np.unique(window.audio[window.audio > 0], return_index=True)[0]]
        order = sorted(values, key=lambda v: np.argmax(window.audio == v))
        assert [f"u{v - 1}" for v in order] == window.text.split()


def test_no_packing_keeps_one_utterance_per_window():
    examples = _examples([4, 7, 3])
    windows = pack_windows(examples, TrainOptions(pack_seconds=0), random.Random(0))
    assert sorted(w.text for w in windows) == ["u0", "u1", "u2"]


def test_heldout_split_is_seeded_and_disjoint(tmp_path):
    utterances = [Utterance(id=f"u{i}", audio=tmp_path / f"{i}.wav", text="x") for i in range(40)]
    options = TrainOptions(heldout_fraction=0.1, selection="heldout", min_heldout=3, seed=7)
    train, held = split_heldout(utterances, options)
    assert len(held) == 4 and len(train) == 36
    assert not {u.id for u in train} & {u.id for u in held}
    assert split_heldout(utterances, options) == (train, held)
    assert split_heldout(utterances, TrainOptions(seed=8))[1] != held


def test_group_heldout_is_one_whole_unheard_speaker(tmp_path):
    utterances = [Utterance(id=f"u{i}", audio=tmp_path / f"{i}.wav", text="x", speaker=f"s{i % 4}")
                  for i in range(40)]
    options = TrainOptions(heldout_speaker=True, seed=3)
    train, held = split_heldout(utterances, options)
    voices = {u.speaker for u in held}
    assert len(voices) == 1 and len(held) == 10              # all of one speaker's utterances
    assert not voices & {u.speaker for u in train}           # whom training never hears
    assert split_heldout(utterances, options) == (train, held)
    # Fewer than 3 speakers: the random slice as before.
    pair = [Utterance(id=u.id, audio=u.audio, text="x", speaker=f"s{i % 2}") for i, u in enumerate(utterances)]
    assert split_heldout(pair, options) == split_heldout(pair, TrainOptions(seed=3))


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(learning_rate=0), dict(pack_seconds=3), dict(patience=0),
                                 dict(heldout_fraction=0.7), dict(batch_size=0),
                                 dict(selection="best"), dict(heldout_from=7), dict(fixed_epochs=0),
                                 dict(keep_share=0), dict(keep_share=1.5)])
def test_train_options_are_validated(bad):
    with pytest.raises(OptionsError):
        TrainOptions(**bad)


def test_lora_settings_are_validated():
    for bad in (dict(rank=0), dict(where="middle"), dict(targets=("conv1",)), dict(dropout=1.0)):
        with pytest.raises(OptionsError):
            LoraSettings(**bad)


def test_auto_placement_is_the_encoder_for_one_voice_and_both_for_a_group(tiny_whisper_dir, tmp_path, monkeypatch):
    assert LoraSettings().where == "auto"
    assert LoraSettings().resolved(1).where == "encoder" and LoraSettings().resolved(3).where == "both"
    assert LoraSettings(where="decoder").resolved(1).where == "decoder"  # asked for: kept
    monkeypatch.setattr(training, "heldout_wer", lambda *a, **k: 0.5)
    options = TrainOptions(epochs=1, pack_seconds=0, selection="heldout", min_heldout=2)
    for speakers, where in (("s", "encoder"), ("ab", "both")):
        utterances = [replace(u, speaker=speakers[i % len(speakers)]) for i, u in enumerate(tiny_utterances(tmp_path))]
        loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
        peft_model, result = train_adapter(loaded, utterances, LoraSettings(rank=2), options)
        names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert result.lora["where"] == where  # what the profile records: the placement used
        assert any(".decoder." in n for n in names) == (where == "both")


@pytest.mark.parametrize("where,expect_encoder,expect_decoder", [
    ("both", True, True), ("encoder", True, False), ("decoder", False, True)])
def test_lora_lands_where_asked(tiny_whisper_dir, where, expect_encoder, expect_decoder):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    peft_model = attach_lora(loaded.model, LoraSettings(rank=2, where=where))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any(".encoder." in n for n in names) == expect_encoder
    assert any(".decoder." in n for n in names) == expect_decoder
    assert any("encoder_attn" in n for n in names) == expect_decoder


def test_teacher_forcing_targets(tiny_whisper_dir):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    batcher = WhisperBatcher(loaded)
    batch = batcher([Example(sine(1.0), "Hello there."), Example(sine(2.0), "Hi.")])
    tokenizer = loaded.processor.tokenizer
    first_inputs = batch["decoder_input_ids"][0].tolist()
    assert first_inputs[:2] == [50257, 50362]  # <|startoftranscript|> <|notimestamps|>
    labels = batch["labels"][0].tolist()
    assert labels[0] == -100  # predicting <|notimestamps|> is not trained
    text_ids = [t for t in labels if t not in (-100, 50256)]
    assert tokenizer.decode(text_ids) == " Hello there."  # Whisper's leading space
    assert 50256 in labels  # end of text is a target
    assert batch["labels"][1].tolist()[-1] == -100  # the shorter row is padded out of the loss


def test_training_lowers_the_loss_and_keeps_the_best_epoch(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    # A random 16-wide model with 0.02-scale embeddings cannot express confident logits at
    # all; widen its final norm so that what LoRA learns can show in the loss.
    with torch.no_grad():
        loaded.model.model.decoder.layer_norm.weight.fill_(40.0)
    options = TrainOptions(epochs=10, learning_rate=3e-2, batch_size=4, pack_seconds=0, patience=10,
                           selection="heldout", min_heldout=2, warmup_fraction=0.0)
    # Both halves, as for a group: the widened decoder norm is what lets the loss move here.
    peft_model, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=4, where="both"),
                                       options)
    losses = [r.train_loss for r in result.history[1:]]
    assert losses[-1] < 0.7 * losses[0], losses  # measured: about 16 -> 9.5
    assert result.epochs_run == 10 and result.train_utterances == 8 and result.heldout_utterances == 2
    assert 0 < result.trainable_parameters < result.total_parameters
    assert result.best_heldout_wer == min(r.heldout_wer for r in result.history)
    assert result.history[0].epoch == 0 and result.history[0].train_loss is None


def test_adapter_round_trips_through_plain_peft(tiny_whisper_dir, tmp_path):
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=2, learning_rate=2e-2, pack_seconds=0, selection="heldout", min_heldout=2, patience=5)
    peft_model, _ = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=4), options)
    # Model selection may keep epoch 0 (B = 0, no change) on a random model: give the
    # adapter non-zero weights so that the round trip has something to carry.
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    features = torch.randn(1, 80, 3000)
    decoder_ids = torch.tensor([[50257, 50362, 1000, 2000]])
    with torch.no_grad():
        ours = peft_model(input_features=features, decoder_input_ids=decoder_ids).logits
        fresh = WhisperForConditionalGeneration.from_pretrained(str(tiny_whisper_dir))
        plain = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
        theirs = plain(input_features=features, decoder_input_ids=decoder_ids).logits
        base = WhisperForConditionalGeneration.from_pretrained(str(tiny_whisper_dir)).eval()
        unadapted = base(input_features=features, decoder_input_ids=decoder_ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, unadapted, atol=1e-4)  # the adapter really changes the model


def test_too_few_utterances(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    with pytest.raises(TrainingError, match="too few to adapt"):
        train_adapter(loaded, tiny_utterances(tmp_path, count=3))
    with pytest.raises(TrainingError, match="too few to hold some out.*--select fixed"):
        train_adapter(loaded, tiny_utterances(tmp_path, count=5), options=TrainOptions(selection="heldout"))


@pytest.mark.parametrize("count, selection, epochs", [(4, "fixed", None), (49, "fixed", None), (50, "heldout", 8)])
def test_auto_selection_holds_out_only_from_enough_utterances(count, selection, epochs):
    options = TrainOptions()
    assert options.selection == "auto" and options.selection_for(count) == selection
    assert options.epochs_for(count) == (epochs or training_options.fixed_schedule_epochs(count))
    assert TrainOptions(fixed_epochs=3).epochs_for(count) == (3 if selection == "fixed" else 8)
    assert TrainOptions(selection="heldout").selection_for(count) == "heldout"


def test_fixed_schedule_is_a_table_by_enrollment_size(monkeypatch):
    monkeypatch.setattr(training_options, "FIXED_SCHEDULE", ((0, 6), (10, 4), (30, 3)))
    assert [training_options.fixed_schedule_epochs(n) for n in (4, 9, 10, 29, 30, 200)] == [6, 6, 4, 4, 3, 3]


def test_fixed_selection_trains_on_every_utterance_and_keeps_the_last_epoch(tiny_whisper_dir, tmp_path,
                                                                            monkeypatch):
    from asr_adapt.adapt import training

    def never(*args, **kwargs):
        raise AssertionError("nothing is held out, nothing is judged")

    monkeypatch.setattr(training, "heldout_wer", never)
    monkeypatch.setattr(training, "heldout_loss", never)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    kept = {}
    _, result = train_adapter(loaded, tiny_utterances(tmp_path, count=6), LoraSettings(rank=2),
                              TrainOptions(fixed_epochs=3, pack_seconds=0, learning_rate=2e-2),
                              on_epoch=lambda record: kept.__setitem__(record.epoch, {
                                  k: v.detach().clone() for k, v in loaded.model.state_dict().items()
                                  if "lora_" in k}))
    assert result.selection == "fixed" and result.train_utterances == 6 and result.heldout_utterances == 0
    assert result.epochs_run == 3 and result.best_epoch == 3 and not result.stopped_early and result.improved
    assert result.baseline_heldout_wer is None and result.best_heldout_wer is None
    assert [r.heldout_wer for r in result.history] == [None] * 4
    final = {k: v for k, v in loaded.model.state_dict().items() if "lora_" in k}
    a_keys = [k for k in kept[3] if "lora_A" in k]
    b_keys = [k for k in kept[3] if "lora_B" in k]
    assert all(torch.equal(final[k], kept[3][k]) for k in a_keys)
    assert not all(torch.equal(kept[0][k], kept[3][k]) for k in a_keys)
    # Nothing held out vouches for the full deltas: the kept adapter holds half of them.
    assert result.keep_share == 0.5
    assert all(torch.allclose(final[k], 0.5 * kept[3][k]) for k in b_keys)
    assert any(kept[3][k].abs().sum() > 0 for k in b_keys)


@pytest.mark.parametrize("options, continued, share", [
    (dict(), False, 0.5), (dict(), True, 0.5), (dict(selection="heldout"), False, 1.0),
    (dict(selection="heldout"), True, 1.0),
    (dict(keep_share=0.8), True, 0.8), (dict(selection="last", keep_share=1.0), False, 1.0)])
def test_the_kept_share_of_the_deltas(options, continued, share):
    train = TrainOptions(**options)
    assert train.keep_share_for(train.selection_for(12), continued) == share


def test_training_can_start_from_a_saved_adapter(tiny_whisper_dir, tmp_path):
    """Continued LoRA (group -> personal): the saved adapter is epoch 0, its rank and
    placement are kept whatever the settings say, and training moves it on."""
    from safetensors.torch import load_file

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    peft_model, _ = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=4, where="both"),
                                  TrainOptions(fixed_epochs=1, pack_seconds=0, learning_rate=2e-2))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    peft_model.save_pretrained(tmp_path / "group")
    group = load_file(str(tmp_path / "group" / "adapter_model.safetensors"))
    fresh = resolve_model(str(tiny_whisper_dir), device="cpu")
    at_start = {}
    personal, result = train_adapter(fresh, tiny_utterances(tmp_path, count=5), LoraSettings(rank=2),
                                     TrainOptions(fixed_epochs=2, pack_seconds=0, learning_rate=2e-2),
                                     start_from=str(tmp_path / "group"),
                                     on_epoch=lambda record: record.epoch == 0 and at_start.update(
                                         {k: v.detach().clone() for k, v in personal_state(fresh).items()}))
    assert result.lora["rank"] == 4 and result.epochs_run == 2 and result.keep_share == 0.5
    assert any("decoder" in k for k in group) and any("encoder" in k for k in group)
    personal.save_pretrained(tmp_path / "personal")
    mine = load_file(str(tmp_path / "personal" / "adapter_model.safetensors"))
    assert set(mine) == set(group) and all(mine[k].shape == group[k].shape for k in group)
    assert all(torch.equal(at_start[k], group[k]) for k in group)  # epoch 0 is the group's adapter
    assert not all(torch.equal(mine[k], group[k]) for k in group)  # and training moved it


def personal_state(loaded) -> dict:
    """LoRA tensors of a loaded model (LoRA injected in place), keyed as PEFT saves them."""
    return {"base_model.model." + k.replace(".default.weight", ".weight"): v
            for k, v in loaded.model.state_dict().items() if "lora_" in k}


def test_utterance_without_text_is_refused(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    utterances = tiny_utterances(tmp_path)
    utterances[3] = Utterance(id="blank", audio=utterances[3].audio, text="  ")
    with pytest.raises(TrainingError, match="'blank' has no text"):
        train_adapter(loaded, utterances, options=TrainOptions(selection="heldout", min_heldout=2))


def _judged(monkeypatch, losses, wers=None):
    """Make the held-out losses follow ``losses`` and the WERs ``wers`` (epoch 0 first; every
    WER 50% when None)."""
    from asr_adapt.adapt import training

    sequence = iter(losses)
    wer_sequence = iter(wers) if wers is not None else None
    monkeypatch.setattr(training, "heldout_wer",
                        lambda *args, **kwargs: next(wer_sequence) if wer_sequence else 0.5)
    monkeypatch.setattr(training, "heldout_loss", lambda *args, **kwargs: next(sequence))


@pytest.mark.parametrize("min_epochs, expected", [(1, 1), (3, 3)])
def test_no_early_stop_before_min_epochs(tiny_whisper_dir, tmp_path, monkeypatch, min_epochs, expected):
    _judged(monkeypatch, [1.0] * 10, [0.5] + [0.6] * 9)  # every adapted epoch is worse
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=6, pack_seconds=0, selection="heldout", min_heldout=2, patience=1, min_epochs=min_epochs)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.epochs_run == expected and result.stopped_early and result.best_epoch == 0
    assert not result.improved


@pytest.mark.parametrize("losses, best", [
    ([1.0, 1.2, 1.3, 1.1, 1.4], 3),   # adapted losses above the base's: the adapter stays, the loss
                                      # picks among adapted epochs
    ([1.0, 0.9, 0.95, 0.8, 0.85], 3),
])
def test_an_adapter_tying_the_base_model_is_kept(tiny_whisper_dir, tmp_path, monkeypatch, losses, best):
    """Equal held-out WERs: an adapted epoch wins over the unadapted model whatever its loss."""
    _judged(monkeypatch, losses)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=4, pack_seconds=0, selection="heldout", min_heldout=2, patience=5)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.best_epoch == best and result.improved


def test_a_worse_adapter_is_not_kept(tiny_whisper_dir, tmp_path, monkeypatch):
    _judged(monkeypatch, [1.0, 0.5, 0.4, 0.3, 0.2], [0.5, 0.51, 0.55, 0.6, 0.52])
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=4, pack_seconds=0, selection="heldout", min_heldout=2, patience=5)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.best_epoch == 0 and not result.improved


def test_equal_heldout_wers_are_decided_by_heldout_loss(tiny_whisper_dir, tmp_path, monkeypatch):
    _judged(monkeypatch, [1.0, 0.9, 0.95, 0.8, 0.85])
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=4, pack_seconds=0, selection="heldout", min_heldout=2, patience=5)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.best_epoch == 3 and result.improved
    assert [r.heldout_loss for r in result.history] == [1.0, 0.9, 0.95, 0.8, 0.85]


def test_selection_last_trains_every_epoch_and_keeps_the_last(tiny_whisper_dir, tmp_path, monkeypatch):
    import torch

    _judged(monkeypatch, [1.0, 0.5, 0.9, 0.95, 0.99])  # held-out would pick epoch 1 and stop
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=4, pack_seconds=0, min_heldout=2, patience=1, min_epochs=1, selection="last")
    kept = {}
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options,
                              on_epoch=lambda record: kept.__setitem__(record.epoch, {
                                  k: v.detach().clone() for k, v in loaded.model.state_dict().items()
                                  if "lora_B" in k}))
    assert result.epochs_run == 4 and not result.stopped_early and result.best_epoch == 4
    final = {k: v for k, v in loaded.model.state_dict().items() if "lora_B" in k}
    assert all(torch.equal(final[k], kept[4][k]) for k in kept[4])
    assert not all(torch.equal(kept[1][k], kept[4][k]) for k in kept[4])


def test_heldout_loss_is_the_mean_token_loss(tiny_whisper_dir, tmp_path):
    from asr_adapt.models.whisper.batcher import WhisperBatcher
    from asr_adapt.adapt.examples import load_examples
    from asr_adapt.adapt.heldout import heldout_loss

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    batcher = WhisperBatcher(loaded)
    examples = load_examples(tiny_utterances(tmp_path)[:3], batcher.target_text)
    together = heldout_loss(loaded.model, batcher, examples, 3, contextlib.nullcontext())
    one_by_one = heldout_loss(loaded.model, batcher, examples, 1, contextlib.nullcontext())
    assert together == pytest.approx(one_by_one, rel=1e-4) and together > 0


def test_epoch_plan_without_short_windows_is_the_packing_as_before():
    examples = _examples([4, 7, 3, 9, 12, 5, 2, 6])
    options = TrainOptions(pack_seconds=20, batch_size=2)
    windows = pack_windows(examples, options, random.Random(5))
    from asr_adapt.adapt.examples import plan_epoch

    plan = plan_epoch(examples, options, random.Random(5))
    assert [w.text for batch, _ in plan for w in batch] == [w.text for w in windows]
    assert all(frames is None for _, frames in plan)


def test_epoch_plan_with_short_windows_keeps_every_utterance_once_and_each_step_affordable():
    from asr_adapt.adapt.examples import plan_epoch

    examples = _examples([4, 7, 3, 9, 12, 5, 2, 6, 3.5, 8, 1, 2.5])
    options = TrainOptions(pack_seconds=20, batch_size=2)
    plan = plan_epoch(examples, options, random.Random(0), short_share=0.5, backend=WhisperBackend())
    texts = [t for batch, _ in plan for w in batch for t in w.text.split()]
    assert sorted(texts) == sorted(e.text for e in examples)
    short = [(batch, frames) for batch, frames in plan if frames is not None]
    assert sum(len(batch) for batch, _ in short) == 6
    for batch, frames in short:
        longest = max(len(w.audio) for w in batch) / 16000
        assert frames % 2 == 0 and frames >= 100 * max(4, longest + 1)
        assert len(batch) * frames <= 2 * 3000  # no dearer than a step of two full windows


def test_short_window_training_reaches_the_encoder_adapters_and_is_recorded(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    peft_model = attach_lora(loaded.model, LoraSettings(rank=2))
    batcher = WhisperBatcher(loaded)
    windows = [Example(sine(1.5), "Hello there."), Example(sine(2.5), "Hi.")]
    full = batcher(windows)
    short = batcher(windows, 400)
    assert "encoder_frames" not in full and short["encoder_frames"] == 400
    loss = batcher.loss(loaded.model, short)
    loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "encoder" in n and "lora_" in n]
    assert torch.isfinite(loss) and any(g is not None and g.abs().sum() > 0 for g in grads)
    assert loss.item() != batcher.loss(loaded.model, full).item()  # it really read less

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    options = TrainOptions(epochs=1, pack_seconds=0, selection="heldout", min_heldout=2, short_window_share=0.5)
    _, result = train_adapter(loaded, tiny_utterances(tmp_path), LoraSettings(rank=2), options)
    assert result.options["short_window_share"] == 0.5 and result.epochs_run == 1
