"""What an epoch trains on: the held-out split, the examples loaded from utterances (and
pseudo-labels), utterances packed into windows, and each epoch's plan of batches.

Speed: Whisper's encoder always sees a 30 s window, so one short utterance per window
wastes most of the encoder's work. Utterances are packed (with short pauses between) into
windows of up to ``pack_seconds``, as in Whisper's own long-form training data; an epoch then
costs a few windows rather than one per utterance. A family whose encoder reads a fixed
window (``Backend.full_window_frames``) may also train some utterances alone in short
windows (:func:`plan_epoch`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from asr_adapt.adapt.options import HELDOUT_MIN_UTTERANCES, TrainingError, TrainOptions
from asr_adapt.audio.augment import speed_perturb
from asr_adapt.audio.io import MAX_TAKE_SAMPLES, MIN_TAKE_SAMPLES, SAMPLE_RATE, load_audio
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.base import Backend, Example

#: Longest utterance training takes: 30 s, Whisper's window (enrollment audio is split into
#: utterances under it).
MAX_UTTERANCE_SAMPLES = MAX_TAKE_SAMPLES
#: Shortest enrollment utterance training takes (0.1 s), and shortest pseudo-label kept.
MIN_UTTERANCE_SAMPLES = MIN_TAKE_SAMPLES


def split_heldout(utterances: Sequence[Utterance], options: TrainOptions) -> tuple[list[Utterance], list[Utterance]]:
    """A seeded, reproducible held-out slice of the enrollment (never trained on)."""
    count = round(len(utterances) * options.heldout_fraction)
    count = max(options.min_heldout, min(options.max_heldout, count))
    order = list(range(len(utterances)))
    random.Random(options.seed).shuffle(order)
    held = set(order[:count])
    speakers = sorted({u.speaker for u in utterances if u.speaker})
    if options.heldout_speaker and len(speakers) >= 3:
        voice = random.Random(options.seed).choice(speakers)
        theirs = [i for i in order if utterances[i].speaker == voice][:options.max_heldout]
        if len(theirs) >= options.min_heldout and len(utterances) - len(theirs) >= 2:
            held = set(theirs)
    train = [u for i, u in enumerate(utterances) if i not in held]
    heldout = [u for i, u in enumerate(utterances) if i in held]
    return train, heldout


def split_for(labeled: Sequence[Utterance], options: TrainOptions,
              selection: str) -> tuple[list[Utterance], list[Utterance]]:
    """(trained on, held out) for a run choosing its epoch by ``selection``: everything and
    nothing for the fixed schedule, :func:`split_heldout` otherwise."""
    if selection == "fixed":
        return list(labeled), []
    if len(labeled) < HELDOUT_MIN_UTTERANCES:
        raise TrainingError(f"{len(labeled)} labeled utterances are too few to hold some out; record at least "
                            f"{HELDOUT_MIN_UTTERANCES}, or use the fixed schedule (--select fixed)")
    return split_heldout(labeled, options)


def pack_windows(examples: Sequence[Example], options: TrainOptions, rng: random.Random) -> list[Example]:
    """Shuffle and pack utterances into windows of at most ``pack_seconds``."""
    order = list(examples)
    rng.shuffle(order)
    if options.pack_seconds == 0:
        return order
    limit = int(options.pack_seconds * SAMPLE_RATE)
    gap = np.zeros(int(options.pack_gap * SAMPLE_RATE), dtype=np.float32)
    windows: list[Example] = []
    audio: list[np.ndarray] = []
    texts: list[str] = []
    length = 0
    for example in order:
        extra = len(example.audio) + (len(gap) if audio else 0)
        if audio and length + extra > limit:
            windows.append(Example(np.concatenate(audio), " ".join(texts)))
            audio, texts, length = [], [], 0
            extra = len(example.audio)
        if audio:
            audio.append(gap)
        audio.append(example.audio)
        texts.append(example.text)
        length += extra
    if audio:
        windows.append(Example(np.concatenate(audio), " ".join(texts)))
    return windows


#: The shortest short window in training: what live transcription gives the base model.
SHORT_WINDOW_MIN_SECONDS = 4.0


def plan_epoch(examples: Sequence[Example], options: TrainOptions, rng: random.Random,
               short_share: float = 0.0, backend: Backend | None = None) -> list[tuple[list[Example], int | None]]:
    """One epoch's batches: ``(windows, encoder_frames)``, frames ``None`` for full 30 s
    windows. Without short windows: packed windows, ``batch_size`` per step, in packing order
    (as always). With ``short_share``, that share of the utterances (drawn anew each epoch) is
    batched alone by length into short windows, as many per step as cost about what a step
    of full windows costs, and all batches are shuffled together. Short windows are the
    ``backend``'s fixed window shortened (:meth:`Backend.short_window_frames`)."""
    if short_share <= 0:
        windows = pack_windows(examples, options, rng)
        return [(windows[b:b + options.batch_size], None) for b in range(0, len(windows), options.batch_size)]
    order = list(range(len(examples)))
    rng.shuffle(order)
    count = round(short_share * len(examples))
    short = sorted((examples[i] for i in order[:count]), key=lambda e: len(e.audio))
    windows = pack_windows([examples[i] for i in order[count:]], options, rng)
    batches: list[tuple[list[Example], int | None]] = [
        (windows[b:b + options.batch_size], None) for b in range(0, len(windows), options.batch_size)]
    budget = options.batch_size * backend.full_window_frames

    def frames_for(example: Example) -> int:
        return backend.short_window_frames(len(example.audio), SHORT_WINDOW_MIN_SECONDS)

    group: list[Example] = []
    for example in short:
        if group and (len(group) + 1) * frames_for(example) > budget:  # sorted: this example sets the width
            batches.append((group, frames_for(group[-1])))
            group = []
        group.append(example)
    if group:
        batches.append((group, frames_for(group[-1])))
    rng.shuffle(batches)
    return batches


