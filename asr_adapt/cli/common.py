"""Flags shared by several sub-commands, mapped 1:1 onto library options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_adapt.audio.io import DEFAULT_MAX_SECONDS
from asr_adapt.core.device import DEVICE_CHOICES
from asr_adapt.models.bundled import DEFAULT_MODEL
from asr_adapt.models.engines import DEFAULT_ENGINE, ENGINES
from asr_adapt.models.options import TranscribeOptions


def add_model_arguments(parser: argparse.ArgumentParser, engine: bool = False) -> None:
    """--model/--device/--dtype, and --engine for commands that only decode (``engine``)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="bundled name (whisper-tiny.en, whisper-base), a transformers folder (Whisper "
                            "or a wav2vec2/HuBERT/WavLM CTC model), a CTranslate2 folder, or a hub id such "
                            f"as facebook/wav2vec2-base-960h (default: {DEFAULT_MODEL})")
    group.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                       help="where to run: auto picks CUDA when present (default: auto)")
    group.add_argument("--dtype", default="auto",
                       help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, float16, bfloat16; with "
                            "--engine ct2: auto (int8 on CPU, float16 on GPU), int8, float32, float16, bfloat16")
    if engine:
        add_engine_argument(group)


def add_engine_argument(parser) -> None:
    """``--engine torch|ct2`` (a parser or an argument group)."""
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                        help="what decodes: torch (transformers; the engine that trains) or ct2 (CTranslate2, "
                             "Whisper only: the model or profile converted once and cached, int8 on CPU; "
                             f"see docs/engines.md) (default: {DEFAULT_ENGINE})")


def check_placement(args: argparse.Namespace):
    """--engine/--device/--dtype checked before anything slow (DeviceError, one line)."""
    from asr_adapt.models.engines import resolve_placement

    return resolve_placement(getattr(args, "engine", None), args.device, getattr(args, "dtype", "auto"))


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TranscribeOptions()
    group = parser.add_argument_group("decoding")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help=f"windows decoded at once (default: {defaults.batch_size})")
    group.add_argument("--beam-size", type=int, default=defaults.beam_size,
                       help="1 = greedy (faster); CTC models decode greedily only (default: 5 for Whisper, "
                            "as openai-whisper and faster-whisper do; 1 for CTC)")
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                       help=f"longest text per 30 s window, in tokens; Whisper only (default: {defaults.max_new_tokens})")
    group.add_argument("--language", default=defaults.language,
                       help="spoken language for multilingual models (default: en)")
    group.add_argument("--encoder-window", default=defaults.encoder_window, metavar="auto|full|SECONDS",
                       help="how much audio Whisper's encoder reads per piece: 'full' (its 30 s window), at "
                            "least SECONDS (the piece plus 1 s), or 'auto': short windows for a profile "
                            "trained on them only with LoRA in the decoder too, as live reads them, the full window otherwise "
                            "(default: full; BENCHMARKS.md measured auto on real speech: worse)")
    group.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_SECONDS / 60,
                       help="refuse files longer than this (default: %(default).0f)")


def decoding_options(args: argparse.Namespace) -> TranscribeOptions:
    return TranscribeOptions(batch_size=args.batch_size, beam_size=args.beam_size,
                             max_new_tokens=args.max_new_tokens, language=args.language,
                             max_seconds=args.max_minutes * 60, encoder_window=args.encoder_window)


def load_model(args: argparse.Namespace):
    """Resolve --model/--device/--dtype (import deferred: torch is slow to import)."""
    from asr_adapt.models.loading import resolve_model

    return resolve_model(args.model, device=args.device, dtype=args.dtype, engine=getattr(args, "engine", None))


def add_profile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME",
                        help="use this speaker profile's adapter on its base model")
    add_adapter_scale_argument(parser)


def add_adapter_scale_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter-scale", type=float, default=None, metavar="S",
                        help="scale the profile's adapter: 1 as trained (default), 0 the base model; between, "
                             "less of the personal fit and less cost on other voices")


def say_if_base_model(profile) -> None:
    """One line on stderr when ``profile`` keeps no adapter and reads with its base model."""
    from asr_adapt.profiles.personal import require_adapter

    notice = require_adapter(profile)
    if notice:
        print(notice, file=sys.stderr)


