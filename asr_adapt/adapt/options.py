"""What training takes and gives: its options (training, domain confusion, self-training; each
validated in one place), the record of each epoch, the result, and the error for enrollments
that cannot train an adapter.

Importing this module loads no torch: the CLI and stored profiles read these types without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from asr_adapt.core.errors import AsrAdaptError, OptionsError

#: Binary cross-entropy of a classifier that knows nothing (always 0.5): ln 2.
CHANCE_LOSS = math.log(2.0)


class TrainingError(AsrAdaptError):
    """Enrollment data that cannot train an adapter (too little, no text, too long)."""


@dataclass(frozen=True)
class TrainOptions:
    """How to train. Validated here, once."""

    epochs: int = 8
    learning_rate: float = 1e-3
    #: 30-second windows per optimizer step.
    batch_size: int = 2
    #: Pack utterances into windows of at most this many seconds (0: one per window).
    pack_seconds: float = 28.0
    #: Silence between packed utterances, in seconds.
    pack_gap: float = 0.4
    heldout_fraction: float = 0.1
    min_heldout: int = 3
    max_heldout: int = 24
    #: Stop after this many epochs without a better held-out result...
    patience: int = 3
    #: ...but never before this many epochs: a held-out slice of a few minutes holds a
    #: handful of utterances, and the first epochs (still warming up) judge noisily. With
    #: an earlier stop (patience 2, no minimum), 1 of 3 seeds on the sample speaker and a
    #: speechocean group stopped before adaptation had a chance to help.
    min_epochs: int = 4
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    #: Fewest labeled utterances we accept (held-out selection needs ``HELDOUT_MIN_UTTERANCES``).
    min_utterances: int = 4
    #: Stop once this many minutes have passed (None: no limit).
    time_budget_minutes: float | None = None
    #: Groups (3 or more speakers): hold out utterances of one whole speaker (seeded, at most
    #: ``max_heldout``) instead of a random slice, so that epochs are judged on a voice the
    #: adapter never heard, as a group profile is used.
    heldout_speaker: bool = False
    #: Which epoch's adapter is kept: "heldout" (the best on the held-out slice, with early
    #: stopping), "last" (train every epoch and keep the last: for when the held-out slice
    #: cannot judge what matters, e.g. domain confusion aimed at another domain than the
    #: labeled one; the held-out WER is measured and reported), "fixed" (no held-out slice:
    #: train on every utterance for :meth:`epochs_for` epochs and keep the last), or "auto"
    #: (the default): "fixed" below ``heldout_from`` utterances, "heldout" from there. Why:
    #: a held-out slice of one to three utterances cannot tell epochs apart (speechocean762,
    #: 12 utterances a speaker: ties on 26.1% or 0.0%, and 3 of 12 speakers ended worse than
    #: unadapted), while a schedule fitted on other speakers does not need one (BENCHMARKS.md).
    selection: str = "auto"
    #: "auto" selection: enrollments with at least this many transcribed utterances hold a
    #: slice out (10%, at least 5 utterances) and choose the epoch on it.
    heldout_from: int = 50
    #: "fixed" selection: epochs to train (None: the schedule fitted on speechocean762's
    #: train-split speakers, by enrollment size: :data:`FIXED_SCHEDULE`). The learning
    #: rate follows an ``epochs``-long run's schedule and stops where this one stops, as
    #: held-out early stopping would (and as the schedule was fitted).
    fixed_epochs: int | None = None
    #: Speed perturbation: every epoch, each training utterance is played at a speed drawn
    #: from these factors (e.g. (0.9, 1.0, 1.1)); empty: off.
    speed_factors: tuple[float, ...] = ()
    #: SpecAugment frequency and time masks on Whisper's input features while training.
    #: (wav2vec2-family models mask their own hidden states in training, as their config says.)
    spec_augment: bool = False
    #: Share of the training utterances that each epoch sees alone in a short encoder window
    #: (the utterance plus 1 s, at least 4 s) instead of packed into a 30 s window. Live
    #: transcription reads short windows (4x cheaper steps) with adapters trained on short
    #: windows only (share 1.0, the default); an adapter that never saw them fails there, and
    #: one that saw both reads best in 30 s windows (BENCHMARKS.md). Offline accuracy was the
    #: same with 1.0 as with 0.0 on the sample speaker (3 seeds). Whisper only; 0 with domain
    #: confusion (its labeled and unlabeled windows share one encoder pass).
    short_window_share: float = 1.0
    #: The share of the trained deltas the kept adapter holds (its LoRA B matrices scaled
    #: once, before it is saved; WiSE-FT's interpolation toward the base model). None: 0.5
    #: for the fixed schedule (nothing held out vouches for the full adapter), also when it
    #: continues a group's adapter, 1 otherwise. Measured on 10 speechocean762 speakers, 12
    #: utterances each (BENCHMARKS.md, "Real voices"): at 1.0 the median cut was 0.0% with
    #: two speakers 4.5 and 6.8 points worse; at 0.5, 12.7% (pooled 37.5% -> 29.5%), nobody
    #: worse, and the generic sets no worse (-16.7%, +0.7%). Stacked on a group adapter at 4
    #: utterances (20 speakers), 0.5 instead of 1 took the cost on synthetic voices from +73%
    #: to +6.2% (outside speakers +3.5% -> -0.2%) and the median cut from 15.6% to 19.2%
    #: (the pooled cut fell, 30.0% -> 23.4%).
    keep_share: float | None = None

    def __post_init__(self) -> None:
        # JSON and the CLI give lists; the options are frozen in the result as given.
        if isinstance(self.speed_factors, (list, tuple)):
            object.__setattr__(self, "speed_factors", tuple(
                float(f) if isinstance(f, (int, float)) and not isinstance(f, bool) else f for f in self.speed_factors))
        checks = [
            (isinstance(self.speed_factors, tuple), "speed factors must be a list of numbers"),
            (0 <= self.short_window_share <= 1, f"short window share must be 0-1, got {self.short_window_share!r}"),
            (self.keep_share is None or 0 < self.keep_share <= 1,
             f"adapter keep share must be in (0, 1], got {self.keep_share!r}"),
            (isinstance(self.epochs, int) and 1 <= self.epochs <= 200, f"epochs must be 1-200, got {self.epochs!r}"),
            (0 < self.learning_rate < 1, f"learning rate must be in (0, 1), got {self.learning_rate!r}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size!r}"),
            (self.pack_seconds == 0 or 5 <= self.pack_seconds <= 30, f"pack seconds must be 0 or 5-30, got {self.pack_seconds!r}"),
            (0 <= self.pack_gap <= 2, f"pack gap must be 0-2 s, got {self.pack_gap!r}"),
            (0 < self.heldout_fraction < 0.5, f"held-out fraction must be in (0, 0.5), got {self.heldout_fraction!r}"),
            (1 <= self.min_heldout <= self.max_heldout, "held-out bounds must satisfy 1 <= min <= max"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience!r}"),
            (isinstance(self.min_epochs, int) and self.min_epochs >= 1,
             f"min epochs must be >= 1, got {self.min_epochs!r}"),
            (0 <= self.warmup_fraction < 1, f"warmup fraction must be in [0, 1), got {self.warmup_fraction!r}"),
            (self.min_utterances >= 2, "min utterances must be >= 2"),
            (self.time_budget_minutes is None or self.time_budget_minutes > 0, "time budget must be positive"),
            (self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}"),
            (isinstance(self.heldout_from, int) and self.heldout_from >= HELDOUT_MIN_UTTERANCES,
             f"held-out selection needs at least {HELDOUT_MIN_UTTERANCES} utterances, got {self.heldout_from!r}"),
            (self.fixed_epochs is None or (isinstance(self.fixed_epochs, int) and 1 <= self.fixed_epochs <= 200),
             f"fixed epochs must be 1-200, got {self.fixed_epochs!r}"),
            (all(isinstance(f, float) and 0.5 <= f <= 2 for f in self.speed_factors),
             f"speed factors must be between 0.5 and 2, got {list(self.speed_factors)!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionsError(message)

    def selection_for(self, utterances: int) -> str:
        """The selection rule a run on ``utterances`` labeled utterances uses ("auto" decided)."""
        if self.selection != "auto":
            return self.selection
        return "heldout" if utterances >= self.heldout_from else "fixed"

    def keep_share_for(self, selection: str, continued: bool) -> float:
        """The share of the trained deltas kept, for a run with ``selection`` ("auto"
        decided) that ``continued`` a saved adapter or trained fresh LoRA (the same share
        either way since the stacking measurement; the argument says what the run was)."""
        if self.keep_share is not None:
            return self.keep_share
        return 0.5 if selection == "fixed" else 1.0

    def epochs_for(self, utterances: int) -> int:
        """How many epochs a run on ``utterances`` labeled utterances trains at most."""
        if self.selection_for(utterances) != "fixed":
            return self.epochs
        if self.fixed_epochs is not None:
            return self.fixed_epochs
        return fixed_schedule_epochs(utterances)


#: The selection rules (see :attr:`TrainOptions.selection`).
SELECTIONS = ("auto", "heldout", "last", "fixed")
#: Fewest utterances a held-out selection can split (3 held out, the rest trained on).
HELDOUT_MIN_UTTERANCES = 8
#: Fitted schedule for "fixed" selection: (fewest utterances, epochs), the largest bracket
#: that fits applies. Fitted on speechocean762 train-split speakers with
#: ``recipes/bench_personal.py --config trace`` (8 epochs on all utterances, each epoch
#: scored): the median relative cut peaked at epochs 2-4 for 4, 8 and 12 utterances (3:
#: 42.9%, 42.9%, 44.0%; 8: 35.7%, 28.6%, 28.6%) while the cost on other voices grew with
#: every epoch; 3 was as good as the best at every size (BENCHMARKS.md, "Real voices").
FIXED_SCHEDULE: tuple[tuple[int, int], ...] = ((0, 3),)


def fixed_schedule_epochs(utterances: int) -> int:
    """Epochs for a "fixed" run on ``utterances`` labeled utterances (:data:`FIXED_SCHEDULE`)."""
    return max(bracket for bracket in FIXED_SCHEDULE if utterances >= bracket[0])[1]


@dataclass
class EpochRecord:
    """One epoch's figures: its mean training loss and how it judged on the held-out slice
    (epoch 0: the unadapted model, which trains nothing)."""

    epoch: int
    train_loss: float | None
    #: None: no held-out slice ("fixed" selection).
    heldout_wer: float | None
    seconds: float
    #: Teacher-forced loss on the held-out windows: breaks ties between equal WERs.
    heldout_loss: float | None = None
    #: Domain confusion only: the head's mean loss and accuracy over the epoch's steps
    #: (guessed before each update), and the reversal strength at the epoch's end.
    domain_loss: float | None = None
    domain_accuracy: float | None = None
    grl_lambda: float | None = None


@dataclass
class TrainResult:
    """What training did, for the profile's metrics and the user's report."""

    #: None for both: no held-out slice ("fixed" selection).
    baseline_heldout_wer: float | None
    best_heldout_wer: float | None
    best_epoch: int                 # 0 = the unadapted model was best
    epochs_run: int
    stopped_early: bool
    train_utterances: int
    heldout_utterances: int
    train_seconds_of_audio: float
    windows_per_epoch: int
    trainable_parameters: int
    total_parameters: int
    wall_seconds: float
    peak_memory_mb: float | None
    lora: dict
    options: dict
    history: list[EpochRecord] = field(default_factory=list)
    #: Domain confusion settings (None: off) and what it saw and did.
    domain: dict | None = None
    unlabeled_pieces: int = 0
    unlabeled_seconds_of_audio: float = 0.0
    #: Self-training: pseudo-labelled pieces trained on besides the enrollment.
    pseudo_labeled_pieces: int = 0
    pseudo_labeled_seconds_of_audio: float = 0.0
    #: The domain head's accuracy in the last epoch run (0.5 = fully confused).
    final_domain_accuracy: float | None = None
    #: Why training stopped on a runaway loss, or None.
    diverged: str | None = None
    #: The selection rule used ("auto" decided): "heldout", "last" or "fixed".
    selection: str = "heldout"
    #: The share of the trained deltas the kept adapter holds (see TrainOptions.keep_share).
    keep_share: float = 1.0

    @property
    def improved(self) -> bool:
        """An adapted epoch was kept: its held-out WER was no worse than the unadapted
        model's (how the best epoch is chosen), or the fixed schedule ran (no held-out slice
        to judge it: the schedule was measured on other speakers)."""
        if self.best_epoch <= 0:
            return False
        if self.best_heldout_wer is None or self.baseline_heldout_wer is None:
            return True
        return self.best_heldout_wer <= self.baseline_heldout_wer

    def to_dict(self) -> dict:
        """The result as stored in a profile's metrics (with ``improved``)."""
        data = asdict(self)
        data["improved"] = self.improved
        return data




