"""A deterministic, speaker-disjoint split of speechocean762 (train) for benchmarks.

speechocean762's train split holds 125 Mandarin-L1 speakers, 20 read utterances each:
67 adults (ages 19-37) and 58 children (ages 6-15). Speakers, never utterances, are split:

- adults (age >= ``ADULT_MIN_AGE``): ``adult_eval`` (24 speakers) and ``adult_pool`` (the
  other 43, the source of adaptation data);
- children (age < ``ADULT_MIN_AGE``): ``child_eval`` (20 speakers) and ``child_pool`` (38).

How the evaluation speakers are drawn (stable across machines and Python versions): the
group's speaker ids are sorted as strings, shuffled with ``random.Random(SEED)`` (SEED = 762),
and the first N are the evaluation set. Within each part, utterances keep the manifest's
order. Changing SEED or the counts changes every figure that uses this split: don't.

Library use (later recipes import this module)::

    from speechocean_split import split_speechocean   # a recipe run as a script: recipes/ is on sys.path
    parts = split_speechocean(default_data_dir())     # {"adult_eval": [Utterance, ...], ...}

CLI: ``python recipes/speechocean_split.py [--data DIR] [--out out/speechocean]`` writes
``adult_eval.jsonl``, ``adult_pool.jsonl``, ``child_eval.jsonl``, ``child_pool.jsonl``
(absolute audio paths, so the data stays where it is) and prints a summary.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from asr_adapt.data.manifest import Utterance, read_manifest, summarize, write_manifest

#: Youngest age counted as an adult (the corpus has no speaker aged 16-18).
ADULT_MIN_AGE = 16
#: Seed of the shuffle that picks evaluation speakers.
SEED = 762
#: Evaluation speakers per group; the rest of the group is the adaptation pool.
EVAL_SPEAKERS = {"adult": 24, "child": 20}
#: The parts, in the order they are reported.
PARTS = ("adult_eval", "adult_pool", "child_eval", "child_pool")


def default_data_dir() -> Path:
    """``<repo>/../shared/data/speechocean762/train``."""
    return (REPO.parent / "shared" / "data" / "speechocean762" / "train").resolve()


def speaker_ages(utterances: list[Utterance]) -> dict[str, int]:
    """Each speaker's age; raises ValueError if a speaker lacks one or has two."""
    ages: dict[str, int] = {}
    for u in utterances:
        age = u.extra.get("age")
        if not isinstance(age, int) or isinstance(age, bool):
            raise ValueError(f"utterance {u.id!r}: speaker {u.speaker!r} has no integer 'age'")
        if ages.setdefault(u.speaker, age) != age:
            raise ValueError(f"speaker {u.speaker!r} has two ages ({ages[u.speaker]} and {age})")
    return ages


def pick_eval_speakers(speakers: list[str], count: int, seed: int = SEED) -> list[str]:
    """The first ``count`` of the sorted speaker ids after a seeded shuffle (sorted result)."""
    order = sorted(speakers)
    if count > len(order):
        raise ValueError(f"asked for {count} evaluation speakers out of {len(order)}")
    random.Random(seed).shuffle(order)
    return sorted(order[:count])


def split_speechocean(data_dir: str | Path | None = None) -> dict[str, list[Utterance]]:
    """Split the manifest in ``data_dir`` (or a ``manifest.jsonl`` path) by speaker.

    Returns ``{"adult_eval", "adult_pool", "child_eval", "child_pool"}`` -> utterances with
    absolute audio paths, in manifest order. The four parts share no speaker.
    """
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    manifest = data if data.suffix == ".jsonl" else data / "manifest.jsonl"
    utterances = read_manifest(manifest, check_audio=False)
    ages = speaker_ages(utterances)
    groups = {"adult": [s for s, a in ages.items() if a >= ADULT_MIN_AGE],
              "child": [s for s, a in ages.items() if a < ADULT_MIN_AGE]}
    part_of: dict[str, str] = {}
    for group, speakers in groups.items():
        chosen = set(pick_eval_speakers(speakers, EVAL_SPEAKERS[group]))
        for speaker in speakers:
            part_of[speaker] = f"{group}_eval" if speaker in chosen else f"{group}_pool"
    parts: dict[str, list[Utterance]] = {name: [] for name in PARTS}
    for u in utterances:
        parts[part_of[u.speaker]].append(u)
    return parts


def summary_table(parts: dict[str, list[Utterance]]) -> str:
    """A markdown table: speakers, utterances, minutes and ages per part."""
    lines = ["| part | speakers | utterances | minutes | ages |", "|---|---:|---:|---:|---|"]
    for name, utterances in parts.items():
        s = summarize(utterances)
        ages = [u.extra["age"] for u in utterances]
        lines.append(f"| {name} | {s.speakers} | {s.count} | {s.minutes:.1f} | {min(ages)}-{max(ages)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="speechocean762 train folder (holding manifest.jsonl); default: %(default)s")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "speechocean",
                        help="folder for the four manifests; default: %(default)s")
    args = parser.parse_args(argv)
    parts = split_speechocean(args.data)
    for name, utterances in parts.items():
        write_manifest(utterances, args.out / f"{name}.jsonl")
    print(f"speechocean762 split (seed {SEED}, adults: age >= {ADULT_MIN_AGE}) -> {args.out}")
    print(summary_table(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
