"""``asr-adapt live``: live transcription from the microphone (or a file replayed in real
time), with a speaker profile's adapter; Ctrl-C stops and writes the transcript."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from asr_adapt.cli.common import (
    add_adapter_scale_argument, add_model_arguments, check_placement, print_input_devices, say_if_base_model,
)

NO_MICROPHONE_LIVE = ("no microphone found; plug one in (see --list-devices), or transcribe a "
                      "recording with --replay FILE")


def register(subparsers) -> None:
    from asr_adapt.models.options import DEFAULT_ENCODER_WINDOW
    from asr_adapt.decode.streaming import StreamingOptions

    defaults = StreamingOptions()
    parser = subparsers.add_parser(
        "live", help="transcribe the microphone live (Ctrl-C stops and saves the transcript)",
        description="Transcribe speech as it is spoken. Committed text appears as you speak (the "
                    "dimmed tail may still change); Ctrl-C stops, flushes the last words and writes "
                    "the transcript. While it runs, type a profile name (or 'base') and Enter to "
                    "switch adapters without reloading the model.")
    parser.add_argument("--profile", metavar="NAME", help="use this speaker profile's adapter on its base model")
    add_adapter_scale_argument(parser)
    parser.add_argument("--input-device", help="microphone: an index or part of a name (see --list-devices)")
    parser.add_argument("--list-devices", action="store_true", help="list the audio inputs and exit")
    parser.add_argument("--replay", type=Path, metavar="FILE",
                        help="instead of the microphone, play this audio file in real time")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE",
                        help="where to write the transcript (default: live-DATE-TIME.txt here)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="store the captured audio in the profile as unlabeled audio (for domain confusion)")
    stream = parser.add_argument_group("streaming")
    stream.add_argument("--hop", type=float, default=defaults.hop_seconds,
                        help=f"seconds of new audio between decoding steps (default: {defaults.hop_seconds})")
    stream.add_argument("--pause", type=float, default=defaults.pause_seconds,
                        help=f"silence that ends a phrase, seconds (default: {defaults.pause_seconds})")
    stream.add_argument("--prompt", action=argparse.BooleanOptionalAction, default=defaults.use_prompt,
                        help="give Whisper the text before the buffer as its prompt "
                             f"(default: {'on' if defaults.use_prompt else 'off'}; --no-prompt turns it off)")
    stream.add_argument("--force-committed", action=argparse.BooleanOptionalAction,
                        default=defaults.force_committed,
                        help="feed the words already committed to the decoder instead of decoding them "
                             "again at each step: about 15%% faster per step, but an unadapted model's "
                             "mistakes then carry over (default: off)")
    stream.add_argument("--max-new-tokens", type=int, default=440,
                        help="longest text per decoding step, in tokens; Whisper only (default: 440)")
    stream.add_argument("--encoder-window", default=DEFAULT_ENCODER_WINDOW, metavar="auto|full|SECONDS",
                        help="how much audio Whisper's encoder reads per step: 'full' (its 30 s window), "
                             "at least SECONDS (the buffer plus 1 s: faster), or 'auto': short for the "
                             "base model and for group profiles (trained on short windows, LoRA on both "
                             "halves), full for one voice's encoder-only adapters and for adapters that "
                             f"saw 30 s windows (default: {DEFAULT_ENCODER_WINDOW})")
    stream.add_argument("--threads", type=int, default=0,
                        help="CPU threads for the model (default: 0 = the engine's choice)")
    add_model_arguments(parser, engine=True)
    parser.set_defaults(run=run)


def run(args) -> int:
    from asr_adapt.audio.io import audio_info, load_audio
    from asr_adapt.core.errors import AudioError, OptionsError
    from asr_adapt.decode.live import LiveOptions
    from asr_adapt.decode.streaming import StreamingOptions
    from asr_adapt.models.options import check_encoder_window

    if args.list_devices:
        return print_input_devices("transcribe a recording with --replay FILE")
    options = StreamingOptions(hop_seconds=args.hop, pause_seconds=args.pause, use_prompt=args.prompt,
                               force_committed=args.force_committed, cut_pause_seconds=min(0.15, args.pause))
    live_options = LiveOptions()
    placement = check_placement(args)  # a bad engine or device fails before anything loads
    if args.threads < 0:
        raise OptionsError(f"--threads must be 0 or more, got {args.threads}")
    args.encoder_window = check_encoder_window(args.encoder_window)
    if not 1 <= args.max_new_tokens <= 444:
        raise OptionsError(f"max new tokens must be between 1 and 444, got {args.max_new_tokens}")
    if args.keep_audio and not args.profile:
        raise OptionsError("--keep-audio stores the audio in a profile: give --profile NAME")
    output = _check_output(args.output)
    profile = _check_profile(args)
    # The audio source is checked before the slow model load: a typo costs nothing.
    if args.replay is not None:
        info = audio_info(args.replay)
        if info.frames == 0:
            raise AudioError(f"{args.replay}: holds no audio (zero length); record or export it again")
        replay = load_audio(args.replay)
        device = None
    else:
        replay = None
        device = _resolve_microphone(args.input_device)

    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.engines import switcher_for

    base = profile.info.base_model if profile is not None else args.model
    print(f"loading {base} on {placement}{' with profile ' + repr(profile.name) if profile else ''} ...",
          file=sys.stderr, flush=True)
    loaded = resolve_model(base, device=args.device, dtype=args.dtype, engine=args.engine, threads=args.threads)
    switcher = switcher_for(loaded)
    if profile is not None:
        switcher.use(profile.name, args.adapter_scale)
    return _session(args, loaded, switcher, profile, options, live_options, replay, device, output)


def _session(args, loaded, switcher, profile, options, live_options, replay, device, output) -> int:
    from asr_adapt.audio.devices import MicrophoneError
    from asr_adapt.core.errors import OptionsError
    from asr_adapt.decode.live import AudioKeeper, LiveSession, default_transcript_path, write_transcript
    from asr_adapt.decode.streaming import StreamingProcessor
    from asr_adapt.ui.live_terminal import make_display, start_command_reader

    if options.use_prompt and not loaded.engine.takes_prompt:
        raise OptionsError(f"--prompt gives Whisper the text so far; '{loaded.name}' is a {loaded.backend} CTC "
                           "model, which takes no prompt: drop --prompt")
    decoder = loaded.engine.streaming_decoder(loaded, max_new_tokens=args.max_new_tokens,
                                              encoder_window=args.encoder_window)
    processor = StreamingProcessor(decoder, options)
    keeper = AudioKeeper(profile, live_options.keep_piece_seconds, options.vad) if args.keep_audio else None
    commands = start_command_reader() if _interactive() else None
    source, where = _open_source(args, replay, device)
    hint = "; type a profile name + Enter to switch" if commands is not None else ""
    print(f"{where} (Ctrl-C to stop{hint})", file=sys.stderr, flush=True)
    display = make_display(sys.stdout)
    previous = _handle_signals(_stop)
    try:
        result = LiveSession(source, processor, display, keeper=keeper, switcher=switcher, commands=commands,
                             options=live_options).run()
        _handle_signals(signal.SIG_IGN)  # writing takes a moment: a third Ctrl-C must not lose the text
        target = output or default_transcript_path()
        try:
            path = write_transcript(result, target)
        except OSError as error:  # the folder went away meanwhile: keep the text anyway, here
            path = write_transcript(result, default_transcript_path())
            print(f"asr-adapt: could not write {target} ({error.strerror or error}); wrote {path} instead",
                  file=sys.stderr)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    words = len(result.text.split())
    print(f"transcript ({words} words, {result.audio_seconds:.1f} s of audio) written to {path}", file=sys.stderr)
    if result.audio_seconds:
        print(f"real-time factor {result.real_time_factor:.2f} ({result.decodes} decoding steps)", file=sys.stderr)
    if result.overflows or result.dropped_blocks:
        print(f"warning: audio was lost {result.overflows + result.dropped_blocks} time(s) (input overflow: "
              "the computer could not keep up); the transcript may miss words there", file=sys.stderr)
    if result.kept:
        print(f"kept {len(result.kept)} piece(s) of audio in profile '{profile.name}' as unlabeled audio "
              f"({profile.unlabeled_dir})", file=sys.stderr)
    if result.error:
        raise MicrophoneError(f"{result.error}; the transcript so far is in {path}")
    return 0


def _open_source(args, replay, device):
    """The audio to transcribe, and a line saying where it comes from: the replayed file, or
    the microphone once it delivers audio."""
    from asr_adapt.audio.devices import MicrophoneError
    from asr_adapt.audio.microphone import MicrophoneSource
    from asr_adapt.audio.sources import ArraySource
    from asr_adapt.decode.live import wait_for_audio

    if replay is not None:
        return ArraySource(replay, realtime=True), f"replaying {args.replay} in real time"
    source = MicrophoneSource(device["index"])
    try:
        source.open()
    except MicrophoneError as error:
        raise _live_hint(error) from None
    if not wait_for_audio(source, timeout=source.start_timeout):
        source.close()
        raise MicrophoneError(f"the microphone '{device['name']}' delivered no audio within "
                              f"{source.start_timeout:g} s; check it is not muted or used by another "
                              "program, or choose another with --input-device")
    return source, f"listening on '{device['name']}'"


def _stop(signum, frame):
    """Ctrl-C and SIGTERM stop the session the same way: flush, write, exit cleanly."""
    raise KeyboardInterrupt


def _handle_signals(handler) -> dict:
    """Install ``handler`` for SIGINT and SIGTERM; return the previous handlers. Set
    explicitly because a shell starts background jobs with SIGINT ignored, and Ctrl-C
    (or a kill) is how this command is meant to end."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (embedded use): leave signals alone
            pass
    return previous


