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

import torch
from torch import nn

from asr_adapt.adapt.options import POOLINGS
from asr_adapt.core.errors import OptionsError



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


__all__ = ["DomainClassifier", "GradientReversal", "domain_loss", "pool_states", "reverse_gradient",
           "select_layer"]
