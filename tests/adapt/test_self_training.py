"""Self-training: pseudo-labels, their filter, and training on them (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.errors import OptionsError
from asr_adapt.models.loading import resolve_model
from asr_adapt.adapt.self_training import PseudoLabels, pseudo_label, spread_minutes, transcript_losses
from asr_adapt.adapt.options import SelfTrainOptions
from asr_adapt.data.unlabeled import UnlabeledPiece
from conftest import sine


def _pieces(count: int, seconds: float = 2.0) -> list[UnlabeledPiece]:
    return [UnlabeledPiece(source=f"p{i}.wav", start=0.0, audio=sine(seconds, freq=150 + 20 * i))
            for i in range(count)]


@pytest.mark.parametrize("options", [dict(keep_share=0), dict(keep_share=1.5), dict(max_minutes=0),
                                     dict(beam_size=0), dict(max_words_per_second=0), dict(min_kept=0)])
def test_bad_options_are_refused(options):
    with pytest.raises(OptionsError):
        SelfTrainOptions(**options)


def test_spread_minutes_takes_evenly_and_at_most_the_minutes():
    pieces = _pieces(30, seconds=6.0)  # 3 minutes
    chosen = spread_minutes(pieces, 1.0)
    assert sum(len(p.audio) for p in chosen) / SAMPLE_RATE <= 60.0
    assert len(chosen) == 10 and chosen[0] is pieces[0] and chosen[-1] is pieces[-1]  # spread, not a prefix
    assert spread_minutes(pieces, None) == pieces and spread_minutes(pieces, 5.0) == pieces


def test_the_surest_share_is_kept_and_nonsense_dropped(tiny_whisper_dir, monkeypatch):
    """Empty, looping and too-dense transcripts are dropped with their reason; of the rest the
    lowest-loss share is kept, and the kept audio matches the kept labels."""
    from asr_adapt.adapt import self_training
    from asr_adapt.models.transcriber import Transcriber

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    pieces = _pieces(8)
    texts = ["One two.", "", "la " * 60, "Three four.", "Five six.", "Seven.", " ".join(f"{w}{i}" for i, w in enumerate(["alpha", "brick", "cedar", "delta", "ember"] * 6)), "Eight."]
    monkeypatch.setattr(Transcriber, "transcribe_arrays", lambda self, audios: list(texts[:len(audios)]))
    losses = [0.5, None, 0.1, 0.9, 0.2, 0.7, 0.3, 0.4]
    monkeypatch.setattr(self_training, "transcript_losses", lambda loaded, audios, t: losses[:len(audios)])
    labels = pseudo_label(loaded, pieces, SelfTrainOptions(keep_share=0.6))
    assert [label.dropped for label in labels.labels] == [None, "empty", "loops", None, None, None, "too dense", None]
    # Usable: 0 (0.5), 3 (0.9), 4 (0.2), 5 (0.7), 7 (0.4); the surest 60% = 3 of 5: 4, 7, 0.
    assert [i for i, label in enumerate(labels.labels) if label.kept] == [0, 4, 7]
    pairs = labels.pairs()
    assert [text for _, text in pairs] == ["One two.", "Five six.", "Eight."]
    assert all(np.array_equal(audio, pieces[i].audio) for (audio, _), i in zip(pairs, [0, 4, 7]))
    summary = labels.summary()
    assert summary["kept"] == 3 and summary["pieces"] == 8 and summary["loss_threshold"] == 0.5
    assert summary["dropped"] == {"empty": 1, "loops": 1, "too dense": 1}


def test_transcript_losses_rank_the_model_own_words_above_others(tiny_whisper_dir):
    """A model is surer of what it would write than of other text: the loss of its own
    greedy transcript is lower than that of an unrelated sentence."""
    from asr_adapt.models.transcriber import Transcriber
    from asr_adapt.models.options import TranscribeOptions

    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    audio = sine(2.0)
    own = Transcriber(loaded, TranscribeOptions(beam_size=1, max_new_tokens=8)).transcribe_arrays([audio])[0]
    if not own.strip():
        pytest.skip("the random tiny model wrote nothing for this clip")
    mine, other, empty = transcript_losses(loaded, [audio, audio, audio],
                                           [own, "Completely unrelated words about giraffes.", ""])
    assert empty is None and mine < other


def test_pseudo_labels_are_trained_on_but_never_held_out(tiny_whisper_dir, monkeypatch):
    from asr_adapt.adapt import training
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.data.manifest import Utterance
    from asr_adapt.adapt.options import TrainOptions
    from asr_adapt.adapt.training import train_adapter

    import soundfile as sf

    folder = tiny_whisper_dir.parent / "st_enroll"
    folder.mkdir(exist_ok=True)
    utterances = []
    for i in range(10):
        path = folder / f"u{i}.wav"
        sf.write(path, sine(1.0 + 0.1 * i, freq=200 + 30 * i), SAMPLE_RATE)
        utterances.append(Utterance(id=f"u{i}", audio=path, text=f"Word number {i}.", speaker="ann"))
    pseudo = [(sine(1.5, freq=500 + 10 * i), f"Pseudo label {i}.") for i in range(6)]
    pseudo.append((sine(0.05), "Too short to train on."))  # left out, not an error
    judged: list[list[str]] = []
    real_wer = training.heldout_wer
    monkeypatch.setattr(training, "heldout_wer",
                        lambda loaded, examples, **kw: judged.append([e.text for e in examples]) or real_wer(loaded, examples))
    trained: list[str] = []
    real_plan = training.plan_epoch
    monkeypatch.setattr(training, "plan_epoch", lambda examples, *a, **k: trained.extend(e.text for e in examples)
                        or real_plan(examples, *a, **k))
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    _, result = train_adapter(loaded, utterances, LoraSettings(rank=2), TrainOptions(epochs=1, pack_seconds=0),
                              pseudo_labeled=pseudo)
    assert result.pseudo_labeled_pieces == 6 and result.pseudo_labeled_seconds_of_audio == 9.0
    assert result.train_utterances + result.heldout_utterances == 10  # the enrollment's counts, as before
    assert all("Pseudo" not in text for texts in judged for text in texts)
    assert {f"Pseudo label {i}." for i in range(6)} <= set(trained)
    assert "Too short to train on." not in trained


def test_pseudo_labels_summary_without_any_kept():
    labels = PseudoLabels([], SelfTrainOptions())
    assert labels.pairs() == [] and labels.summary()["kept"] == 0 and labels.summary()["loss_threshold"] is None


@pytest.mark.parametrize("round_two_wer,kept_round", [(0.20, 2), (0.25, 2), (0.30, 1)])
def test_the_better_round_on_held_out_speech_is_kept(tmp_path, monkeypatch, round_two_wer, kept_round):
    """Round two wins ties (it has heard more of the user); a worse round two is dropped
    with a warning, and round one's model is what gets saved."""
    from types import SimpleNamespace

    from asr_adapt.profiles import adaptation
    from asr_adapt.adapt.self_training import PseudoLabel

    def result(wer):
        return SimpleNamespace(best_heldout_wer=wer, best_epoch=2, improved=True)

    labels = PseudoLabels([PseudoLabel("a.wav", 0.0, 2.0, f"Text {i}.", 0.1 * i, kept=True) for i in range(10)],
                          SelfTrainOptions(), [sine(2.0)] * 10)
    monkeypatch.setattr(adaptation, "pseudo_label", lambda *a, **k: labels)
    monkeypatch.setattr(adaptation, "resolve_model", lambda *a, **k: "fresh model")
    monkeypatch.setattr(adaptation, "train_adapter", lambda *a, **k: ("peft two", result(round_two_wer)))
    profile = SimpleNamespace(info=SimpleNamespace(base_model="m"), reports_dir=tmp_path / "reports")
    collected = SimpleNamespace(pieces=[], arrays=lambda: [])
    loaded, peft_model, kept, summary = adaptation._second_round(
        profile, "round one model", "peft one", result(0.25), collected, [], None, None, SelfTrainOptions(),
        device="cpu", progress=False, on_epoch=None, compute_dtype=None, domain=None)
    assert summary["kept_round"] == kept_round
    assert (loaded, peft_model) == (("fresh model", "peft two") if kept_round == 2 else ("round one model", "peft one"))
    assert ("warning" in summary) == (kept_round == 1)
    assert (tmp_path / "reports").is_dir() and summary["labels_file"].endswith(".jsonl")


def test_with_nothing_held_out_round_two_is_kept():
    """The fixed schedule holds nothing out: the rounds tie, and the tie goes to round two."""
    from types import SimpleNamespace

    from asr_adapt.adapt.self_training import round_two_wins

    unjudged = SimpleNamespace(improved=True, best_heldout_wer=None)
    assert round_two_wins(unjudged, unjudged)
    assert round_two_wins(SimpleNamespace(improved=True, best_heldout_wer=0.2),
                          SimpleNamespace(improved=True, best_heldout_wer=0.2))
    assert not round_two_wins(SimpleNamespace(improved=True, best_heldout_wer=0.2),
                              SimpleNamespace(improved=True, best_heldout_wer=0.3))
