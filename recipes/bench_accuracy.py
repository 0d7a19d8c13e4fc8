"""Accuracy of adaptation: WER before and after LoRA, on held-out speech (issue 3, item 8).

Not a test: a reproducible measurement whose figures go into BENCHMARKS.md. Every run
trains a fresh adapter on the bundled whisper-tiny.en with asr-adapt's default settings
(``LoraSettings()``, ``TrainOptions(seed=...)``) and scores held-out speech the adapter
never saw. Experiments:

- ``samples``: the shipped sample speaker (samples/enroll, 4.9 min) scored on samples/test;
- ``adults``: group adaptation from ``--minutes`` (5) of ``--speakers`` (4) speechocean762
  adults drawn from ``adult_pool``, scored on the ``adult_eval`` speakers (speaker-disjoint,
  see recipes/speechocean_split.py);
- ``children``: the same with children (``child_pool`` -> ``child_eval``);
- ``curve``: a learning curve: 1, 2, 5 and 10 minutes drawn from all ``adult_pool``
  speakers (nested: the 2-minute set holds the 1-minute set), scored on ``adult_eval``;
- ``all-adults``: every ``adult_pool`` utterance (43 speakers, ~70 min), training capped by
  ``--all-adults-minutes`` of wall time.

``--self-train JSON`` (``SelfTrainOptions`` overrides, ``{}`` for the defaults) adds
self-training to ``adults``/``children``: the first adapter pseudo-labels unlabeled audio and
a second round trains on the enrollment plus the surest labels, as ``asr-adapt adapt
--self-train`` does. ``--unlabeled-from`` says whose audio: ``eval-rest`` (the evaluation
speakers' utterances that are not scored: the group's own unlabeled speech) or ``pool-rest``
(pool speakers not drawn for the enrollment: speaker-disjoint from the scored set).

Seeds change the drawn speakers/utterances and the training order. Results are appended to
``--out`` (JSON) run by run, and a run already there is skipped, so an interrupted benchmark
resumes. ``--eval-per-speaker N`` scores the first N utterances of each evaluation speaker
(the unadapted baseline is scored on exactly the same subset). Scoring decodes as
``asr-adapt eval`` does (a beam of 5 for Whisper since session 6; results recorded before
it were greedy); ``--beam-size 1`` gives the greedy figures.

    python recipes/bench_accuracy.py --experiments samples,adults,children,curve,all-adults \\
        --seeds 0,1,2 [--eval-per-speaker 10] [--out out/bench_accuracy.json]
    python recipes/bench_accuracy.py --report out/bench_accuracy.json   # markdown tables
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from asr_adapt.data.manifest import Utterance, read_manifest

MODEL = "whisper-tiny.en"
CURVE_MINUTES = (1.0, 2.0, 5.0, 10.0)
EXPERIMENTS = ("samples", "adults", "children", "curve", "all-adults")


def first_per_speaker(utterances: list[Utterance], count: int | None) -> list[Utterance]:
    """The first ``count`` utterances of each speaker, in manifest order (all when None)."""
    if not count:
        return list(utterances)
    seen: dict[str, int] = defaultdict(int)
    chosen = []
    for u in utterances:
        if seen[u.speaker] < count:
            seen[u.speaker] += 1
            chosen.append(u)
    return chosen


def take_minutes(utterances: list[Utterance], minutes: float) -> list[Utterance]:
    """The longest prefix of ``utterances`` holding at most ``minutes`` of audio."""
    chosen, total = [], 0.0
    for u in utterances:
        if total + u.duration > minutes * 60:
            break
        chosen.append(u)
        total += u.duration
    return chosen


def draw_group(pool: list[Utterance], speakers: int, minutes: float, seed: int) -> list[Utterance]:
    """``minutes`` of speech from ``speakers`` pool speakers drawn with ``seed``, interleaved
    so that every drawn speaker contributes about equally."""
    rng = random.Random(seed)
    names = sorted({u.speaker for u in pool})
    drawn = sorted(rng.sample(names, speakers))
    by_speaker = {s: [u for u in pool if u.speaker == s] for s in drawn}
    for items in by_speaker.values():
        rng.shuffle(items)
    interleaved = [items[i] for i in range(max(map(len, by_speaker.values())))
                   for items in by_speaker.values() if i < len(items)]
    return take_minutes(interleaved, minutes)


def draw_curve(pool: list[Utterance], minutes: float, seed: int) -> list[Utterance]:
    """A nested draw from the whole pool: the same seed's shorter sets are prefixes."""
    order = list(pool)
    random.Random(1000 + seed).shuffle(order)
    return take_minutes(order, minutes)


