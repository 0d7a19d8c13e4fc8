"""Reliability figures (issue 20): the hostile-input and fault suite, and memory on a long file.

Not a test: a measurement whose figures go into BENCHMARKS.md.

1. ``--suite``: runs ``tests/reliability`` (the README's test command runs it too) with a
   JUnit report and counts the cases by kind: tried, clean (one line, right exit code, no
   traceback, profile store unchanged), failed; the fault cases (kill -9, lock, full disk)
   are counted apart.
2. ``--long-file HOURS``: writes a recording of ``HOURS`` (one of the shipped sample
   speaker's test sentences every ``--speech-every`` seconds, silence between) and transcribes it with ``asr-adapt transcribe`` in a
   fresh process, greedy, on the bundled whisper-tiny.en; the peak resident memory (RSS) of
   that process and its wall time are recorded. ``--whole`` also runs the same file the way
   asr-adapt read files before issue 20 (the whole file in memory), side by side.

    python recipes/bench_reliability.py --suite
    python recipes/bench_reliability.py --long-file 2 --whole
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent

#: The transcribe command as a fresh process; WHOLE makes it read files whole (the old path).
RUNNER = """
import sys
from asr_adapt.cli.main import main
if sys.argv[1] == "whole":
    from asr_adapt.audio.io import load_audio
    import asr_adapt.models.transcriber as transcriber
    transcriber.audio_blocks = lambda path, max_seconds=None: iter((load_audio(path, max_seconds),))
sys.exit(main(sys.argv[2:]))
"""


def suite(junit: Path) -> dict:
    """Run tests/reliability; count cases per file and outcome."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "reliability"),
                    f"--junitxml={junit}"], cwd=REPO, check=False)
    kinds: dict[str, dict[str, int]] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        kind = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "clean")
        counts = kinds.setdefault(kind, {"tried": 0, "clean": 0, "failed": 0, "skipped": 0})
        counts["tried"] += 1
        counts[outcome] += 1
    return {"kinds": kinds, "seconds": round(time.perf_counter() - started, 1)}


def long_recording(path: Path, hours: float, speech_every: float) -> float:
    """Write ``hours`` of 16 kHz int16 audio: one of the sample speaker's test sentences every
    ``speech_every`` seconds, silence between (written block by block). Silent windows are
    skipped without running the model, so the run measures reading and cutting the whole
    file, with a decode now and then, in minutes rather than the hours a 2-hour talk takes
    to decode on two cores."""
    sentences = [sf.read(p, dtype="float32")[0] for p in sorted((REPO / "samples" / "test").glob("*.flac"))]
    slot = int(speech_every * 16000)
    total = int(hours * 3600 * 16000)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as out:
        written, index = 0, 0
        while written < total:
            sentence = sentences[index % len(sentences)][:slot]
            piece = np.concatenate([sentence, np.zeros(slot - len(sentence), dtype=np.float32)])[: total - written]
            out.write(piece)
            written += len(piece)
            index += 1
    return written / 16000


def transcribe_peak(mode: str, audio: Path, out_dir: Path) -> dict:
    """Transcribe ``audio`` in a fresh process; its peak RSS (MiB) and wall seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, mode, "transcribe", str(audio), "--beam-size", "1",
                             "--output-dir", str(out_dir)], cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    text = (out_dir / f"{audio.stem}.txt").read_text() if (out_dir / f"{audio.stem}.txt").is_file() else ""
    return {"mode": mode, "exit": os.waitstatus_to_exitcode(status), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "seconds": round(seconds, 1), "words": len(text.split())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="store_true", help="run tests/reliability and count its cases")
    parser.add_argument("--long-file", type=float, default=None, metavar="HOURS", help="memory on a long recording")
    parser.add_argument("--speech-every", type=float, default=300.0, metavar="SECONDS",
                        help="one test sentence every SECONDS of the long file, silence between (default: 300)")
    parser.add_argument("--whole", action="store_true", help="also read the long file whole (before issue 20)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_reliability.json")
    args = parser.parse_args(argv)
    results: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.suite:
            results["suite"] = {**suite(scratch / "junit.xml"), "commit": commit}
        if args.long_file:
            audio = scratch / "long.wav"
            seconds = long_recording(audio, args.long_file, args.speech_every)
            runs = [transcribe_peak("streamed", audio, scratch / "streamed")]
            if args.whole:
                runs.append(transcribe_peak("whole", audio, scratch / "whole"))
            results["long_file"] = {"hours": args.long_file, "seconds": seconds, "speech_every": args.speech_every,
                                    "runs": runs, "commit": commit,
                                    "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
