"""Fitting LoRA adapters to a speaker's labeled utterances.

Speed: Whisper's encoder always sees a 30 s window, so one short utterance per window
wastes most of the encoder's work. We pack several utterances (with short pauses between)
into each window, as in Whisper's own long-form training data; an epoch then costs a few
windows rather than one per utterance, with no change to what the encoder sees at
inference. Model selection and early stopping use greedy WER on held-out enrollment
utterances, decoded one per window exactly as at inference.

Domain confusion (optional, :mod:`asr_adapt.domain`): each step also draws packed windows of
the user's unlabeled audio. Labeled and unlabeled windows go through the encoder together;
the decoder and task loss see only the labeled ones, a domain head behind a gradient
reversal layer sees all of them. With domain confusion off, the loop is exactly the plain
one above (same batches, same random draws, same speed).

The loop is the same for every model family; what a batch holds, the loss, and the shared
encoder pass come from the model's backend (``loaded.engine.batcher``): Whisper's is
:class:`WhisperBatcher` here, CTC models' (wav2vec2 & co.) :class:`asr_adapt.ctc.CtcBatcher`, whose
windows hold only the audio they carry (no 30 s padding), so packing there saves the
per-utterance overhead rather than padding.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.audio.augment import SpecAugment, choose_factor, speed_perturb
from asr_adapt.adapt.domain import DomainClassifier, DomainOptions, domain_loss, select_layer
from asr_adapt.models.whisper.constants import FULL_WINDOW_FRAMES
from asr_adapt.models.whisper.encoder_window import window_frames
from asr_adapt.core.errors import OptionsError, AsrAdaptError
from asr_adapt.data.scoring import score
from asr_adapt.adapt.lora import LoraSettings, attach_lora, count_parameters
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.base import Example, LoadedModel
from asr_adapt.models.whisper.batcher import WhisperBatcher
from asr_adapt.models.whisper.text_style import to_whisper_style
from asr_adapt.models.transcriber import Transcriber
from asr_adapt.models.options import TranscribeOptions

log = logging.getLogger(__name__)



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
    #: Fewest labeled utterances we accept: fewer cannot fit and check an adapter.
    min_utterances: int = 8
    #: Stop once this many minutes have passed (None: no limit).
    time_budget_minutes: float | None = None
    #: Groups (3 or more speakers): hold out utterances of one whole speaker (seeded, at most
    #: ``max_heldout``) instead of a random slice, so that epochs are judged on a voice the
    #: adapter never heard, as a group profile is used.
    heldout_speaker: bool = False
    #: Which epoch's adapter is kept: "heldout" (the best on the held-out slice, with early
    #: stopping) or "last" (train every epoch and keep the last: for when the held-out slice
    #: cannot judge what matters, e.g. domain confusion aimed at another domain than the
    #: labeled one). The held-out WER is measured and reported either way.
    selection: str = "heldout"
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

    def __post_init__(self) -> None:
        # JSON and the CLI give lists; the options are frozen in the result as given.
        if isinstance(self.speed_factors, (list, tuple)):
            object.__setattr__(self, "speed_factors", tuple(
                float(f) if isinstance(f, (int, float)) and not isinstance(f, bool) else f for f in self.speed_factors))
        checks = [
            (isinstance(self.speed_factors, tuple), "speed factors must be a list of numbers"),
            (0 <= self.short_window_share <= 1, f"short window share must be 0-1, got {self.short_window_share!r}"),
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
            (self.selection in ("heldout", "last"), f"selection must be heldout or last, got {self.selection!r}"),
            (all(isinstance(f, float) and 0.5 <= f <= 2 for f in self.speed_factors),
             f"speed factors must be between 0.5 and 2, got {list(self.speed_factors)!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionsError(message)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float | None
    heldout_wer: float
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

    baseline_heldout_wer: float
    best_heldout_wer: float
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

    @property
    def improved(self) -> bool:
        """An adapted epoch was kept: its held-out WER was no worse than the unadapted
        model's (how the best epoch is chosen)."""
        return self.best_epoch > 0 and self.best_heldout_wer <= self.baseline_heldout_wer

    def to_dict(self) -> dict:
        data = asdict(self)
        data["improved"] = self.improved
        return data




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
               short_share: float = 0.0) -> list[tuple[list[Example], int | None]]:
    """One epoch's batches: ``(windows, encoder_frames)``, frames ``None`` for full 30 s
    windows. Without short windows: packed windows, ``batch_size`` per step, in packing order
    (as always). With ``short_share``, that share of the utterances (drawn anew each epoch) is
    batched alone by length into short windows, as many per step as cost about what a step
    of full windows costs, and all batches are shuffled together."""
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
    budget = options.batch_size * FULL_WINDOW_FRAMES
    group: list[Example] = []
    for example in short:
        frames = window_frames(len(example.audio), SHORT_WINDOW_MIN_SECONDS, FULL_WINDOW_FRAMES)
        if group and (len(group) + 1) * frames > budget:  # sorted: this example sets the width
            batches.append((group, window_frames(len(group[-1].audio), SHORT_WINDOW_MIN_SECONDS)))
            group = []
        group.append(example)
    if group:
        batches.append((group, window_frames(len(group[-1].audio), SHORT_WINDOW_MIN_SECONDS)))
    rng.shuffle(batches)
    return batches




