"""Live transcription benchmark: commit latency, real-time factor, live vs offline WER.

Each samples/test utterance (and optionally speechocean762 files) is streamed through the
:class:`~asr_adapt.streaming.StreamingProcessor` in deterministic mode: a fixed hop of audio
per step, with a simulated clock in which every step costs the compute time it really took
(a step starts when its audio has arrived *and* the previous step has finished). So the
text is reproducible and the latency honest for this machine.

Commit latency of a word = the simulated time its commit happened - the time the word ends
in the audio. Word end times come from Whisper's own cross-attention alignment (DTW over
the alignment heads, ``return_token_timestamps``) on the offline transcription of the same
file by the same model; live words are matched to offline words by a word alignment, and
only matched words are timed (the fraction is reported). The "algorithmic" latency leaves
compute out (what a machine infinitely fast would get with this hop and policy). The
"CPU-clock" latency runs the same simulated clock on the CPU time each step used instead of
its wall time: on a shared machine, what a core of its own would give (exact with one torch
thread, ``--threads 1``, since all the work then runs on the calling thread).

    python recipes/bench_live.py --threads 1 --with-profile --json out/bench_live.json

``--with-profile`` adapts a profile on samples/enroll first (in ``--home``, reused when it
is there already), then benchmarks again with its adapter merged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # one warning per decode otherwise

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.data.scoring import score
from asr_adapt.data.manifest import read_manifest
from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor
from asr_adapt.decode.replay import run_deterministic, simulate_live
from asr_adapt.models.repetition import normalize_word
from asr_adapt.models.whisper.stream_decoder import WhisperDecoder
from asr_adapt.audio.vad import speech_mask

PROFILE = "bench-live"


def word_end_times(loaded, audio: np.ndarray) -> list[tuple[str, float]]:
    """Words of the offline transcription and when each ends (seconds), by Whisper's DTW
    alignment. Token i spans [t_i, t_{i+1}] as in transformers' own word timestamps."""
    import torch

    processor, model = loaded.processor, loaded.model
    features = processor.feature_extractor([audio], sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                           return_attention_mask=True)
    with torch.inference_mode():
        out = model.generate(features.input_features.to(loaded.placement.device, dtype=loaded.placement.dtype),
                             attention_mask=features.attention_mask.to(loaded.placement.device),
                             return_token_timestamps=True, return_dict_in_generate=True,
                             max_new_tokens=int(10 * len(audio) / SAMPLE_RATE) + 16)
    tokens = out["sequences"][0].tolist()
    times = out["token_timestamps"][0].tolist()
    special = processor.tokenizer.eos_token_id
    words: list[list] = []
    for i, token in enumerate(tokens):
        if token >= special:
            continue
        piece = processor.tokenizer.decode([token])
        end = times[i + 1] if i + 1 < len(times) else times[i]
        if piece.startswith(" ") or not words:
            words.append([piece.strip(), end])
        else:
            words[-1][0] += piece
            words[-1][1] = end
    # DTW runs late at the end of the audio (the last words "end" in the trailing silence):
    # no word ends after the speech does. Clipping can only make latencies larger.
    mask = speech_mask(audio)
    speech_end = (np.nonzero(mask)[-1][-1] + 1) * 0.02 if mask.any() else len(audio) / SAMPLE_RATE
    return [(w, min(float(e), speech_end)) for w, e in words if normalize_word(w)]


def matched_latencies(live_words, offline_words):
    """(commit latencies on the wall clock, on the CPU-time clock, algorithmic latencies,
    words matched) of live words that align with offline words (after normalization)."""
    a = [normalize_word(w.text) for w in live_words]
    b = [normalize_word(w) for w, _ in offline_words]
    commit, cpu, algorithmic, matched = [], [], [], 0
    for i, j, size in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(size):
            live, (_, end) = live_words[i + k], offline_words[j + k]
            commit.append(live.commit_time - end)
            cpu.append(live.cpu_commit_time - end)
            algorithmic.append(live.audio_time - end)
            matched += 1
    return commit, cpu, algorithmic, matched


def percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def bench(loaded, utterances, options: StreamingOptions, label: str, encoder_window=None,
          modes=("fixed_hop", "live"), offline_beam: int = 1) -> dict:
    """Stream each utterance in ``modes`` and time its words' commits against the offline
    transcription of the same files (decoded with a beam of ``offline_beam``)."""
    from asr_adapt.models.options import TranscribeOptions
    from asr_adapt.models.transcriber import Transcriber

    audios = [load_audio(u.audio) for u in utterances]
    started = time.perf_counter()
    offline = Transcriber(loaded, TranscribeOptions(beam_size=offline_beam)).transcribe_arrays(audios)
    offline_seconds = time.perf_counter() - started
    processor = StreamingProcessor(WhisperDecoder(loaded, encoder_window=encoder_window), options)
    ends = [word_end_times(loaded, audio) for audio in audios]
    report = {"label": label, "model": loaded.name, "files": len(audios),
              "audio_seconds": round(sum(len(a) for a in audios) / SAMPLE_RATE, 1),
              "offline_wer": score([u.text for u in utterances], offline).wer, "offline_beam": offline_beam,
              "offline_texts": offline,
              "offline_rtf": offline_seconds / (sum(len(a) for a in audios) / SAMPLE_RATE)}
    simulations = {"fixed_hop": run_deterministic, "live": simulate_live}
    for mode, simulate in ((m, simulations[m]) for m in modes):
        texts, commit, cpu_commit, algorithmic = [], [], [], []
        matched = total = decodes = 0
        compute = cpu = max_buffer = 0.0
        for n, (audio, words) in enumerate(zip(audios, ends)):
            result = simulate(processor, audio)
            texts.append(result.text)
            compute += result.compute_seconds
            cpu += result.cpu_seconds
            decodes += result.decodes
            max_buffer = max(max_buffer, result.max_buffer_seconds)
            c, u, a, m = matched_latencies(result.words, words)
            commit += c
            cpu_commit += u
            algorithmic += a
            matched += m
            total += len(result.words)
            print(f"  [{label}, {mode}] {n + 1}/{len(audios)} p50 so far {percentile(commit, 50):.2f} s",
                  file=sys.stderr)
        live_wer = score([u.text for u in utterances], texts).wer
        report[mode] = {
            "live_wer": live_wer,
            "relative_wer_change": (live_wer - report["offline_wer"]) / report["offline_wer"]
            if report["offline_wer"] else None,
            "latency_p50": percentile(commit, 50), "latency_p90": percentile(commit, 90),
            "cpu_latency_p50": percentile(cpu_commit, 50), "cpu_latency_p90": percentile(cpu_commit, 90),
            "cpu_rtf": cpu / report["audio_seconds"],
            "algorithmic_p50": percentile(algorithmic, 50), "algorithmic_p90": percentile(algorithmic, 90),
            "words_timed": matched, "words_committed": total,
            "rtf": compute / report["audio_seconds"], "decodes": decodes,
            "seconds_per_decode": compute / decodes if decodes else None, "max_buffer_seconds": max_buffer,
            "texts": texts,
        }
    return report


