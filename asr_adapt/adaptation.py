"""Adapting a profile: train on its enrollment, guard against forgetting, save atomically.

With domain confusion, the profile's kept unlabeled audio (``live --keep-audio``) and any
``unlabeled`` sources given join the training as a second, unlabeled domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .device import resolve_device
from .domain import DomainOptions
from .evaluation import score
from .lora import LoraSettings
from .manifest import Utterance, read_manifest
from .models import resolve_model
from .personal import check_base_matches
from .profiles import Profile
from .training import TrainOptions, TrainResult, TrainingError, train_adapter
from .transcribe import Transcriber, TranscribeOptions
from .unlabeled import UnlabeledOptions, UnlabeledSet, collect_unlabeled

log = logging.getLogger(__name__)

#: The shipped generic reference set (voices that are not the user's).
GENERIC_MANIFEST = Path(__file__).resolve().parent.parent / "samples" / "generic" / "manifest.jsonl"
#: Warn when generic WER rises by more than this many points (absolute) ...
FORGETTING_ABSOLUTE = 0.03
#: ... and by more than this fraction of its former value.
FORGETTING_RELATIVE = 0.15


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

    def metrics(self) -> dict:
        t = self.training
        return {
            "heldout_wer_before": t.baseline_heldout_wer, "heldout_wer_after": t.best_heldout_wer,
            "best_epoch": t.best_epoch, "epochs_run": t.epochs_run,
            "train_utterances": t.train_utterances, "heldout_utterances": t.heldout_utterances,
            "train_minutes": round(t.train_seconds_of_audio / 60, 2),
            "generic_wer_before": self.generic_wer_before, "generic_wer_after": self.generic_wer_after,
            "warnings": list(self.warnings), "train_wall_seconds": t.wall_seconds,
            "peak_memory_mb": t.peak_memory_mb, "history": [asdict(r) for r in t.history],
            "domain_confusion": t.domain is not None,
            "domain_accuracy": t.final_domain_accuracy, "domain_diverged": t.diverged,
            "unlabeled_minutes": round(t.unlabeled_seconds_of_audio / 60, 2),
            "domain_projection": self.projection, "domain_plot": self.plot,
        }


def generic_reference_set() -> list[Utterance]:
    """The shipped generic utterances, or [] when samples/ is not beside the package."""
    if not GENERIC_MANIFEST.is_file():
        return []
    return read_manifest(GENERIC_MANIFEST)


def _wer(loaded, utterances: Sequence[Utterance]) -> float | None:
    if not utterances:
        return None
    from .audio import load_audio

    # Greedy: the guard compares before with after, both read the same way, and stays cheap.
    transcriber = Transcriber(loaded, TranscribeOptions(beam_size=1, max_new_tokens=200))
    hypotheses = transcriber.transcribe_arrays([load_audio(u.audio) for u in utterances])
    return score([u.text for u in utterances], hypotheses).wer


def gather_unlabeled(profile: Profile, sources: Sequence[str | Path] = (),
                     domain: DomainOptions | None = None,
                     options: UnlabeledOptions | None = None) -> UnlabeledSet:
    """The profile's kept audio plus ``sources``, checked and cut (before any model loads).

    Raises :class:`TrainingError` when domain confusion is on and too little is usable.
    """
    domain = domain or DomainOptions(enabled=True)
    collected = collect_unlabeled(sources, profile.unlabeled_utterances(), options)
    if not collected.pieces:
        raise TrainingError(f"domain confusion needs the user's unlabeled audio and '{profile.name}' has none: "
                            f"pass --unlabeled PATH, or keep some with: asr-adapt live --profile {profile.name} --keep-audio")
    if collected.seconds < domain.min_unlabeled_seconds:
        raise TrainingError(f"only {collected.seconds:.0f} s of usable unlabeled audio; domain confusion needs "
                            f"at least {domain.min_unlabeled_seconds:.0f} s (a few minutes work best)")
    return collected


def adapt_profile(profile: Profile, lora: LoraSettings | None = None, options: TrainOptions | None = None,
                  device: str = "auto", generic: Sequence[Utterance] | None = None,
                  progress: bool = False, on_epoch: Callable | None = None,
                  domain: DomainOptions | None = None, unlabeled: Sequence[str | Path] = (),
                  unlabeled_options: UnlabeledOptions | None = None,
                  plot: str | Path | bool | None = None) -> AdaptReport:
    """Train a new adapter on ``profile``'s enrollment and make it current.

    The held-out WER picks the best epoch. The generic reference set (voices other than
    the user's) is scored before and after: a clear rise is reported as a warning. An
    adapter that does not beat the unadapted model on held-out speech is not saved.

    ``domain.enabled`` adds domain confusion on the profile's kept unlabeled audio and the
    ``unlabeled`` sources (folders, manifests, files). If the domain game runs away, training
    stops with the best adapter so far, which is saved only if it also beats the profile's
    current adapter. ``plot`` (True: into the profile's reports folder, or a PNG path) draws
    the encoder states of labeled vs unlabeled audio before and after.
    """
    started = time.perf_counter()
    lora = lora or LoraSettings()
    options = options or TrainOptions()
    confusion = domain is not None and domain.enabled
    utterances = [u for u in profile.enrollment_utterances() if u.text]
    if len(utterances) < options.min_utterances:
        raise TrainingError(f"profile '{profile.name}' has {len(utterances)} transcribed utterances; at least "
                            f"{options.min_utterances} are needed: asr-adapt enroll {profile.name}")
    # Without domain confusion, unlabeled audio is only drawn (the LoRA-only picture).
    collected = (gather_unlabeled(profile, unlabeled, domain if confusion else DomainOptions(min_unlabeled_seconds=0),
                                  unlabeled_options) if confusion or plot else None)
    compute = resolve_device(device)
    loaded = resolve_model(profile.info.base_model, device=device, dtype="float32")
    check_base_matches(profile, loaded)
    generic = generic_reference_set() if generic is None else list(generic)
    generic_before = _wer(loaded, generic)
    peft_model, result = train_adapter(loaded, utterances, lora, options, progress=progress,
                                       on_epoch=on_epoch, compute_dtype=compute.dtype,
                                       domain=domain if confusion else None,
                                       unlabeled=collected.arrays() if confusion else None)
    report = AdaptReport(profile=profile.name, base_model=profile.info.base_model, adapter_dir=None,
                         saved=False, training=result, generic_wer_before=generic_before,
                         unlabeled=collected.summary() if confusion else None)
    if collected is not None:
        for skipped in collected.skipped[:3]:
            report.warnings.append(f"skipped kept audio: {skipped}")
        if plot:
            report.plot, report.projection = _draw_projection(loaded, peft_model, utterances, collected,
                                                              domain if confusion else None, profile, plot)
    if result.diverged:
        report.warnings.append(f"domain confusion diverged: {result.diverged}")
        previous = profile.info.metrics.get("heldout_wer_after") if profile.adapter_dir else None
        if result.improved and previous is not None and result.best_heldout_wer >= previous:
            report.warnings.append(
                f"the profile keeps its current adapter (held-out WER {100 * previous:.1f}%, "
                f"this run's best {100 * result.best_heldout_wer:.1f}%)")
            report.wall_seconds = round(time.perf_counter() - started, 1)
            return report
    if not result.improved:
        report.warnings.append(
            f"adaptation did not improve held-out WER ({100 * result.baseline_heldout_wer:.1f}%); "
            "the profile keeps its previous adapter. Record more utterances or raise --epochs")
        report.wall_seconds = round(time.perf_counter() - started, 1)
        return report
    report.generic_wer_after = _wer(loaded, generic)
    if generic_before is not None and report.generic_wer_after is not None:
        rise = report.generic_wer_after - generic_before
        if rise > FORGETTING_ABSOLUTE and rise > FORGETTING_RELATIVE * max(generic_before, 1e-9):
            report.warnings.append(
                f"generic speech got worse: WER {100 * generic_before:.1f}% -> {100 * report.generic_wer_after:.1f}% "
                "(the adapter fits this voice at some cost elsewhere; try fewer --epochs or a smaller --rank)")
    settings = {"lora": dict(result.lora), "training": dict(result.options), "device": str(compute)}
    if confusion:
        settings["domain"] = domain.to_dict()
        settings["unlabeled"] = {**collected.summary(), **collected.options}
    adapter = profile.commit_adapter(lambda folder: peft_model.save_pretrained(str(folder)),
                                     settings=settings, metrics=report.metrics())
    report.adapter_dir, report.saved = str(adapter), True
    report.wall_seconds = round(time.perf_counter() - started, 1)
    return report


#: Utterances of each domain drawn in the projection picture (more only blurs it and costs time).
PLOT_UTTERANCES = 60


def _draw_projection(loaded, peft_model, utterances: Sequence[Utterance], collected: UnlabeledSet,
                     domain: DomainOptions | None, profile: Profile, plot: str | Path | bool) -> tuple[str, dict]:
    from .audio import load_audio
    from .projection import domain_projection, plot_projection

    def spread(items: list, count: int) -> list:
        step = max(1, len(items) // count)
        return items[::step][:count]

    labeled = [load_audio(u.audio) for u in spread(list(utterances), PLOT_UTTERANCES)]
    unlabeled = spread(collected.arrays(), PLOT_UTTERANCES)
    projection = domain_projection(loaded, peft_model, labeled, unlabeled, layer=domain.layer if domain else -1,
                                   after_title="after LoRA + domain confusion" if domain else "after LoRA")
    if plot is True:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = profile.reports_dir / f"domain-{stamp}.png"
    else:
        path = Path(plot)
    return str(plot_projection(projection, path)), projection.to_dict()
