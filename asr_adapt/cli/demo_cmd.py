"""``asr-adapt demo``: the whole product in one offline run on the shipped sample speaker."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_adapt.cli.common import add_training_arguments, print_adapt_report, training_settings
from asr_adapt.core.device import DEVICE_CHOICES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="offline demo: WER before, adaptation, WER after, report",
        description="Enroll the synthetic sample speaker shipped in samples/enroll, adapt the bundled "
                    "Whisper tiny.en to it, and compare WER before and after on samples/test.")
    parser.add_argument("--out", "-o", type=Path, default=Path("asr-adapt-demo"),
                        help="where the report goes (default: ./asr-adapt-demo)")
    parser.add_argument("--samples", type=Path, default=None, help="samples folder (default: the checkout's)")
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES))
    add_training_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    """Run the demo; progress and the adaptation go to stderr, a short summary to stdout."""
    from asr_adapt.report.demo import SAMPLES_DIR, demo_summary, run_demo

    lora, options = training_settings(args)
    result = run_demo(args.out, samples=args.samples or SAMPLES_DIR, device=args.device, lora=lora,
                      options=options, progress=sys.stderr.isatty(),
                      say=lambda line: print(line, file=sys.stderr, flush=True))
    print_adapt_report(result.adaptation, sys.stderr)
    print("\n".join(["", *demo_summary(result, args.out)]))
    return 0
