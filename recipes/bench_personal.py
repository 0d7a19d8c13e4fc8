"""Real voices: personal adaptation measured speaker by speaker over speechocean762 (issue 19).

Not a test: a reproducible measurement whose figures go into BENCHMARKS.md. For each speaker
of the speechocean762 train split in ../shared (125 Mandarin-L1 speakers, 20 read utterances
each), a fresh adapter is trained on the bundled whisper-tiny.en from the speaker's first
``--size`` utterances (manifest order, default settings, seed 0) and the speaker's last 8
utterances are scored before and after, decoded as ``asr-adapt compare`` decodes (a beam of
5). The same adapter is also scored on speech outside the profile, the *generic cost*:

- ``samples/generic`` (12 synthetic voices shipped with asr-adapt);
- ``outside``: the last 4 utterances of 8 fixed speechocean762 speakers (4 adults, 4
  children, drawn from the train split with seed 19; the speaker's own are left out).

The generic cost is decoded greedily (before and after alike: a relative figure, and a
beam of 5 would triple the benchmark's decoding).

Speakers are taken in a fixed order (the sorted ids shuffled with seed 762, so any prefix
mixes adults and children); ``--speakers`` limits how many, ``--skip`` starts later in the
order. The speakers the fixed schedule was fitted on (the first TRACE_SPEAKERS of the pools)
and the group adapter's speakers are always left out (``held_back``), except by ``--config
trace``. Each run's result is appended to ``--out`` (JSON lines) as soon as it is measured,
and a run already there is skipped, so a long benchmark resumes where it stopped and can be
split over several sittings (about 2 minutes a speaker on a 2-core CPU).

Configurations (``--config``):

- ``default``: asr-adapt's defaults (what ``asr-adapt enroll NAME --from DIR`` trains);
- ``trace``: every epoch of an 8-epoch run on all utterances, no held-out slice, scored
  greedily on the speaker's test and on the generic set: the curves that fitted the
  fixed schedule (``--train '{"selection": "fixed", "fixed_epochs": 8}'`` is implied);
- ``stack``: the default run started from a group adapter (``--base-adapter DIR``, e.g. a
  group profile's adapter folder; ``--make-group`` trains one on ``adult_pool`` speakers);
- any name with ``--train JSON`` / ``--lora JSON`` overrides of TrainOptions/LoraSettings.

    python recipes/bench_personal.py --speakers 60 [--sizes 12] [--curve-speakers 20]
    python recipes/bench_personal.py --report recipes/results/bench_personal.jsonl   # the committed results
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.options import TrainOptions
from asr_adapt.core.samples import GENERIC_MANIFEST
from asr_adapt.data.manifest import Utterance, read_manifest
from speechocean_split import ADULT_MIN_AGE, SEED, default_data_dir, speaker_ages, split_speechocean

MODEL = "whisper-tiny.en"
#: Utterances scored per speaker: the last 8 of each speaker's 20.
TEST_PER_SPEAKER = 8
#: Beam of the generic-cost decoding (greedy; the personal test uses compare's beam of 5).
COST_BEAM = 1
#: Outside speakers (4 adults, 4 children) and utterances each: the generic cost on real voices.
OUTSIDE_SPEAKERS, OUTSIDE_PER_SPEAKER, OUTSIDE_SEED = 4, 4, 19


def speaker_order(by_speaker: dict[str, list[Utterance]]) -> list[str]:
    """Every speaker, in the benchmark's fixed order (sorted ids shuffled with seed 762)."""
    order = sorted(by_speaker)
    random.Random(SEED).shuffle(order)
    return order


def outside_set(by_speaker: dict[str, list[Utterance]], ages: dict[str, int]) -> list[Utterance]:
    """The fixed outside-the-profile set: the last utterances of 4 adults and 4 children."""
    rng = random.Random(OUTSIDE_SEED)
    chosen = []
    for adults in (True, False):
        group = sorted(s for s in by_speaker if (ages[s] >= ADULT_MIN_AGE) == adults)
        chosen += rng.sample(group, OUTSIDE_SPEAKERS)
    return [u for s in chosen for u in by_speaker[s][-OUTSIDE_PER_SPEAKER:]]


