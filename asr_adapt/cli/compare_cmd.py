"""``asr-adapt compare --profile NAME MANIFEST``: WER without and with a profile's adapter."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from asr_adapt.core.device import DEVICE_CHOICES
from asr_adapt.core.files import check_output_folder

from asr_adapt.cli.common import (
    add_adapter_scale_argument, add_decoding_arguments, add_engine_argument, check_placement, decoding_options,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the CLI."""
    parser = subparsers.add_parser(
        "compare", help="word error rate without and with a profile's adapter",
        description="Transcribe every utterance of MANIFEST (a JSONL manifest, a Kaldi data dir, "
                    "or a folder of audio + .txt) with the profile's base model, then with its "
                    "adapter, and report what changed: overall, per speaker and per utterance. "
                    "Writes compare.md, compare.json, compare.png, before.json and after.json.")
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--profile", required=True, metavar="NAME", help="the profile to compare")
    add_adapter_scale_argument(parser)
    parser.add_argument("--output-dir", "-o", type=Path, metavar="DIR",
                        help="where to write the reports (default: the profile's "
                             "reports/compare-<UTC time>)")
    parser.add_argument("--rows", type=int, default=10,
                        help="regressions and fixes listed in the markdown (default: 10)")
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                        help="where to run: auto picks CUDA when present (default: auto)")
    add_engine_argument(parser)
    add_decoding_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Compare, save the reports, print the markdown (paths written go to stderr)."""
    from asr_adapt.report.profile_compare import compare_profile
    from asr_adapt.report.compare_files import save_comparison
    from asr_adapt.data.importers import load_any
    from asr_adapt.profiles.personal import check_adapter_scale, require_adapter
    from asr_adapt.profiles.profile import Profile

    started = datetime.now(timezone.utc)
    options = decoding_options(args)
    check_placement(args)
    # Every cheap check before the model loads: profile, adapter, manifest with text.
    check_adapter_scale(args.adapter_scale)
    if args.output_dir is not None:
        check_output_folder(args.output_dir)
    profile = Profile.open(args.profile)
    notice = require_adapter(profile)
    utterances = load_any(args.manifest, require_text=True)
    if notice:
        print(notice, file=sys.stderr)
    comparison = compare_profile(profile.name, utterances, options, device=args.device, adapter_scale=args.adapter_scale,
                                 progress=sys.stderr.isatty(), engine=args.engine,
                                 meta={"manifest": str(args.manifest)})
    output = args.output_dir or _default_output(profile.reports_dir, started)
    written = save_comparison(comparison, output, max_rows=args.rows)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    sys.stdout.write(comparison.to_markdown(max_rows=args.rows))
    return 0


def _default_output(reports: Path, moment: datetime) -> Path:
    """``reports/compare-<UTC time>``, with a counter if that folder exists already."""
    base = reports / f"compare-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    folder, counter = base, 1
    while folder.exists():
        counter += 1
        folder = base.with_name(f"{base.name}-{counter}")
    return folder
