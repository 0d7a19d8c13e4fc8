"""LoRA-only vs LoRA + domain confusion, scored on held-out audio of the target domain.

    python recipes/bench_domain.py [--parts synthetic,real] [--seeds 0,1,2] [--epochs 4]
                                   [--out out/bench_domain]

Two settings, each: labeled source-domain audio, unlabeled target-domain audio, and an
evaluation set of the target domain that is never used as unlabeled audio.

- synthetic: labeled = ``samples/enroll`` (the sample speaker, 72 utterances, 4.9 min);
  unlabeled = prompt lines 73-152 of the same voice (made with make_samples.py into
  ``OUT/synth``), degraded; eval = ``samples/test`` (30) degraded the same way. The
  degradation (another room and another line): reverberation (RT60 0.6 s, tail energy 0.5),
  300-3400 Hz band-pass, then full-band white noise at 10 dB SNR, each utterance its own
  noise draw.
- real: speechocean762 split by ``speechocean_split.py``; labeled = adult_pool utterances
  (shuffled, seed 4) up to 5 min; unlabeled = child_pool utterances (shuffled, seed 5) up to
  8 min; eval = every 4th child_eval utterance capped at 160 (other children than the pool).

Per seed, LoRA-only and LoRA + DC run interleaved (seed 0 both, seed 1 both, ...), with the
same LoRA and training settings (library defaults, ``--epochs`` cap); the DC variant adds
``DomainOptions(enabled=True, ...)`` from ``--dc`` (JSON overrides). Results are appended to
``OUT/results.jsonl`` as they come; the table is printed at the end (``--report`` reprints).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.data.manifest import Utterance, read_manifest

UNLABELED_LINES = range(72, 152)  # 0-based prompt indices: lines 73-152 (not enroll, test, generic)


def degrade(audio: np.ndarray, seed: int) -> np.ndarray:
    """The synthetic target domain: another room, a phone line, a noisy place."""
    from scipy import signal

    rng = np.random.default_rng([seed, 99])
    room = np.random.default_rng(606)  # one room for every utterance, like one real place
    n = int(0.6 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = room.standard_normal(n) * np.exp(-3.0 * np.log(10) * t / 0.6)
    tail *= np.sqrt(0.5 / np.sum(tail ** 2))
    rir = np.concatenate([[1.0], np.zeros(int(0.004 * SAMPLE_RATE)), tail])
    y = signal.fftconvolve(audio.astype(np.float64), rir)[: len(audio)]
    y = signal.sosfilt(signal.butter(4, (300, 3400), btype="bandpass", fs=SAMPLE_RATE, output="sos"), y)
    power = np.mean(y ** 2)
    y = y + rng.standard_normal(len(y)) * np.sqrt(power / 10 ** (10 / 10))
    y *= 0.1 / max(np.sqrt(np.mean(y ** 2)), 1e-9)  # -20 dBFS
    return np.clip(y, -1, 1).astype(np.float32)


def synthetic_data(out: Path) -> dict:
    """Labeled utterances, unlabeled arrays, eval (arrays, texts)."""
    import make_samples as ms

    folder = out / "synth"
    manifest = folder / "extra" / "manifest.jsonl"
    if not manifest.is_file():
        import tempfile
        import zlib

        prompts = ms.read_prompts(REPO / "samples" / "prompts.txt")
        with tempfile.TemporaryDirectory() as tmp:
            _, sr = ms.espeak("Hello.", ms.VOICE, ms.RATE, ms.PITCH, Path(tmp))
            rir = ms.room_impulse_response(sr, np.random.default_rng([ms.DEFAULT_SEED, 0, zlib.crc32(b"room")]))
            ms.make_part("extra", list(UNLABELED_LINES), prompts, folder, ms.DEFAULT_SEED, rir, sr, ms.VOICE,
                         Path(tmp))
    extra = read_manifest(manifest)
    unlabeled = [degrade(load_audio(u.audio), 1000 + i) for i, u in enumerate(extra)]
    test = read_manifest(REPO / "samples" / "test" / "manifest.jsonl")
    eval_audio = [degrade(load_audio(u.audio), 2000 + i) for i, u in enumerate(test)]
    labeled = read_manifest(REPO / "samples" / "enroll" / "manifest.jsonl")
    return {"labeled": labeled, "unlabeled": unlabeled, "eval_audio": eval_audio,
            "eval_text": [u.text for u in test]}


def _take_minutes(utterances: list[Utterance], seconds: float, seed: int) -> list[Utterance]:
    order = list(utterances)
    random.Random(seed).shuffle(order)
    chosen, total = [], 0.0
    for u in order:
        if total >= seconds:
            break
        chosen.append(u)
        total += u.duration or 0.0
    return chosen


def real_data() -> dict:
    from speechocean_split import split_speechocean

    parts = split_speechocean()
    labeled = _take_minutes(parts["adult_pool"], 300, seed=4)
    unlabeled = [load_audio(u.audio) for u in _take_minutes(parts["child_pool"], 480, seed=5)]
    evaluation = parts["child_eval"][::4][:160]
    return {"labeled": labeled, "unlabeled": unlabeled,
            "eval_audio": [load_audio(u.audio) for u in evaluation], "eval_text": [u.text for u in evaluation]}


def evaluate(loaded, data: dict) -> float:
    from asr_adapt.data.scoring import score
    from asr_adapt.models.transcriber import Transcriber
    from asr_adapt.models.options import TranscribeOptions

    hypotheses = Transcriber(loaded, TranscribeOptions(batch_size=8)).transcribe_arrays(data["eval_audio"])
    return score(data["eval_text"], hypotheses).wer


def run_one(part: str, data: dict, variant: str, seed: int, epochs: int, dc: dict, label: str = "",
            train: dict | None = None) -> dict:
    from asr_adapt.adapt.options import DomainOptions
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.adapt.options import TrainOptions
    from asr_adapt.adapt.training import train_adapter

    loaded = resolve_model("whisper-tiny.en", device="cpu", dtype="float32")
    options = TrainOptions(**{"epochs": epochs, "seed": seed, **(train or {})})
    domain = DomainOptions(enabled=True, **dc) if variant == "lora+dc" else None
    if label:
        variant = f"{variant} {label}"
    started = time.perf_counter()
    _, result = train_adapter(loaded, data["labeled"], LoraSettings(), options, domain=domain,
                              unlabeled=data["unlabeled"] if domain else None)
    wer = evaluate(loaded, data)
    return {"part": part, "variant": variant, "seed": seed, "target_wer": wer,
            "heldout_before": result.baseline_heldout_wer, "heldout_best": result.best_heldout_wer,
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "domain_accuracy": [r.domain_accuracy for r in result.history[1:]],
            "domain_loss": [r.domain_loss for r in result.history[1:]], "diverged": result.diverged,
            "train_seconds": result.wall_seconds, "total_seconds": round(time.perf_counter() - started, 1),
            "labeled_minutes": round(result.train_seconds_of_audio / 60, 2),
            "unlabeled_minutes": round(result.unlabeled_seconds_of_audio / 60, 2),
            "domain": result.domain, "options": result.options}


def report(results_path: Path) -> str:
    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    lines = ["| setting | variant | seeds | target WER % per seed | mean | std | rel. vs LoRA-only | final domain acc. |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for part in dict.fromkeys(r["part"] for r in rows):
        base = [r for r in rows if r["part"] == part and r["variant"] == "unadapted"]
        if base:
            lines.append(f"| {part} | unadapted | - | {100 * base[0]['target_wer']:.2f} | "
                         f"{100 * base[0]['target_wer']:.2f} | - | - | - |")
        means = {}
        for variant in dict.fromkeys(r["variant"] for r in rows if r["part"] == part and r["variant"] != "unadapted"):
            chosen = sorted((r for r in rows if r["part"] == part and r["variant"] == variant), key=lambda r: r["seed"])
            if not chosen:
                continue
            wers = [100 * r["target_wer"] for r in chosen]
            means[variant] = statistics.mean(wers)
            spread = statistics.stdev(wers) if len(wers) > 1 else 0.0
            rel = ""
            plain = next((v for v in means if v.startswith("lora") and not v.startswith("lora+dc")
                          and v.split(" ", 1)[1:] == variant.split(" ", 1)[1:]), "lora")
            if variant.startswith("lora+dc") and plain in means:
                rel = f"{100 * (means[plain] - means[variant]) / means[plain]:+.1f}%"
            accs = [r["domain_accuracy"][-1] for r in chosen if r["domain_accuracy"] and r["domain_accuracy"][-1] is not None]
            acc = f"{100 * statistics.mean(accs):.0f}%" if accs else "-"
            lines.append(f"| {part} | {variant} | {len(wers)} | {', '.join(f'{w:.2f}' for w in wers)} | "
                         f"{means[variant]:.2f} | {spread:.2f} | {rel} | {acc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="synthetic,real")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--dc", default="{}", help="JSON DomainOptions overrides for the DC variant")
    parser.add_argument("--variants", default="lora,lora+dc", help="which of lora, lora+dc to run per seed")
    parser.add_argument("--label", default="", help="names the variants in the results (e.g. their settings); "
                                                    "LoRA+DC is compared with the LoRA-only run of the same label")
    parser.add_argument("--train", default="{}", help="JSON TrainOptions overrides for both variants")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_domain")
    parser.add_argument("--report", action="store_true", help="only print the table of saved results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    if args.report:
        print(report(results))
        return 0
    import torch

    torch.set_num_threads(2)
    dc = json.loads(args.dc)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    for part in args.parts.split(","):
        data = synthetic_data(args.out) if part == "synthetic" else real_data()
        print(f"{part}: {len(data['labeled'])} labeled, {len(data['unlabeled'])} unlabeled "
              f"({sum(map(len, data['unlabeled'])) / SAMPLE_RATE / 60:.1f} min), {len(data['eval_audio'])} eval",
              flush=True)
        from asr_adapt.models.loading import resolve_model

        done = [r for r in map(json.loads, results.read_text().splitlines() if results.is_file() else [])
                if r["part"] == part and r["variant"] == "unadapted"]
        if not done:
            base = {"part": part, "variant": "unadapted", "seed": None,
                    "target_wer": evaluate(resolve_model("whisper-tiny.en", device="cpu", dtype="float32"), data)}
            with open(results, "a") as handle:
                handle.write(json.dumps(base) + "\n")
            print(f"  unadapted: {100 * base['target_wer']:.2f}%", flush=True)
        for seed in seeds:
            for variant in args.variants.split(","):
                row = run_one(part, data, variant, seed, args.epochs, dc, args.label, json.loads(args.train))
                with open(results, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"  seed {seed} {variant}: target WER {100 * row['target_wer']:.2f}% "
                      f"(held-out {100 * row['heldout_before']:.1f} -> {100 * row['heldout_best']:.1f}, "
                      f"epoch {row['best_epoch']}/{row['epochs_run']}, domain acc {row['domain_accuracy']}, "
                      f"{row['total_seconds']:.0f} s; {time.perf_counter() - started:.0f} s so far)", flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
