"""Comparing a profile's base model with the same model wearing the profile's adapter.

:func:`compare_profile` evaluates the same utterances twice (the model is loaded once) and
records what the adapter was trained with (:func:`adaptation_facts`) beside the figures.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

from asr_adapt.report.compare import Comparison, compare_reports

if TYPE_CHECKING:  # transcribe imports torch: not needed to compare two reports
    from asr_adapt.data.manifest import Utterance
    from asr_adapt.models.options import TranscribeOptions


def compare_profile(profile_name: str, utterances: Sequence[Utterance],
                    options: TranscribeOptions | None = None,
                    device: str = "auto", progress: bool = False,
                    meta: dict[str, Any] | None = None, adapter_scale: float | None = None,
                    engine: str | None = None) -> Comparison:
    """Evaluate ``utterances`` with the profile's base model, then with its adapter
    (its deltas times ``adapter_scale``, default 1), both on ``engine`` (torch or ct2; None: the default).

    The base model is loaded once: evaluated as it is, then the adapter is applied to it
    in place (ct2: the profile's conversion replaces the base model's) and it is evaluated
    again. ``options`` is a
    :class:`~asr_adapt.models.options.TranscribeOptions`; ``meta`` adds to what is recorded
    (profile, base model, adapter, device, options).
    """
    # Imported here: they pull in torch and transformers.
    from asr_adapt.report.evaluate import evaluate_manifest
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.engines import apply_profile, check_ct2_family
    from asr_adapt.profiles.personal import check_adapter_scale, check_base_matches, require_adapter
    from asr_adapt.profiles.profile import Profile
    from asr_adapt.models.engines import check_engine
    from asr_adapt.models.options import TranscribeOptions

    options = options or TranscribeOptions()
    profile = Profile.open(profile_name)
    info = profile.info
    require_adapter(profile)  # checked before the (slow) model load
    check_adapter_scale(adapter_scale)
    if check_engine(engine) == "ct2":
        check_ct2_family(profile)
    loaded = resolve_model(info.base_model, device=device, engine=engine)
    check_base_matches(profile, loaded)
    before = evaluate_manifest(loaded, utterances, options, progress=progress)
    apply_profile(loaded, profile, scale=adapter_scale)
    # A profile that keeps no adapter reads with the base model: decoding again would
    # only cost time and give the same words.
    after = evaluate_manifest(loaded, utterances, options, progress=progress) if profile.adapter_dir else before
    record = {"profile": profile.name, "base_model": info.base_model,
              "adapter": str(profile.adapter_dir) if profile.adapter_dir else None,
              "adapter_version": profile.adapter_dir.name if profile.adapter_dir else None,
              "kept_nothing": info.metrics.get("kept_nothing") if not profile.adapter_dir else None,
              "adapter_scale": 1.0 if adapter_scale is None else adapter_scale,
              "device": str(loaded.placement), "engine": loaded.engine.runtime,
              **adaptation_facts(info.metrics),
              # The options as decoded (the beam resolved for this model), not as asked.
              "options": before.meta.get("options", asdict(options)),
              "encoder_window_read": {"before": before.meta.get("encoder_window_read"),
                                      "after": after.meta.get("encoder_window_read")},
              **(meta or {})}
    return compare_reports(before, after, meta=record)


def adaptation_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the profile's adapter was trained with that a reader of the comparison needs:
    whether domain confusion was on, on how much unlabeled audio, how well the domain head
    told the domains apart at the end (50% = fooled), the linear probe's accuracy before
    and after, the picture's path (``adapt --plot``), and what self-training kept."""
    facts: dict[str, Any] = {}
    if not metrics:
        return facts
    if metrics.get("domain_confusion"):
        accuracy = metrics.get("domain_accuracy")
        head = "" if accuracy is None else f", domain head {100 * accuracy:.0f}% accurate at the end (50% = fooled)"
        diverged = f"; diverged: {metrics['domain_diverged']}" if metrics.get("domain_diverged") else ""
        facts["domain confusion"] = f"on, {metrics.get('unlabeled_minutes', 0)} min of unlabeled audio{head}{diverged}"
    elif "domain_confusion" in metrics:
        facts["domain confusion"] = "off"
    projection = metrics.get("domain_projection") or {}
    if projection.get("probe_accuracy_before") is not None:
        facts["labeled vs unlabeled, linear probe"] = (
            f"{100 * projection['probe_accuracy_before']:.0f}% before -> "
            f"{100 * projection['probe_accuracy_after']:.0f}% after (50% = indistinguishable)")
    if metrics.get("domain_plot"):
        facts["domain picture"] = metrics["domain_plot"]
    st = metrics.get("self_training")
    if st:
        rounds = "" if st.get("round_one_heldout_wer") is None else (
            f"held-out WER {100 * st['round_one_heldout_wer']:.1f}% after round one"
            + (f", {100 * st['round_two_heldout_wer']:.1f}% after round two"
               if st.get("round_two_heldout_wer") is not None else "") + "; ")
        facts["self-training"] = (f"{st['kept']} of {st['pieces']} unlabeled pieces pseudo-labelled and kept "
                                  f"({st['kept_minutes']} min); {rounds}round {st['kept_round']} kept")
    return facts


__all__ = ["adaptation_facts", "compare_profile"]