def _load_examples(utterances: Sequence[Utterance],
                   target_text: Callable[[str, str], str] | None = None) -> list[Example]:
    """Audio and target text of each utterance; ``target_text(text, id)`` puts the text in
    the model's style or vocabulary (default: Whisper's style)."""
    target_text = target_text or (lambda text, _id: to_whisper_style(text))
    examples = []
    for u in utterances:
        if u.text is None or not u.text.strip():
            raise TrainingError(f"utterance '{u.id}' has no text; every enrollment utterance needs its transcript")
        audio = load_audio(u.audio)
        if len(audio) > 30 * SAMPLE_RATE:
            raise TrainingError(f"utterance '{u.id}' is {len(audio) / SAMPLE_RATE:.0f} s long; split enrollment "
                                "audio into utterances under 30 s")
        examples.append(Example(audio, target_text(u.text, u.id)))
    return examples


def heldout_wer(loaded: LoadedModel, examples: Sequence[Example], batch_size: int = 8) -> float:
    """Greedy WER on held-out examples, one utterance per window as at inference."""
    # Bound the output by the references' length: a hypothesis three times longer than the
    # longest reference is wrong anyway, and a looping model would otherwise cost minutes.
    tokenizer = loaded.processor.tokenizer
    longest = max(len(tokenizer(" " + e.text, add_special_tokens=False).input_ids) for e in examples)
    limit = min(440, max(16, 3 * longest))
    # Greedy: epochs are compared with each other, every epoch; a beam costs 2.4x.
    transcriber = Transcriber(loaded, TranscribeOptions(batch_size=batch_size, beam_size=1, max_new_tokens=limit))
    hypotheses = transcriber.transcribe_arrays([e.audio for e in examples])
    return score([e.text for e in examples], hypotheses).wer or 0.0