def load_examples(utterances: Sequence[Utterance], target_text: Callable[[str, str], str]) -> list[Example]:
    """Audio and target text of each utterance; ``target_text(text, id)`` puts the text in
    the model's style or vocabulary (the batcher's ``target_text``)."""
    examples = []
    for u in utterances:
        if u.text is None or not u.text.strip():
            raise TrainingError(f"utterance '{u.id}' has no text; every enrollment utterance needs its transcript")
        audio = load_audio(u.audio)
        if len(audio) > MAX_UTTERANCE_SAMPLES:
            raise TrainingError(f"utterance '{u.id}' is {len(audio) / SAMPLE_RATE:.0f} s long; split enrollment "
                                "audio into utterances under 30 s")
        examples.append(Example(audio, target_text(u.text, u.id)))
    return examples


def enrolled_speakers(utterances: Sequence[Utterance]) -> int:
    """How many voices an enrollment holds (utterances without a speaker count as one)."""
    return max(1, len({u.speaker for u in utterances if u.speaker}))


def perturbed(example: Example, factor: float) -> Example:
    """``example`` at ``factor`` times its speed; unchanged where slowing it down would push
    it past Whisper's 30 s window (its text would then describe audio the model never sees)."""
    if len(example.audio) / factor > MAX_UTTERANCE_SAMPLES:
        return example
    return Example(speed_perturb(example.audio, factor), example.text)


@dataclass
class TrainingSet:
    """One run's examples: what it trains on and what judges its epochs."""

    #: The enrollment's training slice, then the pseudo-labels.
    train: list[Example]
    #: Never trained on; real transcripts only.
    heldout: list[Example]
    #: Pseudo-labels kept (also at the end of ``train``).
    pseudo: list[Example]
    #: How many of ``train`` come from the enrollment.
    labeled_count: int


def load_training_set(batcher, train_utterances: Sequence[Utterance], heldout_utterances: Sequence[Utterance],
                      pseudo_labeled: Sequence[tuple[np.ndarray, str]]) -> TrainingSet:
    """Load the enrollment's examples in the batcher's target style and check that each can
    be trained on (TrainingError says which cannot); pseudo-labels the model cannot take are
    left out, not an error: the user never wrote them."""
    train = load_examples(train_utterances, batcher.target_text)
    heldout = load_examples(heldout_utterances, batcher.target_text)
    pseudo = [Example(np.asarray(audio, dtype=np.float32), batcher.target_text(text, "pseudo-label"))
              for audio, text in pseudo_labeled]
    for example in train:
        if len(example.audio) < MIN_UTTERANCE_SAMPLES:
            raise TrainingError("an enrollment utterance is shorter than 0.1 s; remove it and try again")
    for u, e in zip(train_utterances, train):
        problem = batcher.target_problem(e)
        if problem:
            raise TrainingError(f"the transcript of '{u.id}' {problem}")
    pseudo = [e for e in pseudo
              if MIN_UTTERANCE_SAMPLES <= len(e.audio) <= MAX_UTTERANCE_SAMPLES and not batcher.target_problem(e)]
    return TrainingSet(train + pseudo, heldout, pseudo, len(train))


def seconds_of_audio(examples: Sequence[Example]) -> float:
    """Total length of ``examples`` in seconds, to a tenth (as results report it)."""
    return round(sum(len(e.audio) for e in examples) / SAMPLE_RATE, 1)


__all__ = ["MAX_UTTERANCE_SAMPLES", "MIN_UTTERANCE_SAMPLES", "SHORT_WINDOW_MIN_SECONDS", "TrainingSet",
           "enrolled_speakers", "load_examples", "load_training_set", "pack_windows", "perturbed", "plan_epoch",
           "seconds_of_audio", "split_for", "split_heldout"]