class Bench:
    """Runs and records the experiments; one JSON file holds every finished run."""

    def __init__(self, out: Path, eval_per_speaker: int | None, train_overrides: dict | None = None,
                 lora_overrides: dict | None = None, tag: str = "", beam_size: int | None = None,
                 encoder_windows: tuple = ("full",), model: str = MODEL, self_train: dict | None = None):
        self.out = out
        self.self_train = self_train  # SelfTrainOptions overrides; None: no self-training
        self.model = model
        self.encoder_windows = encoder_windows  # the first one gives the row's "wer"
        self.beam_size = beam_size  # None: the model's default (5 for Whisper)
        self.train_overrides = train_overrides or {}
        self.lora_overrides = lora_overrides or {}
        self.tag = tag
        self.eval_per_speaker = eval_per_speaker
        self.results = json.loads(out.read_text()) if out.is_file() else {"runs": []}
        self._audio_cache: dict[Path, object] = {}

    def done(self, key: str) -> dict | None:
        return next((r for r in self.results["runs"] if r["key"] == key), None)

    def record(self, row: dict) -> None:
        self.results["runs"].append(row)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1))

    def audio(self, utterances):
        from asr_adapt.audio.io import load_audio

        for u in utterances:
            if u.audio not in self._audio_cache:
                self._audio_cache[u.audio] = load_audio(u.audio)
        return [self._audio_cache[u.audio] for u in utterances]

    def wer(self, loaded, utterances, encoder_window="full") -> dict:
        from asr_adapt.data.scoring import score
        from asr_adapt.models.transcriber import Transcriber
        from asr_adapt.models.options import TranscribeOptions
        from asr_adapt.models.transcriber import reads_short_windows

        started = time.perf_counter()
        transcriber = Transcriber(loaded, TranscribeOptions(beam_size=self.beam_size, encoder_window=encoder_window))
        hypotheses = transcriber.transcribe_arrays(self.audio(utterances))
        report = score([u.text for u in utterances], hypotheses)
        return {"wer": report.wer, "utterances": len(utterances), "model": self.model,
                "beam_size": transcriber.options.beam_size,
                "encoder_window": encoder_window,
                "short_windows_read": reads_short_windows(loaded, transcriber.options),
                "seconds": round(time.perf_counter() - started, 1)}

    def baseline(self, key: str, test: list[Utterance]) -> dict:
        from asr_adapt.models.loading import resolve_model

        if (row := self.done(key)) is None:
            loaded = resolve_model(self.model, device="cpu", dtype="float32")
            row = {"key": key, "kind": "baseline", **self.wer(loaded, test), "load": os.getloadavg()[0]}
            self.record(row)
            print(f"{key}: WER {100 * row['wer']:.1f}% on {row['utterances']} utterances", flush=True)
        return row

    def adapt(self, key: str, train: list[Utterance], test: list[Utterance], seed: int,
              budget_minutes: float | None = None, unlabeled: list[Utterance] | None = None, **extra) -> dict:
        from asr_adapt.adapt.lora import LoraSettings
        from asr_adapt.data.manifest import summarize
        from asr_adapt.models.loading import resolve_model
        from asr_adapt.adapt.options import TrainOptions
        from asr_adapt.adapt.training import train_adapter

        if self.tag:
            key = f"{key}/{self.tag}"
        if (row := self.done(key)) is not None:
            return row
        loaded = resolve_model(self.model, device="cpu", dtype="float32")
        options = TrainOptions(**{"seed": seed, "time_budget_minutes": budget_minutes, **self.train_overrides})
        started = time.perf_counter()
        _, result = train_adapter(loaded, train, LoraSettings(**self.lora_overrides), options)
        self_training = None
        if self.self_train is not None and unlabeled:
            loaded, result, self_training = self.second_round(loaded, result, train, unlabeled, options)
        train_seconds = time.perf_counter() - started
        # As a saved profile would be: "auto" reads short windows with adapters trained on them only
        # and with LoRA in the decoder too (personal.reads_best_in_short_windows).
        # (No adapter is saved when no epoch beat the base model: then the plain model reads 30 s.)
        loaded.info.update(profile="bench", short_windows=options.short_window_share >= 1.0 and result.best_epoch > 0
                           and result.lora.get("where") != "encoder")
        by_window = {str(w): self.wer(loaded, test, w) for w in self.encoder_windows}  # best adapter in place
        scored = dict(by_window[str(self.encoder_windows[0])])
        scored["wer_by_window"] = {w: r["wer"] for w, r in by_window.items()}
        enrolled = summarize(train)
        row = {"key": key, "kind": "adapted", "seed": seed, **extra, **scored,
               "train_overrides": self.train_overrides, "lora_overrides": self.lora_overrides,
               "train_minutes": round(enrolled.minutes, 2), "train_utterances": enrolled.count,
               "train_speakers": enrolled.speakers, "train_seconds": round(train_seconds, 1),
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "heldout_wer_before": result.baseline_heldout_wer, "heldout_wer_best": result.best_heldout_wer,
               "peak_rss_mb": result.peak_memory_mb, "load": os.getloadavg()[0],
               "self_training": self_training}
        self.record(row)
        print(f"{key}: WER {100 * row['wer']:.1f}% ({row['train_minutes']} min of {row['train_speakers']} "
              f"speakers, best epoch {row['best_epoch']}/{row['epochs_run']}, train {row['train_seconds']} s)",
              flush=True)
        return row


    def second_round(self, loaded, first, train: list[Utterance], unlabeled: list[Utterance], options):
        """Self-training as ``asr-adapt adapt --self-train`` does it; returns the kept round's
        (loaded, result) and what happened, with the pseudo-labels' true WER (the bench knows
        the transcripts the user would not have)."""
        from asr_adapt.data.scoring import score
        from asr_adapt.adapt.lora import LoraSettings
        from asr_adapt.models.loading import resolve_model
        from asr_adapt.adapt.options import SelfTrainOptions
        from asr_adapt.adapt.self_training import pseudo_label, round_two_wins
        from asr_adapt.adapt.training import train_adapter
        from asr_adapt.data.unlabeled import UnlabeledPiece

        st_options = SelfTrainOptions(**self.self_train)
        pieces = [UnlabeledPiece(source=str(u.audio), start=0.0, audio=a) for u, a in zip(unlabeled, self.audio(unlabeled))]
        started = time.perf_counter()
        labels = pseudo_label(loaded, pieces, st_options)
        truth = {str(u.audio): u.text for u in unlabeled}
        everything = [label for label in labels.labels if label.text.strip()]
        info = {**labels.summary(), "label_seconds": round(time.perf_counter() - started, 1),
                "unlabeled_from": self.unlabeled_from,
                "pseudo_wer_all": score([truth[x.source] for x in everything], [x.text for x in everything]).wer,
                "pseudo_wer_kept": score([truth[x.source] for x in labels.kept], [x.text for x in labels.kept]).wer
                if labels.kept else None,
                "round_one_best_epoch": first.best_epoch, "round_one_heldout_wer": first.best_heldout_wer}
        fresh = resolve_model(self.model, device="cpu", dtype="float32")
        _, second = train_adapter(fresh, train, LoraSettings(**self.lora_overrides), options,
                                  pseudo_labeled=labels.pairs())
        info.update(round_two_best_epoch=second.best_epoch, round_two_heldout_wer=second.best_heldout_wer,
                    kept_round=2 if round_two_wins(first, second) else 1)
        print(f"  self-training: kept {info['kept']} of {info['pieces']} pseudo-labels (their WER "
              f"{100 * (info['pseudo_wer_kept'] or 0):.1f}%, all {100 * info['pseudo_wer_all']:.1f}%); "
              f"round {info['kept_round']} kept", flush=True)
        return (fresh, second, info) if info["kept_round"] == 2 else (loaded, first, info)