def heldout_loss(model, batcher: "WhisperBatcher", windows: Sequence[Example], batch_size: int, autocast) -> float:
    """Mean teacher-forced loss per target token on held-out windows (no gradients)."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(windows), batch_size):
            batch = batcher(windows[begin:begin + batch_size])
            count = int((batch["labels"] != -100).sum())
            with autocast:
                total += float(batcher.loss(model, batch)) * count
            tokens += count
    return total / max(tokens, 1)


class _DomainConfusion:
    """The domain head, the unlabeled windows, and one joint step of task + domain loss."""

    def __init__(self, loaded: LoadedModel, options: DomainOptions, train_options: TrainOptions,
                 unlabeled: Sequence[np.ndarray], seed: int) -> None:
        self.options = options
        self.train_options = train_options
        self.device = loaded.placement.device
        self.head = DomainClassifier(loaded.engine.hidden_size(loaded.model.config), options.hidden_size,
                                     options.pooling).to(self.device)
        self.unlabeled = [Example(audio, "") for audio in unlabeled]
        # Its own random stream: the labeled windows are drawn exactly as without it.
        self.rng = random.Random(seed + 1)
        self.queue: list[Example] = []
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.losses: list[float] = []
        self.correct = 0
        self.seen = 0
        self.lambda_ = 0.0

    def next_unlabeled(self, count: int) -> list[Example]:
        # Packed like the labeled windows, so that the head cannot tell domains apart by
        # how full a window is or where its pauses fall.
        while len(self.queue) < count:
            self.queue.extend(pack_windows(self.unlabeled, self.train_options, self.rng))
        taken, self.queue = self.queue[:count], self.queue[count:]
        return taken

    def loss(self, model, batcher: WhisperBatcher, windows: Sequence[Example], progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(task loss, domain loss) of one step; labeled and unlabeled share one encoder pass."""
        unlabeled = self.next_unlabeled(max(1, round(self.options.unlabeled_ratio * len(windows))))
        task, hidden_states, mask = batcher.joint_forward(model, windows, unlabeled)
        labeled = len(windows)
        states = select_layer(hidden_states, self.options.layer)
        domains = torch.tensor([0] * labeled + [1] * len(unlabeled))
        self.lambda_ = self.options.lambda_at(progress)
        logits = self.head(states, mask.to(states.device), self.lambda_)
        dloss, correct = domain_loss(logits, domains)
        self.correct += correct
        self.seen += len(domains)
        return task, dloss

    def record(self, dloss: torch.Tensor) -> None:
        self.losses.append(float(dloss.item()))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.seen if self.seen else None

    @property
    def mean_loss(self) -> float | None:
        return float(np.mean(self.losses)) if self.losses else None


def _check_unlabeled(labeled: int, unlabeled: Sequence[np.ndarray] | None, domain: DomainOptions | None,
                     options: TrainOptions) -> None:
    """The labeled-only and unlabeled-only cases, each with a message that says what to do."""
    if labeled == 0 and unlabeled:
        raise TrainingError("unlabeled audio alone cannot adapt a model; domain confusion needs labeled "
                            f"enrollment too (at least {options.min_utterances} transcribed utterances)")
    if domain is None or not domain.enabled:
        return
    seconds = sum(len(a) for a in unlabeled or ()) / SAMPLE_RATE
    if not unlabeled:
        raise TrainingError("domain confusion needs the user's unlabeled audio: pass --unlabeled PATH, or "
                            "keep some with: asr-adapt live --profile NAME --keep-audio")
    if seconds < domain.min_unlabeled_seconds:
        raise TrainingError(f"only {seconds:.0f} s of usable unlabeled audio; domain confusion needs at least "
                            f"{domain.min_unlabeled_seconds:.0f} s (a few minutes work best)")


def enrolled_speakers(utterances: Sequence[Utterance]) -> int:
    """How many voices an enrollment holds (utterances without a speaker count as one)."""
    return max(1, len({u.speaker for u in utterances if u.speaker}))


