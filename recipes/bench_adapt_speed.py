"""Adaptation speed and memory: packed or short windows (ours) vs one utterance per 30 s window.

Runs each variant in its own process (so peak memory is that variant's own), one after the
other in the same invocation, on the shipped sample speaker (samples/enroll, ~4.9 min):

    python recipes/bench_adapt_speed.py [--epochs 5] [--out out/bench_adapt_speed.json]

Reported per variant: seconds per epoch, wall seconds until the best held-out WER was
reached, held-out WER before/best, WER on samples/test after adaptation, peak RSS.
The "plain" variant is the prototype approach from DESIGN.md (every utterance padded to
Whisper's 30 s window, batch 8); "packed" packs utterances into 30 s windows; "short" trains
each utterance alone in a short encoder window (``short_window_share`` 1.0). Each variant
sets its options explicitly, so the figures do not move when a library default does.

    python recipes/bench_adapt_speed.py --variants packed,short
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": {"pack_seconds": 0, "batch_size": 8, "short_window_share": 0.0},
    "packed": {"short_window_share": 0.0},
    "short": {"short_window_share": 1.0},
}


def run_variant(name: str, epochs: int, seed: int) -> dict:
    """Train one variant in this process and return its measurements."""
    from asr_adapt.audio.io import load_audio
    from asr_adapt.data.scoring import score
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.data.manifest import read_manifest
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.adapt.options import TrainOptions
    from asr_adapt.adapt.training import train_adapter
    from asr_adapt.models.transcriber import Transcriber

    import torch

    enroll = read_manifest(REPO / "samples" / "enroll" / "manifest.jsonl")
    test = read_manifest(REPO / "samples" / "test" / "manifest.jsonl")
    loaded = resolve_model("whisper-tiny.en", device="cpu", dtype="float32")
    options = TrainOptions(epochs=epochs, patience=epochs, seed=seed, **VARIANTS[name])
    started = time.perf_counter()
    _, result = train_adapter(loaded, enroll, LoraSettings(), options)
    wall = time.perf_counter() - started
    hypotheses = Transcriber(loaded).transcribe_arrays([load_audio(u.audio) for u in test])
    test_wer = score([u.text for u in test], hypotheses).wer
    best = result.history[result.best_epoch]
    epoch_seconds = [b.seconds - a.seconds for a, b in zip(result.history, result.history[1:])]
    return {
        "variant": name, "options": VARIANTS[name], "epochs": result.epochs_run, "torch_threads": torch.get_num_threads(),
        "windows_per_epoch": result.windows_per_epoch,
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 1),
        "seconds_to_best": best.seconds, "best_epoch": result.best_epoch, "train_wall_seconds": round(wall, 1),
        "heldout_wer_before": result.baseline_heldout_wer, "heldout_wer_best": result.best_heldout_wer,
        "test_wer_after": test_wer, "peak_rss_mb": result.peak_memory_mb,
        "history": [[r.epoch, r.train_loss, r.heldout_wer, r.seconds] for r in result.history],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="plain,packed")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_adapt_speed.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_variant(args.one, args.epochs, args.seed)))
        return 0
    results = []
    for name in args.variants.split(","):
        load = os.getloadavg()[0]
        output = subprocess.run([sys.executable, __file__, "--one", name, "--epochs", str(args.epochs),
                                 "--seed", str(args.seed)], capture_output=True, text=True, check=True,
                                env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        row = json.loads(output.stdout.strip().splitlines()[-1])
        row["load_average_at_start"] = round(load, 2)
        results.append(row)
        print(f"{name}: {row['seconds_per_epoch']} s/epoch, best held-out WER {100 * row['heldout_wer_best']:.1f}% "
              f"after {row['seconds_to_best']} s, test WER {100 * row['test_wer_after']:.1f}%, "
              f"peak RSS {row['peak_rss_mb']} MB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "results": results},
                                   indent=2))
    by_name = {row["variant"]: row for row in results}
    for slow, fast in (("plain", "packed"), ("plain", "short"), ("packed", "short")):
        if {slow, fast} <= by_name.keys():
            a, b = by_name[slow], by_name[fast]
            print(f"{fast} vs {slow}: {a['seconds_per_epoch'] / b['seconds_per_epoch']:.2f}x per epoch, "
                  f"{a['seconds_to_best'] / max(b['seconds_to_best'], 1e-9):.2f}x to best, "
                  f"peak RSS {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
