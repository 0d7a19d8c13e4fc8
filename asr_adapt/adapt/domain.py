"""Domain confusion (Ganin & Lempitsky, 2015): a gradient reversal layer and a domain head.

A small classifier reads pooled encoder states and guesses whether a window came from the
labeled enrollment (domain 0) or from the user's unlabeled audio (domain 1). Between the
encoder and the classifier sits a gradient reversal layer: identity going forward, gradient
times ``-lambda`` going back. The classifier learns to tell the domains apart while the
encoder's LoRA weights learn to make that impossible, so what LoRA fits on the few labels
carries over to the rest of the user's audio.

Only the LoRA weights and this head train. The head is never part of the PEFT adapter: it
is of no use at inference and is discarded after training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from asr_adapt.core.errors import OptionsError

#: How encoder frames become one vector per window.
POOLINGS = ("mean", "attentive", "stats")
#: Binary cross-entropy of a classifier that knows nothing (always 0.5): ln 2.
CHANCE_LOSS = math.log(2.0)


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; ``-lambda`` times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.lambda_ * grad_output, None


def reverse_gradient(inputs: torch.Tensor, lambda_: float) -> torch.Tensor:
    """Functional gradient reversal: ``inputs`` forward, ``-lambda_ * grad`` backward."""
    return _ReverseGradient.apply(inputs, lambda_)


class GradientReversal(nn.Module):
    """Gradient reversal as a module; set ``lambda_`` as training progresses."""

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(inputs, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"


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




def pool_states(states: torch.Tensor, mask: torch.Tensor, pooling: str = "mean",
                scores: torch.Tensor | None = None) -> torch.Tensor:
    """Pool (batch, frames, dim) states over the frames ``mask`` marks.

    mean: masked mean; stats: mean and standard deviation concatenated (2 * dim);
    attentive: a softmax over ``scores`` (batch, frames) restricted to the mask.
    """
    weights = mask.to(states.dtype)[..., None]
    count = weights.sum(dim=1).clamp_min(1.0)
    if pooling == "attentive":
        if scores is None:
            raise ValueError("attentive pooling needs scores")
        scores = scores.float().masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1).to(states.dtype)[..., None]
        return (attention * states).sum(dim=1)
    mean = (weights * states).sum(dim=1) / count
    if pooling == "mean":
        return mean
    if pooling == "stats":
        variance = (weights * (states - mean[:, None, :]) ** 2).sum(dim=1) / count
        return torch.cat([mean, torch.sqrt(variance + 1e-6)], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}")


class DomainClassifier(nn.Module):
    """Gradient reversal -> pooling over frames -> MLP -> one logit (1 = unlabeled domain).

    The reversal sits before the pooling so that the attentive pooling's own weights are
    trained to discriminate too (they belong to the head, not to the encoder).
    """

    def __init__(self, dim: int, hidden_size: int = 256, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise OptionsError(f"domain pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.reversal = GradientReversal(0.0)
        # Normalise first: encoder states of different layers differ in scale by 10-100x,
        # and one learning rate must serve whichever layer is chosen.
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.Linear(dim, 1) if pooling == "attentive" else None
        width = 2 * dim if pooling == "stats" else dim
        self.mlp = nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))

    def forward(self, states: torch.Tensor, mask: torch.Tensor, lambda_: float | None = None) -> torch.Tensor:
        if lambda_ is not None:
            self.reversal.lambda_ = float(lambda_)
        states = self.norm(self.reversal(states).float())
        scores = self.attention(states).squeeze(-1) if self.attention is not None else None
        pooled = pool_states(states, mask.to(states.device), self.pooling, scores)
        return self.mlp(pooled).squeeze(-1)


def domain_loss(logits: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Binary cross-entropy (mean over windows) and the number of correct guesses."""
    targets = domains.to(logits.device, torch.float32)
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
    correct = int(((logits.detach() > 0).float() == targets).sum().item())
    return loss, correct


def select_layer(hidden_states: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
    """The encoder states of ``layer`` from ``output_hidden_states`` (index 0 = embeddings)."""
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise OptionsError(f"domain layer {layer} does not exist: this encoder has "
                           f"{len(hidden_states) - 1} layers (use 0-{len(hidden_states) - 1} or -1)")
    return hidden_states[layer]


__all__ = ["CHANCE_LOSS", "POOLINGS", "DomainClassifier", "DomainOptions", "GradientReversal", "domain_loss",
           "grl_lambda", "pool_states", "reverse_gradient", "select_layer"]
