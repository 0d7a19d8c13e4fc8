"""The end-to-end demo on the shipped sample speaker: baseline, adaptation, comparison,
and the short summary ``asr-adapt demo`` ends with (the full report goes to files)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.options import TrainOptions
from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.core.samples import SAMPLES_DIR
from asr_adapt.data.manifest import read_manifest
from asr_adapt.report.compare import Comparison
from asr_adapt.report.compare_files import COMPARE_JSON, COMPARE_MD
from asr_adapt.report.markdown import describe_reduction

DEMO_PROFILE = "sample-speaker"


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the comparison, the adaptation run, the files written."""

    comparison: Comparison
    adaptation: object        # profiles.adaptation.AdaptReport
    written: list[Path]
    wall_seconds: float


def run_demo(out_dir: Path, samples: Path = SAMPLES_DIR, model: str = "whisper-tiny.en", device: str = "auto",
             lora: LoraSettings | None = None, options: TrainOptions | None = None, progress: bool = False,
             say: Callable[[str], None] = print) -> DemoResult:
    """Enroll the sample speaker from ``samples/enroll``, adapt, and compare on ``samples/test``.

    The profile ``sample-speaker`` is (re)created; the before/after report goes to ``out_dir``.
    """
    from asr_adapt.profiles.adaptation import adapt_profile
    from asr_adapt.report.profile_compare import compare_profile
    from asr_adapt.report.compare_files import save_comparison
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.profile import Profile

    started = time.perf_counter()
    enroll_manifest, test_manifest = samples / "enroll" / "manifest.jsonl", samples / "test" / "manifest.jsonl"
    for path in (enroll_manifest, test_manifest):
        if not path.is_file():
            raise AsrAdaptError(f"{path} is missing: the demo runs from a source checkout with samples/ "
                                "(or give --samples DIR)")
    enrollment, test = read_manifest(enroll_manifest), read_manifest(test_manifest)
    base = resolve_model(model, device="cpu")  # records which weights the profile is for
    profile = Profile.create(DEMO_PROFILE, base_model=model, base_weights_sha256=base.weights_sha256,
                             backend=base.backend, force=True)
    del base
    profile.import_enrollment(enrollment)
    minutes = sum(u.duration or 0 for u in enrollment) / 60
    say(f"[1/3] enrolled '{profile.name}' from {len(enrollment)} utterances ({minutes:.1f} min) in {samples / 'enroll'}")
    say("[2/3] adapting (LoRA on Whisper's attention and feed-forward layers) ...")
    adaptation = adapt_profile(profile, lora, options, device=device, progress=progress)
    if not adaptation.saved:
        raise AsrAdaptError("; ".join(adaptation.warnings) or "adaptation did not improve the held-out WER")
    trained = adaptation.training
    if trained.baseline_heldout_wer is not None:
        say(f"      held-out WER {100 * trained.baseline_heldout_wer:.1f}% -> "
            f"{100 * trained.best_heldout_wer:.1f}% in {trained.wall_seconds:.0f} s")
    else:
        say(f"      trained {trained.epochs_run} epochs in {trained.wall_seconds:.0f} s")
    say(f"[3/3] comparing on {len(test)} held-out test utterances ({samples / 'test'}) ...")
    comparison = compare_profile(profile.name, test, device=device, progress=progress,
                                 meta={"demo": True, "samples": str(samples)})
    written = save_comparison(comparison, out_dir)
    return DemoResult(comparison=comparison, adaptation=adaptation, written=written,
                      wall_seconds=round(time.perf_counter() - started, 1))


def demo_summary(result: DemoResult, out_dir: Path) -> list[str]:
    """The few lines the demo ends with: WER before -> after (and the relative change), how
    many test utterances got better or worse, and where the report and the chart are.

    The per-speaker and per-utterance tables stay in the report files: a terminal is no
    place for them.
    """
    c = result.comparison
    out_dir = Path(out_dir)
    lines = [f"WER on held-out sample speech: {_percent(c.wer_before)} -> {_percent(c.wer_after)} "
             f"({describe_reduction(c.wer_relative_reduction)})",
             f"utterances: {c.fixed} fixed (fewer word errors), {c.broken} broken (more), "
             f"{c.unchanged} unchanged, of {c.n_utterances}",
             f"report: {out_dir / COMPARE_MD} (per speaker and per utterance; data in {COMPARE_JSON})"]
    if c.plot:
        lines.append(f"plot: {out_dir / c.plot}")
    if c.domain_plot:
        lines.append(f"domain picture: {out_dir / c.domain_plot}")
    lines.append(f"demo took {result.wall_seconds:.0f} s")
    return lines


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