def unlabeled_audio(parts: dict, group: str, source: str, scored: list[Utterance],
                    enrolled: list[Utterance]) -> list[Utterance]:
    """Unlabeled utterances for self-training (their transcripts are never used for training)."""
    if source == "eval-rest":
        scored_ids = {u.id for u in scored}
        return [u for u in parts[f"{group}_eval"] if u.id not in scored_ids]
    drawn = {u.speaker for u in enrolled}
    return [u for u in parts[f"{group}_pool"] if u.speaker not in drawn]


def run(args) -> None:
    windows = tuple(w if w in ("auto", "full") else float(w) for w in args.encoder_windows.split(","))
    bench = Bench(args.out, args.eval_per_speaker, json.loads(args.train), json.loads(args.lora), args.tag,
                  args.beam_size, windows, args.model,
                  self_train=json.loads(args.self_train) if args.self_train is not None else None)
    bench.unlabeled_from = args.unlabeled_from
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = args.experiments.split(",")
    unknown = set(wanted) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiments {sorted(unknown)}; choose from {EXPERIMENTS}")
    parts = None
    if set(wanted) - {"samples"}:
        from speechocean_split import split_speechocean

        parts = split_speechocean(args.data)
    for name in wanted:
        if name == "samples":
            enroll = read_manifest(REPO / "samples" / "enroll" / "manifest.jsonl")
            test = read_manifest(REPO / "samples" / "test" / "manifest.jsonl")
            bench.baseline("samples/baseline", test)
            for seed in seeds:
                bench.adapt(f"samples/seed{seed}", enroll, test, seed)
        elif name in ("adults", "children"):
            group = "adult" if name == "adults" else "child"
            test = first_per_speaker(parts[f"{group}_eval"], args.eval_per_speaker)
            bench.baseline(f"{name}/baseline", test)
            for seed in seeds:
                train = draw_group(parts[f"{group}_pool"], args.speakers, args.minutes, seed)
                unlabeled = unlabeled_audio(parts, group, args.unlabeled_from, test, train)
                bench.adapt(f"{name}/{args.speakers}spk-{args.minutes:g}min/seed{seed}", train, test, seed,
                            unlabeled=unlabeled, group=name, speakers_drawn=args.speakers, minutes_asked=args.minutes)
        elif name == "curve":
            test = first_per_speaker(parts["adult_eval"], args.eval_per_speaker)
            bench.baseline("adults/baseline", test)
            for seed in seeds[: args.curve_seeds]:
                for minutes in CURVE_MINUTES:
                    train = draw_curve(parts["adult_pool"], minutes, seed)
                    bench.adapt(f"curve/{minutes:g}min/seed{seed}", train, test, seed, minutes_asked=minutes)
        elif name == "all-adults":
            test = first_per_speaker(parts["adult_eval"], args.eval_per_speaker)
            bench.baseline("adults/baseline", test)
            bench.adapt(f"all-adults/seed{seeds[0]}", parts["adult_pool"], test, seeds[0],
                        budget_minutes=args.all_adults_minutes)