class Bench:
    """One benchmark file: runs measured so far, and how to measure one more."""

    def __init__(self, out: Path, beam_size: int | None, scales: tuple[float, ...] = ()):
        self.out = out
        self.beam_size = beam_size
        #: Adapter scales also scored (besides 1): the same adapter, its LoRA deltas scaled.
        self.scales = scales
        self.rows = {}
        if out.is_file():
            for line in out.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row
        self.generic = read_manifest(GENERIC_MANIFEST)
        self.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip()

    def record(self, row: dict) -> None:
        self.rows[row["key"]] = row
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.out.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def wer(self, loaded, utterances: list[Utterance], beam_size: int | None = None) -> dict:
        """WER of ``loaded`` on ``utterances`` as ``asr-adapt compare`` decodes (or greedy)."""
        from asr_adapt.audio.io import load_audio
        from asr_adapt.data.scoring import score
        from asr_adapt.models.options import TranscribeOptions
        from asr_adapt.models.transcriber import Transcriber

        beam = self.beam_size if beam_size is None else beam_size
        transcriber = Transcriber(loaded, TranscribeOptions(beam_size=beam))
        hypotheses = transcriber.transcribe_arrays([load_audio(u.audio) for u in utterances])
        report = score([u.text for u in utterances], hypotheses)
        return {"wer": report.wer, "words": report.reference_words, "errors": report.errors}

    def scores(self, loaded, test: list[Utterance], outside: list[Utterance]) -> dict:
        """The personal test as ``compare`` decodes it; the generic cost greedily (a relative
        figure, before vs after, and a beam of 5 would triple the benchmark's decoding)."""
        return {"test": self.wer(loaded, test), "generic": self.wer(loaded, self.generic, COST_BEAM),
                "outside": self.wer(loaded, outside, COST_BEAM)}

    def unadapted(self, loaded, speaker: str, test: list[Utterance], outside: list[Utterance]) -> dict:
        """The base model's scores for ``speaker`` (test) and for the cost sets (shared by every
        speaker, but the outside set without the speaker's own): measured once each."""
        keys = {"test": f"base/{speaker}", "generic": "base/generic",
                "outside": f"base/outside-{len(outside)}-{outside[0].id}"}
        parts = {"test": (test, None), "generic": (self.generic, COST_BEAM), "outside": (outside, COST_BEAM)}
        for name, key in keys.items():
            if key not in self.rows:
                utterances, beam = parts[name]
                self.record({"key": key, **self.wer(loaded, utterances, beam)})
        return {name: {k: self.rows[key][k] for k in ("wer", "words", "errors")} for name, key in keys.items()}

    def run(self, config: str, speaker: str, size: int, enroll: list[Utterance], test: list[Utterance],
            outside: list[Utterance], age: int, train: dict, lora: dict, base_adapter: str | None) -> dict:
        """Train on ``enroll``, score ``test``, the generic set and ``outside``; one result row."""
        from asr_adapt.adapt.training import train_adapter
        from asr_adapt.models.loading import resolve_model

        key = f"{config}/{speaker}/{size}"
        if key in self.rows:
            return self.rows[key]
        trace = config == "trace"
        options = TrainOptions(**({"selection": "fixed", "fixed_epochs": 8} if trace else {}), **train)
        started = time.perf_counter()
        loaded = resolve_model(MODEL, device="cpu", dtype="float32")
        before = self.unadapted(loaded, speaker, test, outside)
        curve = []

        def on_epoch(record) -> None:
            if trace:
                curve.append({"epoch": record.epoch, "test": self.wer(loaded, test, 1)["wer"],
                              "generic": self.wer(loaded, self.generic, 1)["wer"]})

        _, result = train_adapter(loaded, enroll, LoraSettings(**lora), options, on_epoch=on_epoch,
                                  start_from=base_adapter)
        after = self.scores(loaded, test, outside)
        scaled = {}
        for scale in self.scales:
            from peft.helpers import rescale_adapter_scale

            with rescale_adapter_scale(loaded.model, scale):
                scaled[str(scale)] = self.scores(loaded, test, outside)
        row = {"key": key, "config": config, "speaker": speaker, "age": age,
               "group": "adult" if age >= ADULT_MIN_AGE else "child", "size": size,
               "enroll_seconds": round(sum(u.duration or 0 for u in enroll), 1),
               "before": before, "after": after, "scaled": scaled, "kept_adapter": result.improved,
               "selection": result.selection, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "heldout_before": result.baseline_heldout_wer, "heldout_after": result.best_heldout_wer,
               "train_seconds": result.wall_seconds, "run_seconds": round(time.perf_counter() - started, 1),
               "train": train, "lora": lora, "base_adapter": base_adapter, "curve": curve,
               "commit": self.commit, "date": datetime.date.today().isoformat()}
        self.record(row)
        return row