def ensure_profile(home: Path, model: str, device: str, train: dict | None = None) -> str:
    """Adapt the bench profile on samples/enroll (``train``: TrainOptions overrides) unless
    ``home`` has it already."""
    os.environ["ASR_ADAPT_HOME"] = str(home)
    from asr_adapt.profiles.adaptation import adapt_profile
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.profile import Profile
    from asr_adapt.profiles.info import ProfileError

    try:
        if Profile.open(PROFILE).adapter_dir is not None:
            return PROFILE
    except ProfileError:
        pass
    base = resolve_model(model, device="cpu")
    profile = Profile.create(PROFILE, base_model=model, base_weights_sha256=base.weights_sha256,
                             backend=base.backend, force=True)
    del base
    profile.import_enrollment(read_manifest(REPO / "samples" / "enroll" / "manifest.jsonl"))
    started = time.perf_counter()
    from asr_adapt.adapt.options import TrainOptions

    report = adapt_profile(profile, device=device, options=TrainOptions(**(train or {})))
    print(f"adapted '{PROFILE}' in {time.perf_counter() - started:.0f} s: held-out WER "
          f"{report.training.baseline_heldout_wer:.3f} -> {report.training.best_heldout_wer:.3f}", file=sys.stderr)
    if not report.saved:
        raise SystemExit("adaptation did not save an adapter")
    return PROFILE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--count", type=int, default=30, help="samples/test files (default: all 30)")
    parser.add_argument("--speechocean", type=int, default=0,
                        help="also this many speechocean762 train files, when ../shared/data has them")
    parser.add_argument("--hop", type=float, default=StreamingOptions().hop_seconds)
    parser.add_argument("--pause", type=float, default=StreamingOptions().pause_seconds,
                        help="silence that ends a phrase, seconds")
    parser.add_argument("--agreement", type=int, default=StreamingOptions().agreement)
    parser.add_argument("--modes", default="fixed_hop,live",
                        help="fixed_hop (deterministic; its algorithmic latency needs no fast machine), live")
    parser.add_argument("--offline-beam", type=int, default=1,
                        help="beam of the offline reference (default 1: greedy, as live decodes)")
    parser.add_argument("--prompt", action=argparse.BooleanOptionalAction, default=StreamingOptions().use_prompt)
    parser.add_argument("--force-committed", action=argparse.BooleanOptionalAction,
                        default=StreamingOptions().force_committed,
                        help="feed the committed words to the decoder as its prefix (default: off)")
    parser.add_argument("--encoder-window", default=None, metavar="full|SECONDS",
                        help="what the encoder reads per step (default: the library's)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch's choice)")
    parser.add_argument("--with-profile", action="store_true", help="also benchmark an adapted profile")
    parser.add_argument("--base", action=argparse.BooleanOptionalAction, default=True,
                        help="benchmark the plain base model (--no-base: only the profile)")
    parser.add_argument("--home", type=Path, default=REPO / "out" / "bench_live_home",
                        help="ASR_ADAPT_HOME for the benchmark profile (reused when present)")
    parser.add_argument("--train", default="{}",
                        help="TrainOptions overrides (JSON) for the profile, when --home has none yet")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.personal import AdapterSwitcher

    utterances = read_manifest(REPO / "samples" / "test" / "manifest.jsonl")[:args.count]
    sets = [("samples/test", utterances)]
    ocean = REPO.parent / "shared" / "data" / "speechocean762" / "train"
    if args.speechocean and (ocean / "manifest.jsonl").is_file():
        sets.append(("speechocean762", read_manifest(ocean / "manifest.jsonl")[:args.speechocean]))
    options = StreamingOptions(hop_seconds=args.hop, pause_seconds=args.pause, agreement=args.agreement,
                               cut_pause_seconds=min(0.15, args.pause), use_prompt=args.prompt,
                               force_committed=args.force_committed)
    modes = tuple(m for m in args.modes.split(",") if m)
    loaded = resolve_model(args.model, device=args.device)
    runs = []
    load_before = os.getloadavg()
    for name, items in sets if args.base else []:
        runs.append({"set": name, **bench(loaded, items, options, f"{name} base", args.encoder_window, modes,
                                                  args.offline_beam)})
    if args.with_profile:
        profile = ensure_profile(args.home, args.model, args.device, json.loads(args.train))
        switcher = AdapterSwitcher(loaded)
        switcher.use(profile)
        for name, items in sets:
            runs.append({"set": name, **bench(loaded, items, options, f"{name} +profile", args.encoder_window,
                                                      modes, args.offline_beam)})
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_before": load_before, "load_after": os.getloadavg(), "platform": platform.platform(),
               "device": str(loaded.placement), "cuda": torch.cuda.is_available(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    result = {"options": {"hop_seconds": options.hop_seconds, "agreement": options.agreement, "modes": modes,
                          "offline_beam": args.offline_beam,
                          "pause_seconds": options.pause_seconds, "use_prompt": options.use_prompt,
                          "force_committed": options.force_committed,
                          "encoder_window": WhisperDecoder(loaded, encoder_window=args.encoder_window).encoder_window},
              "machine": machine, "runs": runs}
    print("| set | model | mode | files | audio s | latency p50 / p90 s | RTF | s/decode | CPU-clock latency "
          "p50 / p90 s | CPU RTF | algorithmic p50 / p90 s | live WER | offline WER | rel. change |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for mode in modes:
            m = r[mode]
            change = f"{100 * m['relative_wer_change']:+.1f}%" if m["relative_wer_change"] is not None else "n/a"
            print(f"| {r['set']} | {r['model']} | {mode} | {r['files']} | {r['audio_seconds']} | "
                  f"{m['latency_p50']:.2f} / {m['latency_p90']:.2f} | {m['rtf']:.2f} | "
                  f"{m['seconds_per_decode']:.2f} | {m['cpu_latency_p50']:.2f} / {m['cpu_latency_p90']:.2f} | "
                  f"{m['cpu_rtf']:.2f} | {m['algorithmic_p50']:.2f} / {m['algorithmic_p90']:.2f} | "
                  f"{100 * m['live_wer']:.1f}% | {100 * r['offline_wer']:.1f}% | {change} |")
    print(json.dumps(machine))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