def load_model_or_profile(args: argparse.Namespace):
    """--profile NAME (its base model + adapter) or plain --model."""
    if getattr(args, "profile", None) is not None:  # --profile "" is a bad name, not "no profile"
        from asr_adapt.profiles.engines import load_profile_on

        model = args.model if args.model != DEFAULT_MODEL else None
        loaded, profile = load_profile_on(args.profile, engine=getattr(args, "engine", None), model=model, device=args.device,
                                          dtype=args.dtype, adapter_scale=args.adapter_scale)
        say_if_base_model(profile)
        return loaded
    return load_model(args)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """LoRA and training flags, mapped 1:1 onto LoraSettings and TrainOptions."""
    from asr_adapt.adapt.lora import AUTO, PLACES, LoraSettings
    from asr_adapt.adapt.options import SELECTIONS, TrainOptions

    lora, train = LoraSettings(), TrainOptions()
    group = parser.add_argument_group("adaptation")
    group.add_argument("--rank", type=int, default=lora.rank, help=f"LoRA rank (default: {lora.rank})")
    group.add_argument("--alpha", type=float, default=lora.alpha, help=f"LoRA alpha (default: {lora.alpha})")
    group.add_argument("--lora-dropout", type=float, default=lora.dropout,
                       help=f"LoRA dropout (default: {lora.dropout})")
    group.add_argument("--adapt", choices=PLACES + (AUTO,), default=lora.where, dest="lora_where",
                       help="which half of Whisper gets adapters: auto = the encoder for one speaker, both "
                            "for a group (measured best for each); CTC models have only an encoder "
                            f"(default: {lora.where})")
    group.add_argument("--epochs", type=int, default=None,
                       help=f"epochs to train (default: at most {train.epochs} with a held-out slice; the fitted "
                            "schedule without one, see --select)")
    group.add_argument("--learning-rate", "--lr", type=float, default=train.learning_rate,
                       help=f"(default: {train.learning_rate})")
    group.add_argument("--train-batch-size", type=int, default=train.batch_size,
                       help=f"30 s windows per step (default: {train.batch_size})")
    group.add_argument("--pack-seconds", type=float, default=train.pack_seconds,
                       help=f"pack utterances into windows this long; 0 = one per window (default: {train.pack_seconds})")
    group.add_argument("--patience", type=int, default=train.patience,
                       help=f"stop after this many epochs without a better held-out WER (default: {train.patience})")
    group.add_argument("--min-epochs", type=int, default=train.min_epochs,
                       help=f"never stop early before this many epochs (default: {train.min_epochs})")
    group.add_argument("--select", choices=SELECTIONS, default=train.selection, dest="selection",
                       help="which epoch's adapter is kept: heldout (the best on a held-out slice, early stopping), "
                            "last (train --epochs, keep the last), fixed (hold nothing out, train a fixed schedule "
                            f"of epochs fitted on other speakers), auto: fixed below {train.heldout_from} utterances, "
                            f"heldout from there (default: {train.selection})")
    group.add_argument("--keep-share", type=float, default=train.keep_share, metavar="S",
                       help="share of the trained deltas the saved adapter keeps (default: 0.5 with the fixed "
                            "schedule, 1 with a held-out slice or a group's adapter to start from)")
    group.add_argument("--fixed-epochs", type=int, default=train.fixed_epochs, metavar="N",
                       help="epochs of the fixed schedule (default: fitted by enrollment size, see docs/adaptation.md)")
    group.add_argument("--heldout-speaker", action=argparse.BooleanOptionalAction, default=train.heldout_speaker,
                       help="for a group of 3 or more speakers, judge epochs on one whole speaker held out "
                            "of training instead of a random slice of everyone "
                            f"(default: {'on' if train.heldout_speaker else 'off'})")
    group.add_argument("--short-windows", type=float, default=train.short_window_share, metavar="SHARE",
                       dest="short_window_share",
                       help="share of utterances trained alone in a short encoder window (the utterance + 1 s) "
                            "instead of a packed 30 s one, so that live transcription can read short windows "
                            f"with this profile (Whisper; default: {train.short_window_share})")
    group.add_argument("--speed-perturb", type=float, nargs="+", default=list(train.speed_factors), metavar="FACTOR",
                       dest="speed_factors",
                       help="each epoch, play every utterance at one of these speeds, e.g. 0.9 1.0 1.1 (default: off)")
    group.add_argument("--spec-augment", action=argparse.BooleanOptionalAction, default=train.spec_augment,
                       help="mask bands and stretches of the features while training (Whisper; default: "
                            f"{'on' if train.spec_augment else 'off'})")
    group.add_argument("--seed", type=int, default=train.seed, help=f"(default: {train.seed})")
    group.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop training after this many minutes")
    add_domain_arguments(parser)