#: Speakers in the benchmark's group adapter (adults of recipes/speechocean_split's adult_pool).
GROUP_SPEAKERS = 4
#: Pool speakers whose epoch-by-epoch traces fitted the fixed schedule (the first of the pools, in order).
TRACE_SPEAKERS = 5


def group_speakers(by_speaker: dict[str, list[Utterance]], data: Path) -> list[str]:
    """The group adapter's speakers: the first GROUP_SPEAKERS adult_pool speakers in the fixed order."""
    pool = {u.speaker for u in split_speechocean(data)["adult_pool"]}
    return [s for s in speaker_order(by_speaker) if s in pool][:GROUP_SPEAKERS]


def held_back(by_speaker: dict[str, list[Utterance]], data: Path) -> set[str]:
    """Speakers the benchmark leaves out: those the schedule was fitted on (the first
    TRACE_SPEAKERS of the pools, as ``--only pool --config trace`` takes them) and the group's."""
    parts = split_speechocean(data)
    pools = {u.speaker for name, part in parts.items() if name.endswith("pool") for u in part}
    traced = [s for s in speaker_order(by_speaker) if s in pools][:TRACE_SPEAKERS]
    return set(traced) | set(group_speakers(by_speaker, data))


def make_group(by_speaker: dict[str, list[Utterance]], data: Path, folder: Path) -> int:
    """Train the group adapter that ``--config stack`` starts from, as ``asr-adapt enroll GROUP
    --from`` would for these speakers (default settings), into ``folder/adapter``."""
    from asr_adapt.adapt.training import train_adapter
    from asr_adapt.models.loading import resolve_model

    speakers = group_speakers(by_speaker, data)
    utterances = [u for s in speakers for u in by_speaker[s]]
    loaded = resolve_model(MODEL, device="cpu", dtype="float32")
    peft_model, result = train_adapter(loaded, utterances, LoraSettings(), TrainOptions(), progress=True)
    peft_model.save_pretrained(str(folder / "adapter"))
    (folder / "speakers.json").write_text(json.dumps(speakers))
    (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    print(f"group adapter of {len(speakers)} adults ({len(utterances)} utterances): held-out WER "
          f"{100 * result.baseline_heldout_wer:.1f}% -> {100 * result.best_heldout_wer:.1f}% (epoch {result.best_epoch})"
          f" in {result.wall_seconds:.0f} s -> {folder / 'adapter'}")
    return 0


def relative_cut(before: float, after: float) -> float | None:
    """(before - after) / before; None when there was nothing to cut."""
    return None if before <= 0 else (before - after) / before


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3 if values else (float("nan"),) * 3
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def summarize(rows: list[dict]) -> dict:
    """Median and quartiles of the relative cut, share better/worse, the generic cost."""
    cuts = [c for c in (relative_cut(r["before"]["test"]["wer"], r["after"]["test"]["wer"]) for r in rows)
            if c is not None]
    points = [100 * (r["after"]["test"]["wer"] - r["before"]["test"]["wer"]) for r in rows]
    pooled = {when: sum(r[when]["test"]["errors"] for r in rows) / max(1, sum(r[when]["test"]["words"] for r in rows))
              for when in ("before", "after")}

    def cost(part: str) -> float | None:
        before = [r["before"][part]["wer"] for r in rows]
        after = [r["after"][part]["wer"] for r in rows]
        if not before or statistics.mean(before) == 0:
            return None
        return (statistics.mean(after) - statistics.mean(before)) / statistics.mean(before)

    q1, median, q3 = quartiles(cuts)
    return {"speakers": len(rows), "q1": q1, "median": median, "q3": q3,
            "better": sum(p < 0 for p in points) / max(1, len(rows)),
            "worse": sum(p > 0 for p in points) / max(1, len(rows)),
            "worse_2pt": sum(p > 2 for p in points), "worst_points": max(points, default=float("nan")),
            "pooled_before": pooled["before"], "pooled_after": pooled["after"],
            "generic_cost": cost("generic"), "outside_cost": cost("outside"),
            "kept": sum(bool(r["kept_adapter"]) for r in rows)}


def fit_table(rows: list[dict]) -> str:
    """From ``trace`` runs: per enrollment size and epoch, the median relative cut of the
    speakers' greedy test WER, how many got worse, and the generic cost (greedy, relative to
    the unadapted model: epoch 0 of the trace when it was recorded)."""
    lines = ["| size | epoch | speakers | median cut | worse | generic cost (mean) |", "|---|---|---|---|---|---|"]
    traces = [r for r in rows if r.get("config") == "trace" and r.get("curve")]
    for size in sorted({r["size"] for r in traces}):
        part = [r for r in traces if r["size"] == size]
        for epoch in range(1, 1 + max(c["epoch"] for r in part for c in r["curve"])):
            cuts, worse, cost = [], 0, []
            for r in part:
                by_epoch = {c["epoch"]: c for c in r["curve"]}
                start = by_epoch.get(0) or {"test": r["before"]["test"]["wer"], "generic": r["before"]["generic"]["wer"]}
                if epoch not in by_epoch:
                    continue
                now = by_epoch[epoch]
                if start["test"] > 0:
                    cuts.append((start["test"] - now["test"]) / start["test"])
                worse += now["test"] > start["test"]
                if start["generic"] > 0:
                    cost.append((now["generic"] - start["generic"]) / start["generic"])
            if cuts:
                lines.append(f"| {size} | {epoch} | {len(cuts)} | {100 * statistics.median(cuts):.1f}% | {worse} | "
                             f"{100 * statistics.mean(cost):+.1f}% |")
    return "\n".join(lines)


#: Configurations compared speaker by speaker in the report (on the speakers both have).
PAIRS = (("default", "stack", 4), ("fixed3-full", "default", 12), ("fixed3-decayed", "default", 12))


def paired_table(rows: list[dict]) -> str:
    """Each of :data:`PAIRS` on the speakers both configurations ran: median relative cut,
    pooled WER, and the speakers worse than unadapted by more than 2 points."""
    lines = ["| size | speakers | configuration | median cut | pooled WER | worse > 2 pt | generic cost | outside cost |",
             "|---|---|---|---|---|---|---|---|"]
    for first, second, size in PAIRS:
        by = {c: {r["speaker"]: r for r in rows if (r.get("config"), r.get("size")) == (c, size)} for c in (first, second)}
        common = sorted(set(by[first]) & set(by[second]))
        if not common:
            continue
        for config in (first, second):
            s = summarize([by[config][speaker] for speaker in common])
            pct = lambda v: "n/a" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
            lines.append(f"| {size} | {len(common)} | {config} | {100 * s['median']:.1f}% | "
                         f"{100 * s['pooled_before']:.1f}% -> {100 * s['pooled_after']:.1f}% | {s['worse_2pt']} | "
                         f"{pct(s['generic_cost'])} | {pct(s['outside_cost'])} |")
    return "\n".join(lines)


def report(path: Path) -> str:
    """Markdown tables of a benchmark file: one line per configuration, size and group."""
    rows = [row for row in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
            if "config" in row]
    fitted = fit_table(rows)
    lines = ["| config | size | group | speakers | median cut (q1-q3) | better / worse | worse > 2 pt | "
             "WER pooled before -> after | generic cost | outside cost |", "|" + "---|" * 10]
    groups = sorted({(r["config"], r["size"], r["group"]) for r in rows})
    for config, size, group in groups + sorted({(c, s, "all") for c, s, _ in groups}):
        part = [r for r in rows if (r["config"], r["size"]) == (config, size) and group in ("all", r["group"])]
        s = summarize(part)
        pct = lambda v: "n/a" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
        lines.append(f"| {config} | {size} | {group} | {s['speakers']} | {100 * s['median']:.1f}% "
                     f"({100 * s['q1']:.1f}-{100 * s['q3']:.1f}%) | {100 * s['better']:.0f}% / {100 * s['worse']:.0f}% | "
                     f"{s['worse_2pt']} (worst {s['worst_points']:+.1f}) | {100 * s['pooled_before']:.1f}% -> "
                     f"{100 * s['pooled_after']:.1f}% | {pct(s['generic_cost'])} | {pct(s['outside_cost'])} |")
    text = "\n".join(lines) + "\n\nSpeaker by speaker, on the speakers both ran:\n\n" + paired_table(rows)
    return text + ("\n\nTrace (greedy, epoch by epoch):\n\n" + fitted if fitted.count("\n") > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="speechocean762 train folder (default: ../shared)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_personal.jsonl")
    parser.add_argument("--config", default="default")
    parser.add_argument("--speakers", type=int, default=60, help="how many speakers, in the fixed order")
    parser.add_argument("--skip", type=int, default=0, help="start this far into the order")
    parser.add_argument("--only", choices=("adult", "child", "pool", "eval"), default=None,
                        help="only adults, children, or the speakers of recipes/speechocean_split's pools or eval sets")
    parser.add_argument("--exclude", type=Path, action="append", default=[], metavar="RESULTS",
                        help="leave out the speakers of this results file (e.g. those the schedule was fitted on) "
                             "or JSON list (a group's speakers.json)")
    parser.add_argument("--sizes", default="12", help="enrollment sizes (utterances), comma-separated")
    parser.add_argument("--curve-speakers", type=int, default=0,
                        help="the first N speakers also at 4 and 8 utterances (the learning curve)")
    parser.add_argument("--train", type=json.loads, default={}, help="TrainOptions overrides (JSON)")
    parser.add_argument("--lora", type=json.loads, default={}, help="LoraSettings overrides (JSON)")
    parser.add_argument("--base-adapter", default=None, help="start every adapter from this PEFT adapter folder")
    parser.add_argument("--beam-size", type=int, default=None, help="scoring beam (default: compare's, 5)")
    parser.add_argument("--scales", default="", help="also score each adapter at these scales (e.g. 0.5,0.75)")
    parser.add_argument("--make-group", type=Path, default=None, metavar="DIR",
                        help="train a group adapter on GROUP_SPEAKERS adult_pool speakers (all 20 utterances each, "
                             "default settings) into DIR and stop; its speakers are left out of later runs")
    parser.add_argument("--report", type=Path, default=None, help="print the tables of a results file and stop")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    data = args.data or default_data_dir()
    if not (data / "manifest.jsonl").is_file():
        print(f"no speechocean762 manifest in {data}; pass --data", file=sys.stderr)
        return 2
    utterances = read_manifest(data / "manifest.jsonl", check_audio=False)
    ages = speaker_ages(utterances)
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    order = speaker_order(by_speaker)
    if args.only in ("adult", "child"):
        order = [s for s in order if (ages[s] >= ADULT_MIN_AGE) == (args.only == "adult")]
    elif args.only:
        parts = split_speechocean(data)
        members = {u.speaker for name, part in parts.items() if name.endswith(args.only) for u in part}
        order = [s for s in order if s in members]
    group_file = Path(args.base_adapter).parent / "speakers.json" if args.base_adapter else None
    if group_file is not None and group_file.is_file():  # the group's own speakers are not outside it
        args.exclude.append(group_file)
    if args.config != "trace":  # the speakers a default was fitted on, or the group is made of, are not test speakers
        order = [s for s in order if s not in held_back(by_speaker, data)]
    for results in args.exclude:
        if results.suffix == ".json":  # a list of speakers (a group's speakers.json)
            seen = set(json.loads(results.read_text()))
        else:
            seen = {json.loads(line).get("speaker") for line in results.read_text().splitlines() if line.strip()}
        order = [s for s in order if s not in seen]
    order = order[args.skip:args.skip + args.speakers]
    outside_all = outside_set(by_speaker, ages)
    if args.make_group:
        return make_group(by_speaker, data, args.make_group)
    bench = Bench(args.out, args.beam_size, tuple(float(x) for x in args.scales.split(",") if x))
    sizes = [int(s) for s in args.sizes.split(",")]
    for index, speaker in enumerate(order):
        own = by_speaker[speaker]
        outside = [u for u in outside_all if u.speaker != speaker]
        run_sizes = sorted(set(sizes) | ({4, 8} if index < args.curve_speakers else set()), reverse=True)
        for size in run_sizes:
            row = bench.run(args.config, speaker, size, own[:size], own[-TEST_PER_SPEAKER:], outside, ages[speaker],
                            args.train, args.lora, args.base_adapter)
            print(f"{index + 1}/{len(order)} {speaker} ({row['group']}, {size} utt): "
                  f"{100 * row['before']['test']['wer']:.1f}% -> {100 * row['after']['test']['wer']:.1f}%, "
                  f"generic {100 * row['before']['generic']['wer']:.1f}% -> {100 * row['after']['generic']['wer']:.1f}%, "
                  f"outside {100 * row['before']['outside']['wer']:.1f}% -> {100 * row['after']['outside']['wer']:.1f}% "
                  f"({row['run_seconds']:.0f} s)", flush=True)
    print(report(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
