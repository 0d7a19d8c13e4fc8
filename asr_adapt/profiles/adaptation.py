"""Adapting a profile: train on its enrollment, guard against forgetting, save atomically.

With domain confusion, the profile's kept unlabeled audio (``live --keep-audio``) and any
``unlabeled`` sources given join the training as a second, unlabeled domain. With
self-training, the same audio is transcribed by the first round's adapter and its surest
transcripts train a second round (:mod:`asr_adapt.adapt.self_training`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from asr_adapt.core.device import resolve_device
from asr_adapt.adapt.options import DomainOptions
from asr_adapt.data.scoring import score
from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.data.manifest import Utterance, read_manifest
from asr_adapt.models.loading import resolve_model
from asr_adapt.profiles.adapt_report import AdaptReport
from asr_adapt.profiles.locks import profile_lock
from asr_adapt.profiles.personal import check_base_matches
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.stacking import open_base_profile
from asr_adapt.adapt.self_training import PseudoLabels, pseudo_label, round_two_wins
from asr_adapt.adapt.options import SelfTrainOptions
from asr_adapt.adapt.options import TrainOptions, TrainResult, TrainingError
from asr_adapt.adapt.training import train_adapter
from asr_adapt.models.transcriber import Transcriber
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.core.samples import GENERIC_MANIFEST
from asr_adapt.data.unlabeled import UnlabeledOptions, UnlabeledSet, collect_unlabeled

log = logging.getLogger(__name__)

#: Warn when generic WER rises by more than this many points (absolute) ...
FORGETTING_ABSOLUTE = 0.03
#: ... and by more than this fraction of its former value.
FORGETTING_RELATIVE = 0.15


def generic_reference_set() -> list[Utterance]:
    """The shipped generic utterances, or [] when samples/ is not beside the package."""
    if not GENERIC_MANIFEST.is_file():
        return []
    return read_manifest(GENERIC_MANIFEST)


def _wer(loaded, utterances: Sequence[Utterance]) -> float | None:
    if not utterances:
        return None
    from asr_adapt.audio.io import load_audio

    # Greedy: the guard compares before with after, both read the same way, and stays cheap.
    transcriber = Transcriber(loaded, TranscribeOptions(beam_size=1, max_new_tokens=200))
    hypotheses = transcriber.transcribe_arrays([load_audio(u.audio) for u in utterances])
    return score([u.text for u in utterances], hypotheses).wer


def gather_unlabeled(profile: Profile, sources: Sequence[str | Path] = (),
                     domain: DomainOptions | None = None,
                     options: UnlabeledOptions | None = None, purpose: str = "domain confusion") -> UnlabeledSet:
    """The profile's kept audio plus ``sources``, checked and cut (before any model loads).

    Raises :class:`TrainingError` when domain confusion is on and too little is usable.
    """
    domain = domain or DomainOptions(enabled=True)
    collected = collect_unlabeled(sources, profile.unlabeled_utterances(), options)
    if not collected.pieces:
        raise TrainingError(f"{purpose} needs the user's unlabeled audio and '{profile.name}' has none: "
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
                  plot: str | Path | bool | None = None,
                  self_train: SelfTrainOptions | None = None) -> AdaptReport:
    """Train a new adapter on ``profile``'s enrollment and make it current.

    The epoch is chosen as ``options.selection`` says; the generic reference set (other
    voices) is scored before and after (a clear rise is a warning). An adapter that does
    not beat the unadapted model on held-out speech is not saved. A ``base_profile`` recorded
    in the profile is the group adapter training starts from.

    ``domain.enabled`` adds domain confusion on the profile's kept unlabeled audio and the
    ``unlabeled`` sources (folders, manifests, files). If the domain game runs away, training
    stops with the best adapter so far, which is saved only if it also beats the profile's
    current adapter. ``plot`` (True: into the profile's reports folder, or a PNG path) draws
    the encoder states of labeled vs unlabeled audio before and after.

    ``self_train`` adds a second round on the same unlabeled audio, pseudo-labelled by the
    first round's model (:mod:`asr_adapt.adapt.self_training`); the round with the better held-out
    WER is kept (a tie goes to the second, which has seen more of the user's speech).
    Only one run at a time may change a profile: a second is refused in one line
    (:mod:`asr_adapt.profiles.locks`).
    """
    with profile_lock(profile.name, "adapt"):
        return _adapt_locked(profile, lora, options, device, generic, progress, on_epoch, domain, unlabeled,
                             unlabeled_options, plot, self_train)


def _adapt_locked(profile: Profile, lora: LoraSettings | None, options: TrainOptions | None, device: str,
                  generic: Sequence[Utterance] | None, progress: bool, on_epoch: Callable | None,
                  domain: DomainOptions | None, unlabeled: Sequence[str | Path],
                  unlabeled_options: UnlabeledOptions | None, plot: str | Path | bool | None,
                  self_train: SelfTrainOptions | None) -> AdaptReport:
    """:func:`adapt_profile` with the profile's lock held."""
    started = time.perf_counter()
    lora = lora or LoraSettings()
    options = options or TrainOptions()
    domain_on = domain if domain is not None and domain.enabled else None
    utterances = _transcribed_enrollment(profile, options)
    collected = _unlabeled_for(profile, unlabeled, domain, unlabeled_options, domain_on is not None,
                               self_train, plot)
    compute = resolve_device(device)
    loaded = resolve_model(profile.info.base_model, device=device, dtype="float32")
    check_base_matches(profile, loaded)
    group = _group_of(profile, loaded)
    generic = generic_reference_set() if generic is None else list(generic)
    generic_before = _wer(loaded, generic)
    loaded, peft_model, result, self_training = _train_rounds(
        profile, loaded, utterances, collected, lora, options, self_train, device=device,
        progress=progress, on_epoch=on_epoch, compute_dtype=compute.dtype, domain=domain_on,
        start_from=str(group.adapter_dir) if group else None)
    report = AdaptReport(profile=profile.name, base_model=profile.info.base_model, adapter_dir=None,
                         saved=False, training=result, generic_wer_before=generic_before,
                         unlabeled=collected.summary() if domain_on or self_train else None,
                         self_training=self_training)
    _note_unlabeled(report, collected)
    if collected is not None and plot:
        report.plot, report.projection = _draw_projection(loaded, peft_model, utterances, collected,
                                                          domain_on, profile, plot)
    if _worth_saving(report, profile, started_from_group=group is not None):
        report.generic_wer_after = _wer(loaded, generic)
        _warn_if_forgetting(report)
        settings = _adapter_settings(result, compute, domain_on, collected, self_train, group)
        adapter = profile.commit_adapter(lambda folder: peft_model.save_pretrained(str(folder)),
                                         settings=settings, metrics={**report.metrics(), "kept_nothing": None})
        report.adapter_dir, report.saved = str(adapter), True
    elif profile.adapter_dir is None:
        _record_kept_nothing(profile, report)
    report.wall_seconds = round(time.perf_counter() - started, 1)
    return report


def _train_rounds(profile: Profile, loaded, utterances: Sequence[Utterance], collected: UnlabeledSet | None,
                  lora: LoraSettings, options: TrainOptions, self_train: SelfTrainOptions | None, device: str,
                  progress: bool, on_epoch, compute_dtype, domain: DomainOptions | None,
                  start_from: str | None = None):
    """Round one on the enrollment (with domain confusion when ``domain`` is given) and, with
    ``self_train``, round two on pseudo-labels, keeping the better round. ``start_from``: the
    group profile's adapter folder both rounds start from.

    Returns ``(loaded, peft_model, result, self-training summary or None)`` of the round kept."""
    peft_model, result = train_adapter(loaded, utterances, lora, options, progress=progress,
                                       on_epoch=on_epoch, compute_dtype=compute_dtype, domain=domain,
                                       unlabeled=collected.arrays() if domain is not None else None,
                                       start_from=start_from)
    if self_train is None:
        return loaded, peft_model, result, None
    return _second_round(profile, loaded, peft_model, result, collected, utterances, lora, options, self_train,
                         device=device, progress=progress, on_epoch=on_epoch, compute_dtype=compute_dtype,
                         domain=domain, start_from=start_from)


def _transcribed_enrollment(profile: Profile, options: TrainOptions) -> list[Utterance]:
    """The profile's enrollment utterances that have text; enough of them, or TrainingError."""
    utterances = [u for u in profile.enrollment_utterances() if u.text]
    if len(utterances) < options.min_utterances:
        raise TrainingError(f"profile '{profile.name}' has {len(utterances)} transcribed utterances; at least "
                            f"{options.min_utterances} are needed: asr-adapt enroll {profile.name}")
    return utterances


def _unlabeled_for(profile: Profile, sources: Sequence[str | Path], domain: DomainOptions | None,
                   options: UnlabeledOptions | None, confusion: bool, self_train: SelfTrainOptions | None,
                   plot: str | Path | bool | None) -> UnlabeledSet | None:
    """The unlabeled audio this run needs, gathered before any model loads (None: none needed).

    Without domain confusion, unlabeled audio is only drawn (the LoRA-only picture) or
    pseudo-labelled (self-training), so no minimum amount applies.
    """
    if confusion:
        return gather_unlabeled(profile, sources, domain, options)
    if self_train is not None:
        return gather_unlabeled(profile, sources, DomainOptions(min_unlabeled_seconds=0), options,
                                purpose="self-training")
    if plot:
        return gather_unlabeled(profile, sources, DomainOptions(min_unlabeled_seconds=0), options)
    return None


def _note_unlabeled(report: AdaptReport, collected: UnlabeledSet | None) -> None:
    """Warnings from the unlabeled audio: self-training's verdict, the first pieces skipped."""
    if report.self_training and report.self_training.get("warning"):
        report.warnings.append(report.self_training["warning"])
    if collected is not None:
        for skipped in collected.skipped[:3]:
            report.warnings.append(f"skipped kept audio: {skipped}")


def _worth_saving(report: AdaptReport, profile: Profile, started_from_group: bool = False) -> bool:
    """Whether the new adapter should replace the profile's current one (the reason goes
    into the report's warnings when not): it must beat the unadapted model on held-out
    speech and, after a runaway domain game, the current adapter too. Started from a group
    profile, epoch 0 is the group's adapter: kept as this profile's when no epoch beat it."""
    result = report.training
    if started_from_group and result.best_epoch == 0 and not result.diverged:
        report.warnings.append("no epoch beat the group profile's adapter on the held-out utterances; "
                               "the profile keeps the group's adapter as it is")
        return True
    if result.diverged:
        report.warnings.append(f"domain confusion diverged: {result.diverged}")
        previous = profile.info.metrics.get("heldout_wer_after") if profile.adapter_dir else None
        if result.improved and previous is not None and result.best_heldout_wer is not None \
                and result.best_heldout_wer >= previous:
            report.warnings.append(
                f"the profile keeps its current adapter (held-out WER {100 * previous:.1f}%, "
                f"this run's best {100 * result.best_heldout_wer:.1f}%)")
            return False
        if profile.adapter_dir and (previous is None or result.best_heldout_wer is None):
            # Nothing held out to show that a runaway run did better: keep what works.
            report.warnings.append("the profile keeps its current adapter (nothing held out to compare with)")
            return False
    if not result.improved:
        # Nothing held out (the fixed schedule): only a run stopped before its first epoch
        # ends here, and kept_nothing_text says why.
        what = (f"adaptation did not improve held-out WER ({100 * result.baseline_heldout_wer:.1f}%)"
                if result.baseline_heldout_wer is not None else f"adaptation kept no epoch ({kept_nothing_text(result)})")
        report.warnings.append(
            what + "; " + ("the profile keeps its previous adapter" if profile.adapter_dir else
                           "the profile keeps no adapter and reads with its base model as it is")
            + ". Record more utterances or raise --epochs")
        return False
    return True


def _group_of(profile: Profile, loaded) -> Profile | None:
    """The group profile whose adapter this one starts from (checked against ``loaded``), or None."""
    if not profile.info.base_profile:
        return None
    return open_base_profile(profile.info.base_profile, profile.info.base_model, loaded.weights_sha256, profile.name)


def _record_kept_nothing(profile: Profile, report: AdaptReport) -> None:
    """Say in profile.json why no adapter was kept, so that the profile reads with the base
    model (and says why) instead of refusing as if it had never been adapted."""
    profile.record_metrics({**report.metrics(), "kept_nothing": kept_nothing_text(report.training)})


def kept_nothing_text(result: TrainResult) -> str:
    """Why an adaptation run kept no adapter, in a few words for ``profiles show``."""
    if result.diverged:
        return f"training diverged: {result.diverged}"
    if result.baseline_heldout_wer is None:
        return "training kept no epoch"
    tried = [r.heldout_wer for r in result.history[1:] if r.heldout_wer is not None]
    best = f", {100 * min(tried):.1f}% at best" if tried else ""
    return (f"no epoch beat the base model on the held-out utterances "
            f"({100 * result.baseline_heldout_wer:.1f}% unadapted{best})")


def _warn_if_forgetting(report: AdaptReport) -> None:
    """Warn when generic speech got clearly worse (both thresholds crossed)."""
    before, after = report.generic_wer_before, report.generic_wer_after
    if before is None or after is None:
        return
    rise = after - before
    if rise > FORGETTING_ABSOLUTE and rise > FORGETTING_RELATIVE * max(before, 1e-9):
        report.warnings.append(
            f"generic speech got worse: WER {100 * before:.1f}% -> {100 * after:.1f}% "
            "(the adapter fits this voice at some cost elsewhere; try fewer --epochs or a smaller --rank)")


def _adapter_settings(result: TrainResult, compute, domain: DomainOptions | None,
                      collected: UnlabeledSet | None, self_train: SelfTrainOptions | None,
                      group: Profile | None = None) -> dict:
    """What ``profile.json`` records about how the adapter was trained (``domain``: None
    without domain confusion; ``group``: the group profile it started from)."""
    settings = {"lora": dict(result.lora), "training": dict(result.options), "device": str(compute)}
    if group is not None:
        settings["base_profile"] = {"name": group.name, "adapter_version": group.adapter_dir.name}
    if domain is not None:
        settings["domain"] = domain.to_dict()
    if domain is not None or self_train is not None:
        settings["unlabeled"] = {**collected.summary(), **collected.options}
    if self_train is not None:
        settings["self_training"] = self_train.to_dict()
    return settings


def _second_round(profile: Profile, loaded, peft_model, result: TrainResult, collected: UnlabeledSet,
                  utterances: Sequence[Utterance], lora: LoraSettings, options: TrainOptions,
                  self_train: SelfTrainOptions, device: str, progress: bool, on_epoch, compute_dtype,
                  domain: DomainOptions | None, start_from: str | None = None):
    """Self-training's second round: pseudo-label ``collected`` with round one's model, train
    a fresh adapter on the enrollment plus the surest labels, keep the better round.

    Returns ``(loaded, peft_model, result, summary)`` of the round kept."""
    labels = pseudo_label(loaded, collected.pieces, self_train, progress=progress)
    summary = {**labels.summary(), "round_one_heldout_wer": result.best_heldout_wer,
               "round_one_best_epoch": result.best_epoch, "kept_round": 1,
               "labels_file": _write_pseudo_labels(profile, labels)}
    if len(labels.kept) < self_train.min_kept:
        summary["warning"] = (f"self-training: only {len(labels.kept)} of {len(labels.labels)} unlabeled pieces "
                              f"gave a usable transcript (at least {self_train.min_kept} needed); kept round one. "
                              "Give more unlabeled speech")
        return loaded, peft_model, result, summary
    fresh = resolve_model(profile.info.base_model, device=device, dtype="float32")
    peft_two, result_two = train_adapter(fresh, utterances, lora, options, progress=progress, on_epoch=on_epoch,
                                         compute_dtype=compute_dtype, domain=domain,
                                         unlabeled=collected.arrays() if domain is not None else None,
                                         pseudo_labeled=labels.pairs(), start_from=start_from)
    summary.update(round_two_heldout_wer=result_two.best_heldout_wer, round_two_best_epoch=result_two.best_epoch)
    if round_two_wins(result, result_two):
        summary["kept_round"] = 2
        return fresh, peft_two, result_two, summary
    summary["warning"] = (f"self-training did not help on held-out speech (round two "
                          f"{100 * result_two.best_heldout_wer:.1f}% vs round one {100 * result.best_heldout_wer:.1f}%); "
                          "kept round one")
    return loaded, peft_model, result, summary


def _write_pseudo_labels(profile: Profile, labels: PseudoLabels) -> str | None:
    """Every pseudo-label, kept or not, as JSON lines in the profile's reports folder (so a
    user can see what the model heard); None when it cannot be written."""
    import json

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = profile.reports_dir / f"pseudo-labels-{stamp}.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(asdict(label)) + "\n" for label in labels.labels))
    except OSError as error:
        log.warning("could not write %s: %s", path, error)
        return None
    return str(path)


#: Utterances of each domain drawn in the projection picture (more only blurs it and costs time).
PLOT_UTTERANCES = 60


def _draw_projection(loaded, peft_model, utterances: Sequence[Utterance], collected: UnlabeledSet,
                     domain: DomainOptions | None, profile: Profile, plot: str | Path | bool) -> tuple[str, dict]:
    from asr_adapt.audio.io import load_audio
    from asr_adapt.adapt.projection import domain_projection, plot_projection

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