def add_domain_arguments(parser: argparse.ArgumentParser) -> None:
    """Domain confusion flags, mapped 1:1 onto DomainOptions and UnlabeledOptions."""
    from asr_adapt.adapt.options import POOLINGS, DomainOptions

    d = DomainOptions()
    group = parser.add_argument_group("domain confusion (unlabeled audio)")
    group.add_argument("--domain-confusion", action="store_true",
                       help="also train on your unlabeled audio (the profile's kept audio and --unlabeled) "
                            "so the adapter carries over to it (gradient reversal)")
    group.add_argument("--unlabeled", action="append", type=Path, default=[], metavar="PATH",
                       help="unlabeled audio: a folder, a manifest (text not needed) or a file; repeatable")
    group.add_argument("--unlabeled-minutes", type=float, default=None, metavar="MINUTES",
                       help="use at most this much unlabeled audio, spread over all of it")
    group.add_argument("--domain-weight", type=float, default=d.weight,
                       help=f"how hard the encoder is pushed to confuse the domain head: with --domain-balance "
                            f"gradient, the reversed gradient's size as a share of the task gradient's; with "
                            f"loss, the domain loss's weight (default: {d.weight})")
    group.add_argument("--domain-balance", choices=("gradient", "loss"), default=d.balance,
                       help=f"how --domain-weight applies (default: {d.balance})")
    group.add_argument("--domain-lambda", type=float, default=d.lambda_max,
                       help=f"final gradient reversal strength (default: {d.lambda_max})")
    group.add_argument("--domain-layer", type=int, default=d.layer,
                       help=f"encoder layer the domain head reads; -1 = output (default: {d.layer})")
    group.add_argument("--domain-pooling", choices=POOLINGS, default=d.pooling,
                       help=f"how frames are pooled for the domain head (default: {d.pooling})")
    group.add_argument("--unlabeled-ratio", type=float, default=d.unlabeled_ratio,
                       help=f"unlabeled windows per labeled window in each step (default: {d.unlabeled_ratio})")
    group.add_argument("--domain-hidden", type=int, default=d.hidden_size,
                       help=f"hidden size of the domain head (default: {d.hidden_size})")
    group.add_argument("--plot", nargs="?", const=True, default=None, metavar="PNG",
                       help="draw encoder states of labeled vs unlabeled audio before and after (PCA); "
                            "default file: the profile's reports folder")
    add_self_train_arguments(parser)


