"""Domain confusion inside the training loop: the domain head with its stream of unlabeled
windows, the joint task + domain loss of a step, the gradient balance, and the checks that
the user gave enough unlabeled audio.

Each step also draws packed windows of the user's unlabeled audio. Labeled and unlabeled
windows go through the encoder together (``batcher.joint_forward``); the task loss sees only
the labeled ones, a domain head behind a gradient reversal layer (:mod:`.domain`) sees all
of them. The head has its own random stream, so the labeled windows are drawn exactly as
without it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from asr_adapt.adapt.domain import DomainClassifier, domain_loss, select_layer
from asr_adapt.adapt.options import DomainOptions
from asr_adapt.adapt.examples import pack_windows
from asr_adapt.adapt.options import TrainingError, TrainOptions
from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.base import Example, LoadedModel


class DomainConfusion:
    """The domain head, the unlabeled windows, and one joint step of task + domain loss."""

    def __init__(self, loaded: LoadedModel, options: DomainOptions, train_options: TrainOptions,
                 unlabeled: Sequence[np.ndarray], seed: int) -> None:
        self.options = options
        self.train_options = train_options
        self.device = loaded.placement.device
        self.head = DomainClassifier(loaded.engine.hidden_size(loaded.model.config), options.hidden_size,
                                     options.pooling).to(self.device)
        #: The head's weights: trained alongside the adapters (their own learning rate).
        self.head_parameters = list(self.head.parameters())
        self.unlabeled = [Example(audio, "") for audio in unlabeled]
        # Its own random stream: the labeled windows are drawn exactly as without it.
        self.rng = random.Random(seed + 1)
        self.queue: list[Example] = []
        self.reset_epoch()

    def reset_epoch(self) -> None:
        """Start an epoch's figures afresh (loss, accuracy, reversal strength)."""
        self.losses: list[float] = []
        self.correct = 0
        self.seen = 0
        self.lambda_ = 0.0

    def next_unlabeled(self, count: int) -> list[Example]:
        """The next ``count`` packed unlabeled windows (a fresh shuffle when the queue runs out)."""
        # Packed like the labeled windows, so that the head cannot tell domains apart by
        # how full a window is or where its pauses fall.
        while len(self.queue) < count:
            self.queue.extend(pack_windows(self.unlabeled, self.train_options, self.rng))
        taken, self.queue = self.queue[:count], self.queue[count:]
        return taken

    def loss(self, model, batcher, windows: Sequence[Example], progress: float) -> tuple[torch.Tensor, torch.Tensor]:
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

    def backward(self, task: torch.Tensor, dloss: torch.Tensor, parameters: list, max_grad_norm: float) -> None:
        """Set one step's gradients: the task's plus the reversed domain gradient (balanced as
        ``options.balance`` says), clipped separately on the adapters and the head; the
        domain loss is recorded for the epoch's figures."""
        if self.options.balance == "gradient":
            balanced_backward(task, dloss, parameters, self.head_parameters, self.options.weight, self.lambda_)
        else:
            (task + self.options.weight * dloss).backward()
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
        torch.nn.utils.clip_grad_norm_(self.head_parameters, max_grad_norm)
        self.record(dloss)

    def record(self, dloss: torch.Tensor) -> None:
        """Count one step's domain loss into the epoch's mean."""
        self.losses.append(float(dloss.item()))

    @property
    def accuracy(self) -> float | None:
        """Share of windows the head told apart this epoch (guessed before each update)."""
        return self.correct / self.seen if self.seen else None

    @property
    def mean_loss(self) -> float | None:
        """The head's mean loss over this epoch's steps."""
        return float(np.mean(self.losses)) if self.losses else None


def check_unlabeled(labeled: int, unlabeled: Sequence[np.ndarray] | None, domain: DomainOptions | None,
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


def balanced_backward(task: torch.Tensor, dloss: torch.Tensor, parameters: list, head_parameters: list,
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


__all__ = ["DomainConfusion", "balanced_backward", "check_unlabeled"]
