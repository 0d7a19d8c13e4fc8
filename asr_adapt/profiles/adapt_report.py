"""What one adaptation run of a profile reports, and what of it the profile stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from asr_adapt.adapt.options import TrainResult


@dataclass
class AdaptReport:
    """The outcome of one adaptation run, as stored in the profile's metrics."""

    profile: str
    base_model: str
    adapter_dir: str | None
    saved: bool
    training: TrainResult
    generic_wer_before: float | None = None
    generic_wer_after: float | None = None
    warnings: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: Domain confusion: where its unlabeled audio came from, and the PCA picture.
    unlabeled: dict | None = None
    projection: dict | None = None
    plot: str | None = None
    #: Self-training: what was pseudo-labelled and kept, and which round won on held-out.
    self_training: dict | None = None

    def metrics(self) -> dict:
        t = self.training
        return {
            "heldout_wer_before": t.baseline_heldout_wer, "heldout_wer_after": t.best_heldout_wer,
            "best_epoch": t.best_epoch, "epochs_run": t.epochs_run, "selection": t.selection,
            "keep_share": t.keep_share,
            "train_utterances": t.train_utterances, "heldout_utterances": t.heldout_utterances,
            "train_minutes": round(t.train_seconds_of_audio / 60, 2),
            "generic_wer_before": self.generic_wer_before, "generic_wer_after": self.generic_wer_after,
            "warnings": list(self.warnings), "train_wall_seconds": t.wall_seconds,
            "peak_memory_mb": t.peak_memory_mb, "history": [asdict(r) for r in t.history],
            "domain_confusion": t.domain is not None,
            "domain_accuracy": t.final_domain_accuracy, "domain_diverged": t.diverged,
            "unlabeled_minutes": round(t.unlabeled_seconds_of_audio / 60, 2),
            "domain_projection": self.projection, "domain_plot": self.plot,
            "pseudo_labeled_minutes": round(t.pseudo_labeled_seconds_of_audio / 60, 2),
            "self_training": self.self_training,
        }


__all__ = ["AdaptReport"]
