"""The transfer-learning lecture picture: encoder states of labeled vs unlabeled audio, in 2-D.

Each utterance becomes one vector (its encoder states at one layer, averaged over the frames
that hold audio). Before and after adaptation, the vectors of both domains are projected on
their first two principal components (PCA by SVD, in torch: no new dependency), and a
linear probe measures how separable the domains are (cross-validated accuracy: 1.0 = two
clouds a line can split, 0.5 = indistinguishable). Domain confusion should pull the clouds
together and the probe toward 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.files import save_figure_atomic
from asr_adapt.adapt.domain import select_layer


@dataclass
class ProjectionPanel:
    """One state of the model: 2-D points, their domains (0 labeled, 1 unlabeled), the probe."""

    title: str
    points: np.ndarray = field(repr=False)
    domains: np.ndarray = field(repr=False)
    probe_accuracy: float
    explained: tuple[float, float]


@dataclass
class Projection:
    """Before and after panels, and how they were made."""

    before: ProjectionPanel
    after: ProjectionPanel
    layer: int
    labeled: int
    unlabeled: int

    def to_dict(self) -> dict:
        return {"layer": self.layer, "labeled": self.labeled, "unlabeled": self.unlabeled,
                "probe_accuracy_before": round(self.before.probe_accuracy, 4),
                "probe_accuracy_after": round(self.after.probe_accuracy, 4)}


@torch.no_grad()
def pooled_states(loaded, audios: Sequence[np.ndarray], layer: int = -1, batch_size: int = 8) -> np.ndarray:
    """(utterances, d_model): mean encoder states at ``layer`` over each utterance's frames."""
    backend = loaded.engine
    rows = []
    for begin in range(0, len(audios), batch_size):
        chunk = [np.asarray(a, dtype=np.float32)[: 30 * SAMPLE_RATE] for a in audios[begin:begin + batch_size]]
        hidden_states, mask = backend.encoder_states(loaded, chunk)
        states = select_layer(hidden_states, layer).float()
        mask = mask.to(states.device)
        weights = mask[..., None].float()
        rows.append(((states * weights).sum(1) / weights.sum(1)).cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """First two principal components of ``vectors`` and the variance share of each."""
    x = torch.as_tensor(vectors, dtype=torch.float64)
    x = x - x.mean(0, keepdim=True)
    _, singular, vh = torch.linalg.svd(x, full_matrices=False)
    k = min(2, vh.shape[0])
    points = (x @ vh[:k].T).numpy()
    if k < 2:
        points = np.pad(points, ((0, 0), (0, 2 - k)))
    variance = singular ** 2
    share = (variance / variance.sum().clamp_min(1e-12)).tolist() + [0.0, 0.0]
    return points.astype(np.float32), (float(share[0]), float(share[1]))


def probe_accuracy(vectors: np.ndarray, domains: np.ndarray, folds: int = 4, seed: int = 0,
                   steps: int = 200, l2: float = 1e-2) -> float:
    """Cross-validated accuracy of a logistic-regression probe telling the domains apart.

    Standardised features, L2-regularised, full-batch gradient descent: small, deterministic
    and dependency-free. Folds are stratified by domain.
    """
    x_all = torch.as_tensor(vectors, dtype=torch.float32)
    y_all = torch.as_tensor(domains, dtype=torch.float32)
    generator = np.random.default_rng(seed)
    fold_of = np.zeros(len(domains), dtype=int)
    for value in (0, 1):
        where = np.flatnonzero(domains == value)
        generator.shuffle(where)
        fold_of[where] = np.arange(len(where)) % folds
    correct = 0
    for fold in range(folds):
        test = torch.as_tensor(fold_of == fold)
        train = ~test
        if test.sum() == 0 or len(set(domains[train.numpy()].tolist())) < 2:
            continue
        mean, std = x_all[train].mean(0), x_all[train].std(0).clamp_min(1e-6)
        x_train, x_test = (x_all[train] - mean) / std, (x_all[test] - mean) / std
        weight = torch.zeros(x_all.shape[1], requires_grad=True)
        bias = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = x_train @ weight + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_all[train]) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            guesses = ((x_test @ weight + bias) > 0).float()
        correct += int((guesses == y_all[test]).sum())
    return correct / len(domains) if len(domains) else 0.5


def make_panel(title: str, labeled: np.ndarray, unlabeled: np.ndarray) -> ProjectionPanel:
    vectors = np.concatenate([labeled, unlabeled])
    domains = np.array([0] * len(labeled) + [1] * len(unlabeled))
    points, explained = pca_2d(vectors)
    return ProjectionPanel(title, points, domains, probe_accuracy(vectors, domains), explained)


def domain_projection(loaded, peft_model, labeled_audio: Sequence[np.ndarray],
                      unlabeled_audio: Sequence[np.ndarray], layer: int = -1,
                      after_title: str = "after adaptation") -> Projection:
    """Panels for the unadapted model (adapter switched off) and the adapted one."""
    with peft_model.disable_adapter():
        before = (pooled_states(loaded, labeled_audio, layer), pooled_states(loaded, unlabeled_audio, layer))
    after = (pooled_states(loaded, labeled_audio, layer), pooled_states(loaded, unlabeled_audio, layer))
    return Projection(make_panel("before adaptation", *before), make_panel(after_title, *after),
                      layer=layer, labeled=len(labeled_audio), unlabeled=len(unlabeled_audio))


def plot_projection(projection: Projection, path: str | Path) -> Path:
    """Two scatter plots side by side (PNG, written atomically); returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for index, panel in enumerate((projection.before, projection.after)):
        axes = figure.add_subplot(1, 2, index + 1)
        for value, label, marker, color in ((0, "labeled (enrollment)", "o", "#1f77b4"),
                                            (1, "unlabeled (your other audio)", "^", "#ff7f0e")):
            chosen = panel.domains == value
            axes.scatter(panel.points[chosen, 0], panel.points[chosen, 1], s=18, marker=marker,
                         alpha=0.7, color=color, label=label)
        axes.set_title(f"{panel.title}\ndomain probe accuracy {100 * panel.probe_accuracy:.0f}% (chance 50%)",
                       fontsize=10)
        axes.set_xlabel(f"PC 1 ({100 * panel.explained[0]:.0f}% of variance)")
        axes.set_ylabel(f"PC 2 ({100 * panel.explained[1]:.0f}%)")
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(loc="best", fontsize=8)
    layer = "output" if projection.layer == -1 else f"layer {projection.layer}"
    figure.suptitle(f"Encoder states ({layer}), {projection.labeled} labeled vs {projection.unlabeled} "
                    "unlabeled utterances, PCA", fontsize=11)
    return save_figure_atomic(figure, path)


__all__ = ["Projection", "ProjectionPanel", "domain_projection", "make_panel", "pca_2d", "plot_projection",
           "pooled_states", "probe_accuracy"]