def _check_output(output: Path | None) -> Path | None:
    from asr_adapt.core.errors import OptionsError
    from asr_adapt.core.files import check_output_file

    if output is None:
        return None
    check_output_file(output, "--output")
    folder = output.parent if str(output.parent) else Path(".")
    if folder.exists() and not os.access(folder, os.W_OK):
        raise OptionsError(f"cannot write the transcript into {folder}: permission denied")
    return output


def _check_profile(args):
    if args.profile is None:
        return None
    from asr_adapt.models.bundled import DEFAULT_MODEL
    from asr_adapt.profiles.personal import check_adapter_scale
    from asr_adapt.profiles.profile import Profile
    from asr_adapt.profiles.info import ProfileError

    check_adapter_scale(args.adapter_scale)
    profile = Profile.open(args.profile)
    say_if_base_model(profile)
    if args.model != DEFAULT_MODEL and args.model != profile.info.base_model:
        raise ProfileError(f"profile '{profile.name}' was made on base model '{profile.info.base_model}', "
                           f"not '{args.model}'; drop --model or use --model {profile.info.base_model}")
    return profile


def _resolve_microphone(spec):
    from asr_adapt.audio.devices import MicrophoneError, resolve_input_device

    try:
        return resolve_input_device(spec)
    except MicrophoneError as error:
        raise _live_hint(error) from None


def _live_hint(error):
    """The microphone module's hints speak of enrollment; here the way out is --replay."""
    from asr_adapt.audio.devices import NO_MICROPHONE, MicrophoneError

    return MicrophoneError(NO_MICROPHONE_LIVE) if str(error) == NO_MICROPHONE else error


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


