"""``asr-adapt manifest``: import audio + transcripts into a manifest, or check one."""

from __future__ import annotations

import argparse
import dataclasses

from asr_adapt.core.files import check_output_file
from asr_adapt.data import importers, manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``manifest import`` and ``manifest check`` to the CLI."""
    parser = subparsers.add_parser(
        "manifest", help="import or check a list of utterances (JSONL manifest)",
        description="Build a JSONL manifest from a folder of audio + .txt, a Kaldi data dir "
                    "or another manifest, or check an existing manifest.")
    actions = parser.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)

    importer = actions.add_parser(
        "import", help="write a manifest from a folder, a Kaldi data dir or a manifest",
        description="A folder is searched for .wav/.flac/.ogg/.mp3 with same-named .txt "
                    "transcripts (audio without one is unlabeled); a folder with wav.scp is "
                    "read as a Kaldi data dir.")
    importer.add_argument("source", metavar="SOURCE",
                          help="audio folder, Kaldi data dir, or .jsonl manifest")
    importer.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                          help="manifest to write (audio inside its folder is stored relative)")
    importer.add_argument("--speaker", metavar="NAME", type=_name,
                          help="give every utterance this speaker")
    importer.add_argument("--domain", metavar="NAME", type=_name,
                          help="give every utterance this domain")
    importer.set_defaults(run=run)

    checker = actions.add_parser("check", help="validate a manifest and summarize it")
    checker.add_argument("manifest", metavar="MANIFEST", help=".jsonl manifest to check")
    checker.add_argument("--require-text", action="store_true",
                         help="fail if any utterance has no transcript")
    checker.set_defaults(run=run)


def _name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``manifest`` action; return the exit status."""
    if args.manifest_command == "import":
        return _import(args)
    return _check(args)


def _import(args: argparse.Namespace) -> int:
    check_output_file(args.output, "-o")
    utterances = importers.load_any(args.source)
    overrides = {key: value for key, value in (("speaker", args.speaker), ("domain", args.domain))
                 if value is not None}
    if overrides:
        utterances = [dataclasses.replace(u, **overrides) for u in utterances]
    path = manifest.write_manifest(utterances, args.output)
    print(f"{path}: {manifest.summarize(utterances)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    utterances = manifest.read_manifest(args.manifest, require_text=args.require_text)
    print(f"{args.manifest}: ok, {manifest.summarize(utterances)}")
    return 0