def train_adapter(loaded: LoadedModel, utterances: Sequence[Utterance], lora: LoraSettings | None = None,
                  options: TrainOptions | None = None, progress: bool = False,
                  on_epoch: Callable[[EpochRecord], None] | None = None,
                  compute_dtype: torch.dtype | None = None, domain: DomainOptions | None = None,
                  unlabeled: Sequence[np.ndarray] | None = None,
                  pseudo_labeled: Sequence[tuple[np.ndarray, str]] = ()):
    """Attach LoRA to ``loaded.model`` and fit it to ``utterances``.

    Returns ``(peft_model, result)``; the PEFT model holds the best adapter (by held-out
    WER; epoch 0 = the unadapted model if nothing beat it). ``loaded.model`` is modified in
    place (LoRA layers injected), so ``loaded`` transcribes with the adapter afterwards.
    Load the model in float32 for training; on CUDA, ``compute_dtype`` (bfloat16 or
    float16) runs the forward pass under autocast while the adapter stays float32.

    With ``domain.enabled``, ``unlabeled`` (16 kHz float32 arrays of the user's unlabeled
    audio, utterance-sized: see :mod:`asr_adapt.unlabeled`) drives domain confusion; the
    domain head trains alongside LoRA and is discarded afterwards. A non-finite loss or a
    runaway domain loss stops training (``result.diverged``); the best adapter so far is kept.

    ``pseudo_labeled`` ((audio, text) pairs the model transcribed itself, see
    :mod:`asr_adapt.self_training`) is trained on alongside the enrollment but never held
    out: epochs are judged on real transcripts only.
    """
    options = options or TrainOptions()
    labeled = [u for u in utterances if u.text is not None]
    lora = (lora or LoraSettings()).resolved(enrolled_speakers(labeled))
    _check_unlabeled(len(labeled), unlabeled, domain, options)
    confusion_on = domain is not None and domain.enabled
    if len(labeled) < options.min_utterances:
        raise TrainingError(f"{len(labeled)} labeled utterances are too few to adapt; record at least "
                            f"{options.min_utterances} (about a minute of speech), more helps")
    started = time.perf_counter()
    _seed_everything(options.seed)
    train_utts, heldout_utts = split_heldout(labeled, options)
    backend = loaded.engine
    batcher = backend.batcher(loaded)
    train_examples = _load_examples(train_utts, batcher.target_text)
    heldout_examples = _load_examples(heldout_utts, batcher.target_text)
    pseudo_examples = [Example(np.asarray(audio, dtype=np.float32), batcher.target_text(text, "pseudo-label"))
                       for audio, text in pseudo_labeled]
    for example in train_examples:
        if len(example.audio) < SAMPLE_RATE // 10:
            raise TrainingError("an enrollment utterance is shorter than 0.1 s; remove it and try again")
    for u, e in zip(train_utts, train_examples):
        problem = batcher.target_problem(e)
        if problem:
            raise TrainingError(f"the transcript of '{u.id}' {problem}")
    # A pseudo-label the decoder cannot take is left out, not an error: the user never wrote it.
    pseudo_examples = [e for e in pseudo_examples
                       if SAMPLE_RATE // 10 <= len(e.audio) <= 30 * SAMPLE_RATE and not batcher.target_problem(e)]
    labeled_train_count = len(train_examples)
    train_examples = train_examples + pseudo_examples

    peft_model = attach_lora(loaded.model, lora)
    model = loaded.model  # the same modules, LoRA injected in place
    backend.prepare_for_training(model)
    trainable, total = count_parameters(peft_model)

    rng = random.Random(options.seed)
    speed_rng = random.Random(options.seed + 1)  # its own stream: packing order stays as without it
    augmenter = SpecAugment() if options.spec_augment and hasattr(batcher, "augment") else None
    if augmenter is not None:
        batcher.generator.manual_seed(options.seed)
    # Short windows: Whisper only, and not with domain confusion (labeled and unlabeled
    # windows share one encoder pass there). What was used is what the result records.
    short_share = options.short_window_share if getattr(batcher, "fixed_window", False) and not confusion_on else 0.0
    first_epoch = plan_epoch(train_examples, options, random.Random(options.seed), short_share)
    windows_per_epoch = sum(len(windows) for windows, _ in first_epoch)
    steps_per_epoch = len(first_epoch)
    total_steps = steps_per_epoch * options.epochs
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    confusion = None
    if confusion_on:
        confusion = _DomainConfusion(loaded, domain, options, unlabeled, options.seed)
        select_layer((None,) * (backend.encoder_layers(loaded.model.config) + 1), domain.layer)  # fail before training
        head_parameters = list(confusion.head.parameters())
        optimizer = torch.optim.AdamW(
            [{"params": parameters},
             {"params": head_parameters, "lr": options.learning_rate * domain.head_lr_scale}],
            lr=options.learning_rate, weight_decay=options.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate, weight_decay=options.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(total_steps * options.warmup_fraction), total_steps)
    autocast = _autocast(loaded, compute_dtype)

    model.eval()
    # Held-out utterances packed once, in a fixed order, for the tie-breaking loss.
    heldout_windows = pack_windows(heldout_examples, options, random.Random(options.seed))

    def judge() -> tuple[float, float]:
        return (heldout_wer(loaded, heldout_examples),
                heldout_loss(model, batcher, heldout_windows, options.batch_size, autocast))

    baseline, baseline_loss = judge()
    # The best epoch has the lowest held-out WER; among equal WERs (common on a few
    # utterances), the lowest held-out loss.
    best_wer, best_loss, best_epoch, best_state = baseline, baseline_loss, 0, _lora_state(peft_model)
    history = [EpochRecord(0, None, baseline, round(time.perf_counter() - started, 2), heldout_loss=baseline_loss)]
    if on_epoch:
        on_epoch(history[0])
    log.info("held-out WER before adaptation: %.1f%%", 100 * baseline)
    bar = _progress(total_steps, progress)
    stale, stopped_early, epoch = 0, False, 0
    diverged: str | None = None
    deadline = started + options.time_budget_minutes * 60 if options.time_budget_minutes else None
    step = 0
    try:
        for epoch in range(1, options.epochs + 1):
            model.train()
            if options.speed_factors:
                epoch_examples = [_perturbed(e, choose_factor(options.speed_factors, speed_rng))
                                  for e in train_examples]
            else:
                epoch_examples = train_examples
            batches = plan_epoch(epoch_examples, options, rng, short_share)
            if augmenter is not None:
                batcher.augment = augmenter
            losses = []
            if confusion is not None:
                confusion.reset_epoch()
                confusion.head.train()
            for windows, frames in batches:
                if confusion is None:
                    batch = batcher(windows, frames) if frames else batcher(windows)
                    with autocast:
                        loss = batcher.loss(model, batch)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(parameters, options.max_grad_norm)
                else:
                    with autocast:
                        task, dloss = confusion.loss(model, batcher, windows, step / max(1, total_steps))
                    if not (torch.isfinite(task) and torch.isfinite(dloss)):
                        diverged = f"non-finite loss in epoch {epoch} (task {task.item():.3g}, domain {dloss.item():.3g})"
                        optimizer.zero_grad(set_to_none=True)
                        break
                    if domain.balance == "gradient":
                        _balanced_backward(task, dloss, parameters, head_parameters, domain.weight,
                                           confusion.lambda_)
                    else:
                        (task + domain.weight * dloss).backward()
                    torch.nn.utils.clip_grad_norm_(parameters, options.max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(head_parameters, options.max_grad_norm)
                    confusion.record(dloss)
                    loss = task
                step += 1
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                if bar is not None:
                    bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", best_wer=f"{100 * best_wer:.1f}%")
                    bar.update(1)
            if augmenter is not None:
                batcher.augment = None
            if diverged:
                log.warning("training stopped: %s", diverged)
                break
            model.eval()
            wer, loss_heldout = judge()
            record = EpochRecord(epoch, float(np.mean(losses)), wer, round(time.perf_counter() - started, 2),
                                 heldout_loss=loss_heldout)
            if confusion is not None:
                record.domain_loss, record.domain_accuracy = confusion.mean_loss, confusion.accuracy
                record.grl_lambda = round(confusion.lambda_, 4)
            history.append(record)
            if on_epoch:
                on_epoch(record)
            log.info("epoch %d: loss %.3f, held-out WER %.1f%%", epoch, record.train_loss, 100 * wer)
            if confusion is not None and record.domain_loss > domain.max_domain_loss:
                # The encoder now flips the head's guesses instead of confusing them: what
                # this epoch learned is not trusted, even if its held-out WER looks good.
                diverged = (f"domain loss {record.domain_loss:.2f} in epoch {epoch} is above "
                            f"{domain.max_domain_loss:g} (chance: 0.69); lower --domain-weight or --domain-lambda")
                log.warning("training stopped: %s", diverged)
                break
            if options.selection == "last":
                best_wer, best_loss, best_epoch = wer, loss_heldout, epoch
                best_state = _lora_state(peft_model)  # kept: a later diverged epoch falls back to it
            elif (wer, loss_heldout) < (best_wer, best_loss) or (best_epoch == 0 and wer <= best_wer):
                # A held-out WER equal to the unadapted model's keeps the adapter: a few
                # held-out utterances often tie, and the held-out loss of an early epoch is
                # no judge of it (speechocean762, 43 adults, seed 2: epoch 1 tied at 19.6%
                # with a higher loss, kept nothing; the same epoch elsewhere cut WER on
                # unseen speakers by a quarter). Among adapted epochs, the loss decides.
                best_wer, best_loss, best_epoch, best_state = wer, loss_heldout, epoch, _lora_state(peft_model)
                stale = 0
            else:
                stale += 1
            early = options.selection == "heldout" and stale >= options.patience and epoch >= options.min_epochs
            if early or \
                    (deadline and time.perf_counter() > deadline):
                stopped_early = epoch < options.epochs
                break
    finally:
        if augmenter is not None:
            batcher.augment = None
        if bar is not None:
            bar.close()
    if best_state is not None:
        peft_model.load_state_dict(best_state, strict=False)
    model.eval()
    result = TrainResult(
        baseline_heldout_wer=baseline, best_heldout_wer=best_wer, best_epoch=best_epoch, epochs_run=epoch,
        stopped_early=stopped_early, train_utterances=labeled_train_count,
        heldout_utterances=len(heldout_examples),
        train_seconds_of_audio=round(sum(len(e.audio) for e in train_examples[:labeled_train_count]) / SAMPLE_RATE, 1),
        pseudo_labeled_pieces=len(pseudo_examples),
        pseudo_labeled_seconds_of_audio=round(sum(len(e.audio) for e in pseudo_examples) / SAMPLE_RATE, 1),
        windows_per_epoch=windows_per_epoch, trainable_parameters=trainable, total_parameters=total,
        wall_seconds=round(time.perf_counter() - started, 1), peak_memory_mb=_peak_memory_mb(loaded),
        lora=lora.to_dict(), options={**asdict(options), "short_window_share": short_share}, history=history)
    if confusion is not None:
        result.domain = domain.to_dict()
        result.unlabeled_pieces = len(confusion.unlabeled)
        result.unlabeled_seconds_of_audio = round(sum(len(e.audio) for e in confusion.unlabeled) / SAMPLE_RATE, 1)
        result.final_domain_accuracy = confusion.accuracy
        result.diverged = diverged
    return peft_model, result


def _perturbed(example: Example, factor: float) -> Example:
    """``example`` at ``factor`` times its speed; unchanged where slowing it down would push
    it past Whisper's 30 s window (its text would then describe audio the model never sees)."""
    if len(example.audio) / factor > 30 * SAMPLE_RATE:
        return example
    return Example(speed_perturb(example.audio, factor), example.text)


def _balanced_backward(task: torch.Tensor, dloss: torch.Tensor, parameters: list, head_parameters: list,
                       weight: float, lambda_: float) -> None:
    """Set gradients: the task's, plus the reversed domain gradient rescaled to ``weight *
    lambda_`` times the task gradient's norm on the adapters it reaches; the head gets its
    own loss's gradient. (The reversal already multiplied the domain gradient by -lambda_;
    normalising it would cancel the schedule, so lambda_ is put back.)"""
    task_grads = torch.autograd.grad(task, parameters, retain_graph=True, allow_unused=True)
    domain_grads = torch.autograd.grad(dloss, parameters + head_parameters, allow_unused=True)
    reached = [i for i, g in enumerate(domain_grads[:len(parameters)]) if g is not None]
    task_norm = torch.sqrt(sum((task_grads[i].float() ** 2).sum() for i in reached
                               if task_grads[i] is not None)) if reached else torch.tensor(0.0)
    domain_norm = torch.sqrt(sum((domain_grads[i].float() ** 2).sum() for i in reached)) if reached else torch.tensor(0.0)
    scale = float(weight * lambda_ * task_norm / domain_norm) if float(domain_norm) > 0 else 0.0
    for i, parameter in enumerate(parameters):
        grad = task_grads[i]
        if domain_grads[i] is not None and scale:
            grad = domain_grads[i] * scale if grad is None else grad + domain_grads[i] * scale
        parameter.grad = grad
    for parameter, grad in zip(head_parameters, domain_grads[len(parameters):]):
        parameter.grad = grad


def _lora_state(peft_model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in peft_model.state_dict().items() if "lora_" in k}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(loaded: LoadedModel, compute_dtype: torch.dtype | None):
    dtype = compute_dtype or loaded.placement.dtype
    if loaded.placement.device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype)
    import contextlib

    return contextlib.nullcontext()


def _peak_memory_mb(loaded: LoadedModel) -> float | None:
    if loaded.placement.device.type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    except (ImportError, AttributeError):
        return None


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="adapting", leave=False)