def add_self_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Self-training flags, mapped 1:1 onto SelfTrainOptions."""
    from asr_adapt.adapt.options import SelfTrainOptions

    s = SelfTrainOptions()
    group = parser.add_argument_group("self-training (unlabeled audio)")
    group.add_argument("--self-train", action="store_true",
                       help="a second round: the first adapter transcribes your unlabeled audio (the profile's "
                            "kept audio and --unlabeled), and its surest transcripts train a fresh adapter "
                            "with the enrollment; the better round on held-out speech is kept")
    group.add_argument("--pseudo-keep", type=float, default=s.keep_share, metavar="SHARE",
                       help=f"share of the pseudo-labels kept, the surest first (default: {s.keep_share})")
    group.add_argument("--pseudo-minutes", type=float, default=s.max_minutes, metavar="MINUTES",
                       help=f"pseudo-label at most this much unlabeled audio (default: {s.max_minutes:g})")
    group.add_argument("--pseudo-beam", type=int, default=s.beam_size, metavar="N",
                       help=f"beam for transcribing the unlabeled audio (default: {s.beam_size})")


def self_train_settings(args: argparse.Namespace):
    """SelfTrainOptions from the flags, or None without --self-train."""
    from asr_adapt.adapt.options import SelfTrainOptions

    if not args.self_train:
        return None
    return SelfTrainOptions(keep_share=args.pseudo_keep, max_minutes=args.pseudo_minutes, beam_size=args.pseudo_beam)


def domain_settings(args: argparse.Namespace):
    """(DomainOptions, unlabeled sources, UnlabeledOptions) from the flags."""
    from asr_adapt.adapt.options import DomainOptions
    from asr_adapt.core.errors import OptionsError
    from asr_adapt.data.unlabeled import UnlabeledOptions

    domain = DomainOptions(enabled=args.domain_confusion, weight=args.domain_weight, balance=args.domain_balance,
                           lambda_max=args.domain_lambda,
                           layer=args.domain_layer, pooling=args.domain_pooling,
                           unlabeled_ratio=args.unlabeled_ratio, hidden_size=args.domain_hidden)
    if args.unlabeled and not (args.domain_confusion or args.plot or args.self_train):
        raise OptionsError("--unlabeled audio is used by --domain-confusion or --self-train (or --plot); add one")
    return domain, list(args.unlabeled), UnlabeledOptions(max_minutes=args.unlabeled_minutes)


def training_settings(args: argparse.Namespace):
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.adapt.options import TrainOptions

    lora = LoraSettings(rank=args.rank, alpha=args.alpha, dropout=args.lora_dropout, where=args.lora_where)
    # --epochs given: that many, whichever way the epoch is chosen (--fixed-epochs: the fixed schedule's).
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    fixed = args.fixed_epochs if args.fixed_epochs is not None else args.epochs
    options = TrainOptions(**epochs, fixed_epochs=fixed, keep_share=args.keep_share, learning_rate=args.learning_rate, batch_size=args.train_batch_size,
                           pack_seconds=args.pack_seconds, patience=args.patience, min_epochs=args.min_epochs, seed=args.seed,
                           time_budget_minutes=args.time_budget, selection=args.selection,
                           short_window_share=args.short_window_share, speed_factors=args.speed_factors,
                           spec_augment=args.spec_augment, heldout_speaker=args.heldout_speaker)
    return lora, options


def print_adapt_report(report, stream) -> None:
    """A short human summary of an adaptation run."""
    t = report.training
    if t.baseline_heldout_wer is None:
        print(f"trained {t.epochs_run} epochs on all {t.train_utterances} utterances "
              f"({t.train_seconds_of_audio / 60:.1f} min; {t.wall_seconds:.0f} s): the fixed schedule for "
              "small enrollments, nothing held out", file=stream)
    else:
        print(f"held-out WER {100 * t.baseline_heldout_wer:.1f}% -> {100 * t.best_heldout_wer:.1f}% "
              f"(best epoch {t.best_epoch} of {t.epochs_run}; {t.train_utterances} utterances, "
              f"{t.train_seconds_of_audio / 60:.1f} min; {t.wall_seconds:.0f} s)", file=stream)
    if report.generic_wer_before is not None and report.generic_wer_after is not None:
        print(f"generic speech WER {100 * report.generic_wer_before:.1f}% -> "
              f"{100 * report.generic_wer_after:.1f}% (forgetting guard)", file=stream)
    if t.domain is not None:
        accuracy = "n/a" if t.final_domain_accuracy is None else f"{100 * t.final_domain_accuracy:.0f}%"
        print(f"domain confusion on {t.unlabeled_seconds_of_audio / 60:.1f} min of unlabeled audio: the domain "
              f"classifier's final accuracy {accuracy} (50% = cannot tell your audio apart)", file=stream)
    if report.self_training:
        st = report.self_training
        first, second = st.get("round_one_heldout_wer"), st.get("round_two_heldout_wer")
        judged = "" if first is None else (f"held-out WER round one {100 * first:.1f}%"
                                           + (f", round two {100 * second:.1f}%" if second is not None else "") + "; ")
        print(f"self-training: kept {st['kept']} of {st['pieces']} pseudo-labelled pieces ({st['kept_minutes']:.1f} min); "
              f"{judged}kept round {st['kept_round']}; transcripts: {st.get('labels_file')}", file=stream)
    if report.plot:
        p = report.projection or {}
        print(f"picture: {report.plot} (domain probe {100 * p.get('probe_accuracy_before', 0):.0f}% -> "
              f"{100 * p.get('probe_accuracy_after', 0):.0f}%)", file=stream)
    for warning in report.warnings:
        print(f"warning: {warning}", file=stream)
    if report.saved:
        print(f"adapter saved: {report.adapter_dir}", file=stream)


def print_input_devices(none_hint: str) -> int:
    """``--list-devices``: one line per audio input (index, name, channels, rate); when there is
    none, say so with ``none_hint`` (what to do instead)."""
    from asr_adapt.audio.devices import list_input_devices

    devices = list_input_devices()
    for device in devices:
        mark = " (default)" if device.get("is_default") else ""
        print(f"{device['index']}\t{device['name']}{mark}\t{device['channels']} ch, "
              f"{device['default_samplerate']:.0f} Hz")
    if not devices:
        print(f"no audio inputs found; {none_hint}")
    return 0
