"""``asr-adapt eval MANIFEST``: transcribe a labeled manifest and score WER/CER."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_adapt.core.files import check_output_folder

from asr_adapt.cli.common import (
    add_decoding_arguments, add_model_arguments, add_profile_argument, check_placement, decoding_options,
    load_model_or_profile,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="word error rate of a model on a labeled manifest",
        description="Transcribe every utterance of MANIFEST (a JSONL manifest, a Kaldi data dir, "
                    "or a folder of audio + .txt) and score it after Whisper English normalization.")
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--output-dir", "-o", type=Path, help="write report.json and report.md here")
    parser.add_argument("--format", choices=("md", "json"), default="md", help="what to print (default: md)")
    parser.add_argument("--rows", type=int, default=20, help="utterances listed in the markdown (default: 20)")
    add_model_arguments(parser, engine=True)
    add_profile_argument(parser)
    add_decoding_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from asr_adapt.report.evaluate import evaluate_manifest
    from asr_adapt.report.eval_report import report_markdown, save_report
    from asr_adapt.data.importers import load_any

    options = decoding_options(args)
    check_placement(args)
    if args.output_dir is not None:  # a bad folder is named before the decoding, not after it
        check_output_folder(args.output_dir)
    utterances = load_any(args.manifest)  # validated (audio present, text present) before loading the model
    loaded = load_model_or_profile(args)
    report = evaluate_manifest(loaded, utterances, options, progress=sys.stderr.isatty())
    if args.output_dir is not None:
        written = save_report(report, args.output_dir, max_utterances=args.rows)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    sys.stdout.write(report.to_json() + "\n" if args.format == "json" else report_markdown(report, max_utterances=args.rows))
    return 0