def report(path: Path) -> str:
    """Markdown tables (mean, spread, relative reduction) from a results file."""
    runs = json.loads(path.read_text())["runs"]
    by_key = {r["key"]: r for r in runs}
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        if r["kind"] == "adapted":
            groups[re.sub(r"/seed\d+", "", r["key"])].append(r)  # seeds of one variant together
    lines = ["| experiment | trained on | seeds | WER before | WER after (mean ± sd; per seed) | relative reduction "
             "(mean; min-max) | train s (mean) |", "|---|---|---:|---:|---|---|---:|"]
    for name, rows in groups.items():
        family = name.split("/")[0]
        base_key = {"samples": "samples/baseline", "children": "children/baseline"}.get(family, "adults/baseline")
        before = by_key[base_key]["wer"]
        after = [r["wer"] for r in rows]
        reductions = [(before - a) / before for a in after]
        sd = statistics.stdev(after) if len(after) > 1 else 0.0
        trained = (f"{statistics.mean(r['train_minutes'] for r in rows):.1f} min, "
                   f"{statistics.mean(r['train_speakers'] for r in rows):.0f} spk")
        lines.append(f"| {name} | {trained} | {len(rows)} | {100 * before:.1f}% | {100 * statistics.mean(after):.1f}% "
                     f"± {100 * sd:.1f} ({', '.join(f'{100 * a:.1f}' for a in after)}) | "
                     f"{100 * statistics.mean(reductions):.1f}% ({100 * min(reductions):.1f}-"
                     f"{100 * max(reductions):.1f}) | {statistics.mean(r['train_seconds'] for r in rows):.0f} |")
    bases = [r for r in runs if r["kind"] == "baseline"]
    lines.append("")
    lines.append("Scored sets: " + "; ".join(f"{r['key'].split('/')[0]} {r['utterances']} utterances" for r in bases))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default="samples,adults,children,curve,all-adults")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--speakers", type=int, default=4, help="speakers drawn for group adaptation")
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes of group enrollment")
    parser.add_argument("--curve-seeds", type=int, default=1, help="seeds of the learning curve")
    parser.add_argument("--all-adults-minutes", type=float, default=15.0,
                        help="training wall-time cap for the all-adults run")
    parser.add_argument("--eval-per-speaker", type=int, default=10)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "speechocean762" / "train")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_accuracy.json")
    parser.add_argument("--train", default="{}", help='TrainOptions overrides as JSON, e.g. \'{"learning_rate": 3e-4}\'')
    parser.add_argument("--lora", default="{}", help='LoraSettings overrides as JSON, e.g. \'{"where": "encoder"}\'')
    parser.add_argument("--tag", default="", help="suffix of the result keys of this variant (needed with overrides)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="decoding beam for scoring (default: the model's, 5 for Whisper; results before "
                             "2026-11-29 19:00 UTC were scored greedily, 1). Give each beam its own --out")
    parser.add_argument("--model", default=MODEL, help="the model adapted (default: %(default)s); give each "
                                                           "model its own --out")
    parser.add_argument("--encoder-windows", default="full",
                        help="comma-separated encoder windows to score adapted models with (auto, full, "
                             "seconds); the first gives the row's WER")
    parser.add_argument("--self-train", default=None, metavar="JSON",
                        help='self-training on unlabeled audio for adults/children: SelfTrainOptions overrides '
                             '(\'{}\' for the defaults); give it a --tag')
    parser.add_argument("--unlabeled-from", choices=("eval-rest", "pool-rest"), default="eval-rest",
                        help="whose unlabeled audio self-training reads: the scored speakers' other "
                             "utterances, or pool speakers not enrolled (default: %(default)s)")
    parser.add_argument("--report", type=Path, help="print markdown tables from a results file and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    run(args)
    print(report(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
