"""Self-training: the user's unlabeled audio, transcribed by the model, teaches the adapter.

A few minutes of transcribed enrollment are often all a user will read aloud, while
unlabeled recordings of the same voice (or group) are cheap: meetings, dictation, what
``live --keep-audio`` kept. Self-training (pseudo-labelling, as in "noisy student") uses
them in two rounds:

1. an adapter is trained on the labeled enrollment, as without self-training;
2. the model with that adapter transcribes the unlabeled pieces (beam search). Each
   transcript gets a confidence: the model's mean loss per token on its own transcript
   (teacher-forced; low = the model is sure). Empty, looping and implausibly dense
   transcripts are dropped, and of the rest the surest ``keep_share`` is kept;
3. a fresh adapter is trained on the enrollment plus the kept pseudo-labels. The held-out
   slice stays labeled-only, so epochs are judged against real transcripts.

Why the confidence filter matters (BENCHMARKS.md, speechocean762 adults): transcripts of
unseen accented speakers were 38% wrong in all, 20% in the surest 70%.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.adapt.options import SelfTrainOptions

if TYPE_CHECKING:  # the CLI builds its flags from the options without loading transformers
    from asr_adapt.models.base import LoadedModel

log = logging.getLogger(__name__)




@dataclass
class PseudoLabel:
    """One unlabeled piece, what the model heard in it, and whether it is trusted."""

    source: str
    start: float
    seconds: float
    text: str
    #: Mean loss per token of ``text`` under the model that wrote it (lower: surer).
    loss: float | None
    kept: bool = False
    #: Why it was dropped before ranking ("empty", "loops", "too dense"), or None.
    dropped: str | None = None


@dataclass
class PseudoLabels:
    """The labelled pieces (in input order) and the audio of those kept."""

    labels: list[PseudoLabel]
    options: SelfTrainOptions
    kept_audio: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def kept(self) -> list[PseudoLabel]:
        return [label for label in self.labels if label.kept]

    def pairs(self) -> list[tuple[np.ndarray, str]]:
        """(audio, text) of the kept pseudo-labels, for :func:`~asr_adapt.adapt.training.train_adapter`."""
        return list(zip(self.kept_audio, (label.text for label in self.kept)))

    def summary(self) -> dict:
        kept = self.kept
        dropped: dict[str, int] = {}
        for label in self.labels:
            if label.dropped:
                dropped[label.dropped] = dropped.get(label.dropped, 0) + 1
        return {"pieces": len(self.labels), "kept": len(kept),
                "kept_minutes": round(sum(label.seconds for label in kept) / 60, 2),
                "dropped": dropped,
                "loss_threshold": max((label.loss for label in kept), default=None),
                **{f"option_{k}": v for k, v in self.options.to_dict().items()}}


def round_two_wins(first, second) -> bool:
    """Whether self-training's second round (a :class:`~asr_adapt.adapt.options.TrainResult`) is
    kept over the first: it beat the unadapted model and is no worse on the held-out slice.
    A tie goes to round two: it has heard more of the user's speech, and a slice of a few
    utterances often ties (speechocean762 seed 0: both 9.5%, unseen speakers 32.2% -> 26.6%)."""
    if second.best_heldout_wer is None or first.best_heldout_wer is None:
        return bool(second.improved)  # nothing held out ("fixed" schedule): a tie, as above
    return bool(second.improved and second.best_heldout_wer <= first.best_heldout_wer)


def spread_minutes(pieces: Sequence, minutes: float | None) -> list:
    """At most ``minutes`` of ``pieces`` (each with ``.audio``), taken evenly across them."""
    pieces = list(pieces)
    total = sum(len(p.audio) for p in pieces) / SAMPLE_RATE / 60
    if minutes is None or total <= minutes:
        return pieces
    count = max(1, int(len(pieces) * minutes / total))
    return [pieces[i] for i in np.linspace(0, len(pieces) - 1, count).round().astype(int)]


def transcript_losses(loaded: "LoadedModel", audios: Sequence[np.ndarray], texts: Sequence[str]) -> list[float | None]:
    """Mean teacher-forced loss per token of each ``texts[i]`` given ``audios[i]`` under
    ``loaded`` (None for an empty text). One piece at a time: exact per piece, any backend."""
    from asr_adapt.models.base import Example

    batcher = loaded.engine.batcher(loaded)
    losses: list[float | None] = []
    with torch.no_grad():
        for audio, text in zip(audios, texts):
            if not text.strip():
                losses.append(None)
                continue
            batch = batcher([Example(np.asarray(audio, dtype=np.float32), batcher.target_text(text, "pseudo"))])
            losses.append(float(batcher.loss(loaded.model, batch)))
    return losses


def pseudo_label(loaded: "LoadedModel", pieces: Sequence, options: SelfTrainOptions | None = None,
                 progress: bool = False) -> PseudoLabels:
    """Transcribe unlabeled ``pieces`` (:class:`~asr_adapt.data.unlabeled.UnlabeledPiece`) with
    ``loaded`` (its adapter in place) and keep the surest ``options.keep_share`` of them."""
    from asr_adapt.models.transcriber import Transcriber
    from asr_adapt.models.repetition import is_runaway
    from asr_adapt.models.options import TranscribeOptions

    options = options or SelfTrainOptions()
    chosen = spread_minutes(pieces, options.max_minutes)
    audios = [p.audio for p in chosen]
    transcriber = Transcriber(loaded, TranscribeOptions(beam_size=options.beam_size))
    if progress:
        from tqdm import tqdm

        texts = []
        for begin in tqdm(range(0, len(audios), 8), desc="pseudo-labels", unit="batch", leave=False):
            texts += transcriber.transcribe_arrays(audios[begin:begin + 8])
    else:
        texts = transcriber.transcribe_arrays(audios)
    losses = transcript_losses(loaded, audios, texts)
    labels = []
    for piece, text, loss in zip(chosen, texts, losses):
        seconds = len(piece.audio) / SAMPLE_RATE
        words = len(text.split())
        dropped = ("empty" if not words else "loops" if is_runaway(text)
                   else "too dense" if words / max(seconds, 1e-3) > options.max_words_per_second else None)
        labels.append(PseudoLabel(source=str(piece.source), start=round(float(piece.start), 2),
                                  seconds=round(seconds, 2), text=text, loss=loss, dropped=dropped))
    usable = sorted((i for i, label in enumerate(labels) if label.dropped is None and label.loss is not None),
                    key=lambda i: labels[i].loss)
    keep = set(usable[: int(round(options.keep_share * len(usable)))])
    for i in keep:
        labels[i].kept = True
    result = PseudoLabels(labels, options, [audios[i] for i in sorted(keep)])
    log.info("pseudo-labels: kept %d of %d pieces", len(keep), len(labels))
    return result
