"""Training cost per second of audio: Whisper tiny.en vs a wav2vec2-base-sized CTC model.

Both run the product's own training step (the backend's batcher and loss, LoRA attached as
``asr-adapt adapt`` attaches it, AdamW, gradient clipping) on the shipped sample speaker's
utterances, packed into windows as the trainer packs them (28 s, 2 windows per step). Each
model runs in its own process, one after the other in the same invocation, so that its peak
memory is its own:

    python recipes/bench_backends.py [--steps 3] [--device cpu|cuda] [--out out/bench_backends.json]

Whisper is the bundled tiny.en (39 M parameters). No wav2vec2 weights are reachable offline,
so the CTC side is a *randomly initialised* model with wav2vec2-base's shape (hidden 768,
12 layers, the 7-layer 512-channel conv feature encoder, 95 M parameters) and a character
vocabulary: speed and memory do not depend on the weights' values.

Reported per model: seconds per training step (wall and process CPU time; on a shared
machine, run with ``--threads 1`` and read the CPU time), seconds per second of audio, peak
memory above the loaded model (RSS on CPU, allocated CUDA memory on a GPU), and that per
second of audio in a step. Whisper's encoder always sees 30 s per window, so its cost per
window is fixed; a CTC model's grows with the audio it is given.
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
MODELS = ("whisper-tiny.en", "wav2vec2-base-random")


def build_wav2vec2_base(folder: Path) -> Path:
    """A random model of wav2vec2-base-960h's shape, with its processor, saved to ``folder``."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    # wav2vec2-base-960h: group-norm conv stack, no attention mask, post-layer-norm blocks.
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    config = Wav2Vec2Config(vocab_size=len(tokens), pad_token_id=0, ctc_loss_reduction="mean",
                            architectures=["Wav2Vec2ForCTC"])  # the defaults are wav2vec2-base's shape
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_model(name: str, steps: int, device: str, folder: Path, pack_seconds: float = 28.0,
              batch_size: int = 2) -> dict:
    """Time ``steps`` training steps (after one warm-up step) of model ``name`` in this process."""
    import random

    import numpy as np
    import torch

    from asr_adapt.audio.io import SAMPLE_RATE, load_audio
    from asr_adapt.models.ctc import VocabularyError
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.adapt.attach import attach_lora, count_parameters
    from asr_adapt.data.manifest import read_manifest
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.adapt.options import TrainOptions
    from asr_adapt.adapt.examples import pack_windows
    from asr_adapt.models.base import Example

    model_ref = str(build_wav2vec2_base(folder)) if name == "wav2vec2-base-random" else name
    loaded = resolve_model(model_ref, device=device, dtype="float32")
    placement = loaded.placement
    batcher = loaded.engine.batcher(loaded)
    utterances = read_manifest(REPO / "samples" / "enroll" / "manifest.jsonl")
    examples = []
    for u in utterances:
        try:
            examples.append(Example(load_audio(u.audio), batcher.target_text(u.text, u.id)))
        except VocabularyError:  # a CTC vocabulary without digits: leave such a sentence out
            continue
    options = TrainOptions(pack_seconds=pack_seconds, batch_size=batch_size)  # default: the product's
    windows = pack_windows(examples, options, random.Random(0))
    per_step = options.batch_size
    needed = (steps + 1) * per_step
    windows = (windows * (needed // max(1, len(windows)) + 1))[:needed]
    peft_model = attach_lora(loaded.model, LoraSettings())
    trainable, total = count_parameters(peft_model)
    model = loaded.model
    loaded.engine.prepare_for_training(model)  # as train_adapter does
    model.train()
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate, weight_decay=options.weight_decay)
    if placement.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loaded_mb = _memory_mb(placement.device) if placement.device.type == "cuda" else \
        _current_rss_mb()
    times, cpu_times, audio = [], [], []
    for step in range(steps + 1):
        chunk = windows[step * per_step:(step + 1) * per_step]
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = batcher(chunk)
        loss = batcher.loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, options.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if placement.device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
            audio.append(sum(len(w.audio) for w in chunk) / SAMPLE_RATE)
    peak_mb = _memory_mb(placement.device)
    seconds_of_audio = float(np.mean(audio))
    step_seconds = float(np.mean(times))
    cpu_seconds = float(np.mean(cpu_times))
    return {
        "model": name, "backend": loaded.backend, "device": str(placement),
        "parameters_m": round(total / 1e6, 1), "trainable_m": round(trainable / 1e6, 2),
        "lora": LoraSettings().to_dict(), "windows_per_step": per_step, "steps_timed": steps,
        "audio_seconds_per_step": round(seconds_of_audio, 1),
        "step_seconds": round(step_seconds, 3),
        "compute_seconds_per_audio_second": round(step_seconds / seconds_of_audio, 4),
        # CPU time of the process: on one thread, the work itself, whatever else the
        # machine is doing (wall time on a shared machine includes waiting for a core).
        "cpu_seconds_per_step": round(cpu_seconds, 3),
        "cpu_seconds_per_audio_second": round(cpu_seconds / seconds_of_audio, 4),
        "peak_mb": round(peak_mb, 1), "loaded_mb": round(loaded_mb, 1),
        "training_mb": round(peak_mb - loaded_mb, 1),
        "training_mb_per_audio_second": round((peak_mb - loaded_mb) / seconds_of_audio, 2),
        "threads": torch.get_num_threads(),
    }


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--work", type=Path, default=REPO / "out" / "bench_backends_models",
                        help="where the random wav2vec2-base model is saved (built once)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_backends.json")
    parser.add_argument("--pack-seconds", type=float, default=28.0, help="window length (default: the trainer's 28)")
    parser.add_argument("--batch-size", type=int, default=2, help="windows per step (default: the trainer's 2)")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_model(args.worker, args.steps, args.device, args.work / "wav2vec2-base-random",
                                   args.pack_seconds, args.batch_size)))
        return 0
    results = []
    for name in args.models:
        command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--device", args.device,
                   "--threads", str(args.threads), "--work", str(args.work),
                   "--pack-seconds", str(args.pack_seconds), "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| model | params (M) | LoRA trainable (M) | audio s / step | wall s / step | CPU s / step | "
          "CPU s per audio s | peak MB above loaded | MB per audio s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} ({r['device']}) | {r['parameters_m']} | {r['trainable_m']} | "
              f"{r['audio_seconds_per_step']} | {r['step_seconds']:.2f} | {r['cpu_seconds_per_step']:.2f} | "
              f"{r['cpu_seconds_per_audio_second']:.3f} | {r['training_mb']:.0f} | "
              f"{r['training_mb_per_audio_second']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