#: How encoder frames become one vector per window.
POOLINGS = ("mean", "attentive", "stats")


def grl_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's schedule ``2 / (1 + exp(-gamma p)) - 1``: 0 at p = 0, ~1 at p = 1.

    Starting at 0 lets the head learn to discriminate before the encoder is pushed against
    it (early on its gradients are noise, and reversing noise only harms the task).
    """
    p = min(1.0, max(0.0, float(progress)))
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


@dataclass(frozen=True)
class DomainOptions:
    """Domain confusion settings. Validated here, once; off unless ``enabled``."""

    enabled: bool = False
    #: How strongly the encoder is pushed to confuse the head; see ``balance``. 0.1: on a
    #: synthetic channel shift (3 seeds) 0.1 gained 5.7% relative over LoRA-only and 0.3
    #: lost 14.9%; on adults -> children 0.3 gained 1.9% and 0.1 about nothing (BENCHMARKS.md).
    weight: float = 0.1
    #: "gradient": on the adapters the reversed domain gradient gets ``weight`` times the
    #: norm of the task gradient there (times lambda), whatever the two losses' scales.
    #: "loss": the plain weighted sum task + weight * domain loss. Why the default is
    #: "gradient": on Whisper tiny.en the domain loss's gradient on the encoder adapters is
    #: 2-4% of the task loss's (measured: 0.1-0.23 vs 5.4), so with a loss weight of 0.3
    #: Adam saw almost only the task and domain confusion did nothing measurable.
    balance: str = "gradient"
    #: The reversal strength reached at the end of training (lambda_max * grl_lambda(p)).
    lambda_max: float = 1.0
    #: Sharpness of the lambda schedule.
    gamma: float = 10.0
    #: Encoder layer whose states the head reads: 0 = after the convolutions, -1 = the
    #: encoder's output (after its final layer norm); 1..L = after that block.
    layer: int = -1
    pooling: str = "mean"
    #: Unlabeled windows per labeled window in each optimizer step.
    unlabeled_ratio: float = 1.0
    #: Width of the head's hidden layer.
    hidden_size: int = 256
    #: Learning rate of the head, as a multiple of the LoRA learning rate.
    head_lr_scale: float = 1.0
    #: Fewest seconds of usable unlabeled audio worth adapting to.
    min_unlabeled_seconds: float = 30.0
    #: An epoch whose mean domain loss exceeds this (chance is ln 2 = 0.69) means the
    #: adversarial game has run away (the encoder flips the head's predictions rather than
    #: confusing them): training stops and keeps the best adapter so far.
    max_domain_loss: float = 3.0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.enabled, bool), f"enabled must be true or false, got {self.enabled!r}"),
            (0 < self.weight <= 100, f"domain loss weight must be in (0, 100], got {self.weight!r}"),
            (self.balance in ("gradient", "loss"), f"domain balance must be gradient or loss, got {self.balance!r}"),
            (0 < self.lambda_max <= 10, f"domain lambda must be in (0, 10], got {self.lambda_max!r}"),
            (0 < self.gamma <= 100, f"domain gamma must be in (0, 100], got {self.gamma!r}"),
            (isinstance(self.layer, int) and -64 <= self.layer <= 64,
             f"domain layer must be an encoder layer index (-1 = output), got {self.layer!r}"),
            (self.pooling in POOLINGS, f"domain pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"),
            (0.25 <= self.unlabeled_ratio <= 8, f"unlabeled ratio must be 0.25-8, got {self.unlabeled_ratio!r}"),
            (isinstance(self.hidden_size, int) and 4 <= self.hidden_size <= 4096,
             f"domain head hidden size must be 4-4096, got {self.hidden_size!r}"),
            (0 < self.head_lr_scale <= 100, f"head learning-rate scale must be in (0, 100], got {self.head_lr_scale!r}"),
            (self.min_unlabeled_seconds >= 0, "min unlabeled seconds must be >= 0"),
            (self.max_domain_loss > CHANCE_LOSS,
             f"max domain loss must exceed chance (ln 2 = {CHANCE_LOSS:.2f}), got {self.max_domain_loss!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionsError(message)

    def lambda_at(self, progress: float) -> float:
        return self.lambda_max * grl_lambda(progress, self.gamma)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SelfTrainOptions:
    """How unlabeled audio is pseudo-labelled and filtered. Validated here, once."""

    #: Share of the usable pseudo-labels kept, the most confident first.
    keep_share: float = 0.7
    #: Label at most this many minutes of unlabeled audio (pieces taken evenly; None: all).
    #: Decoding with a beam costs about a second per piece on a 2-core CPU.
    max_minutes: float | None = 60.0
    #: Beam used to transcribe the unlabeled audio (1: greedy, cheaper, a little worse).
    beam_size: int = 5
    #: A transcript with more words per second than this is a hallucination, not speech.
    max_words_per_second: float = 5.0
    #: Fewest pseudo-labels worth a second round.
    min_kept: int = 8

    def __post_init__(self) -> None:
        checks = [
            (0 < self.keep_share <= 1, f"pseudo-label keep share must be in (0, 1], got {self.keep_share!r}"),
            (self.max_minutes is None or self.max_minutes > 0,
             f"self-training minutes must be positive, got {self.max_minutes!r}"),
            (isinstance(self.beam_size, int) and 1 <= self.beam_size <= 16,
             f"self-training beam must be 1-16, got {self.beam_size!r}"),
            (self.max_words_per_second > 0, "max words per second must be positive"),
            (isinstance(self.min_kept, int) and self.min_kept >= 1, "min kept pseudo-labels must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionsError(message)

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["CHANCE_LOSS", "FIXED_SCHEDULE", "HELDOUT_MIN_UTTERANCES", "POOLINGS", "SELECTIONS", "DomainOptions",
           "EpochRecord", "SelfTrainOptions", "TrainOptions", "TrainResult", "TrainingError", "fixed_schedule_epochs",
           "grl_lambda"]
