"""``asr-adapt serve``: the OpenAI-compatible transcription server, each user's profile adapter
per request (``--add-key FILE --profiles NAMES`` makes an API key)."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_adapt.core.device import DEVICE_CHOICES
from asr_adapt.models.engines import ENGINES
from asr_adapt.server.options import ServeOptions, parse_allowed_model
from asr_adapt.server.ray_options import RayOptions, require_ray


def register(subparsers) -> None:
    d = ServeOptions()
    parser = subparsers.add_parser(
        "serve", help="serve profiles over OpenAI's transcription API, a live WebSocket and a web page",
        description="Serve transcription over HTTP: POST /v1/audio/transcriptions (OpenAI's API; model = a profile "
                    "or a base model), GET /v1/models, WebSocket /v1/live, and a web page at /. "
                    "See docs/serving.md.")
    parser.add_argument("--host", default=d.host,
                        help=f"address to listen on (default: {d.host}; any other needs --api-keys)")
    parser.add_argument("--port", type=int, default=d.port, help=f"(default: {d.port})")
    parser.add_argument("--api-keys", type=Path, metavar="FILE",
                        help="API keys file: each key's sha256 and the profiles it may use (make keys with --add-key)")
    parser.add_argument("--max-adapters", type=int, default=d.max_adapters,
                        help=f"profile adapters kept loaded per base model, least recently used dropped "
                             f"(default: {d.max_adapters})")
    parser.add_argument("--batch-window", type=float, default=d.batch_window_ms, metavar="MS",
                        help=f"how long a request waits for others to share its batch (default: {d.batch_window_ms:g} ms)")
    parser.add_argument("--max-batch", type=int, default=d.max_batch,
                        help=f"most 30 s pieces decoded together (default: {d.max_batch})")
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                        help="largest upload (default: %(default)g MiB, as OpenAI)")
    parser.add_argument("--max-audio-minutes", type=float, default=d.max_audio_seconds / 60,
                        help="longest audio per request (default: %(default)g)")
    parser.add_argument("--max-streams-per-key", type=int, default=d.max_streams_per_key,
                        help=f"live streams one key may hold open (default: {d.max_streams_per_key})")
    parser.add_argument("--request-timeout", type=float, default=d.request_timeout, metavar="SECONDS",
                        help=f"longest a transcription may take, waiting included (default: {d.request_timeout:g})")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="1 = greedy (faster); default: 5 for Whisper, as transcribe")
    parser.add_argument("--allow-model", action="append", default=[], metavar="[NAME=]PATH",
                        help="also serve this local model folder (or hub id) as NAME (default: the folder's name); "
                             "repeatable. Requests never name paths")
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                        help="where the models run: auto picks CUDA when present (default: auto)")
    parser.add_argument("--dtype", default="auto",
                        help="auto, float32, float16, bfloat16 (with --engine ct2: auto = int8 on the CPU, float16 on "
                             "CUDA; also int8, int8_float16)")
    parser.add_argument("--engine", default=d.engine, metavar="|".join(ENGINES),
                        help=f"what decodes (default: {d.engine}). torch: every profile's adapter on one base model, "
                             "mixed in one batch. ct2: CTranslate2 (Whisper only), each profile merged and converted "
                             "once (seconds, at its first request), batched per profile; faster on the CPU")
    cluster = parser.add_argument_group("scaling out on Ray Serve (pip install 'asr-adapt[ray]'; docs/serving-ray.md)")
    cluster.add_argument("--ray", action="store_true",
                         help="run the server as a Ray Serve application, profiles multiplexed over model replicas")
    cluster.add_argument("--replicas", type=int, default=RayOptions().replicas,
                         help="with --ray: model replicas, each with its own copy of the base model (default: %(default)s)")
    cluster.add_argument("--address", metavar="ADDR",
                         help="with --ray: the Ray cluster to join ('auto', or HEAD:6379); default: this machine's "
                              "if one runs, else a new local one")
    keys = parser.add_argument_group("making an API key (prints it once, stores its hash)")
    keys.add_argument("--add-key", type=Path, metavar="FILE", help="append a new key to this keys file and exit")
    keys.add_argument("--profiles", metavar="NAMES", help="with --add-key: the profiles the key may use "
                                                          "(comma-separated, or * for all)")
    keys.add_argument("--label", default="", help="with --add-key: a note stored next to the key's hash")
    parser.set_defaults(run=run)


def options_from(args) -> ServeOptions:
    return ServeOptions(host=args.host, port=args.port, api_keys=args.api_keys, max_adapters=args.max_adapters,
                        batch_window_ms=args.batch_window, max_batch=args.max_batch,
                        max_upload_bytes=int(args.max_upload_mb * 2**20), max_audio_seconds=args.max_audio_minutes * 60,
                        max_streams_per_key=args.max_streams_per_key, request_timeout=args.request_timeout,
                        beam_size=args.beam_size, device=args.device, dtype=args.dtype, engine=args.engine,
                        allowed_models=tuple(parse_allowed_model(spec) for spec in args.allow_model))


def run(args) -> int:
    from asr_adapt.core.errors import OptionsError

    if args.add_key is not None:
        if not args.profiles:
            raise OptionsError("--add-key needs --profiles NAMES (comma-separated, or * for all)")
        from asr_adapt.server.keys import add_key

        key = add_key(args.add_key, args.profiles, args.label)
        print(key)
        print(f"added a key for {args.profiles} to {args.add_key}; it is shown only now: keep it safe",
              file=sys.stderr)
        return 0
    if args.profiles:
        raise OptionsError("--profiles goes with --add-key")
    options = options_from(args)
    if not args.ray and (args.address is not None or args.replicas != RayOptions().replicas):
        raise OptionsError("--replicas and --address go with --ray")
    from asr_adapt.models.engines import resolve_placement
    from asr_adapt.server.app import serve
    from asr_adapt.server.keys import KeyRing

    if options.api_keys is not None:
        KeyRing(options.api_keys)
    if args.ray:  # the replicas check their device where they run, which may not be here
        return run_on_ray(options, RayOptions(replicas=args.replicas, address=args.address))
    resolve_placement(options.engine, options.device, options.dtype)  # a bad device or keys file fails first
    print(f"asr-adapt serving on http://{options.host}:{options.port} "
          f"({'API keys from ' + str(options.api_keys) if options.api_keys else 'no keys: this machine only'}; "
          f"engine {options.engine})",
          file=sys.stderr, flush=True)
    serve(options)
    return 0


def run_on_ray(options: ServeOptions, ray_options: RayOptions) -> int:
    """``--ray``: the same app as a Ray Serve application (until Ctrl-C)."""
    require_ray()
    from asr_adapt.server.ray_app import serve_on_ray

    serve_on_ray(options, ray_options)
    return 0
