"""``asr-adapt transcribe FILE...``: offline transcription of audio files."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_adapt.audio.io import audio_info
from asr_adapt.core.errors import AudioError, OptionsError
from asr_adapt.core.files import check_output_folder, write_text_atomic
from asr_adapt.decode.formats import OUTPUT_FORMATS, render

from asr_adapt.cli.common import (
    add_decoding_arguments, add_model_arguments, add_profile_argument, check_placement, decoding_options,
    load_model_or_profile,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("transcribe", help="transcribe audio files",
                                   description="Transcribe audio files of any rate, channel count and length.")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files (wav, flac, ogg, mp3)")
    parser.add_argument("--output", "-f", choices=OUTPUT_FORMATS, default="txt", help="output format (default: txt)")
    parser.add_argument("--output-dir", "-o", type=Path,
                        help="write one FILE_STEM.FORMAT per input here instead of printing")
    add_model_arguments(parser, engine=True)
    add_profile_argument(parser)
    add_decoding_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    options = decoding_options(args)
    check_placement(args)  # a bad engine, device or dtype fails before any audio is read
    # Check every input before loading the model, so a typo in the tenth file costs nothing.
    for path in args.files:
        info = audio_info(path)
        if info.frames == 0:
            raise AudioError(f"{path}: holds no audio (zero length); record or export it again")
    if args.output_dir is not None:
        check_output_folder(args.output_dir)
    if args.output_dir is None and args.output == "srt" and len(args.files) > 1:
        raise OptionsError("several files as SRT need --output-dir, one subtitle file per input")
    loaded = load_model_or_profile(args)
    from asr_adapt.models.transcriber import Transcriber

    transcriber = Transcriber(loaded, options)
    results = []
    try:
        for transcript in transcriber.transcribe_files(args.files, progress=sys.stderr.isatty()):
            if args.output_dir is not None:
                _write(args, transcript)
            results.append(transcript)
    except KeyboardInterrupt:
        _keep_partial(args, results, transcriber.interrupted)
        raise
    if args.output_dir is None:
        sys.stdout.write(render(results, args.output))
    else:
        print(f"wrote {len(results)} {args.output} file(s) to {args.output_dir}", file=sys.stderr)
    return 0


def _write(args, transcript, suffix: str = "") -> Path:
    target = args.output_dir / f"{Path(transcript.source).stem}{suffix}.{args.output}"
    write_text_atomic(target, render([transcript], args.output))
    return target


def _keep_partial(args, results, partial) -> None:
    """Ctrl-C: finished files are written (or printed); a file cut short is written as
    ``STEM.partial.FORMAT`` with what was decoded of it (to stdout without --output-dir)."""
    if args.output_dir is None:
        sys.stdout.write(render(results + partial, args.output))
        return
    for transcript in partial:
        target = _write(args, transcript, ".partial")
        last = transcript.segments[-1].end if transcript.segments else 0.0
        print(f"kept {target}: the first {last / 60:.1f} min of {transcript.duration / 60:.1f}", file=sys.stderr)
