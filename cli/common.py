"""Flags shared by several sub-commands, mapped 1:1 onto library options."""

from __future__ import annotations

import argparse

from asr_adapt.audio import DEFAULT_MAX_SECONDS
from asr_adapt.device import DEVICE_CHOICES
from asr_adapt.models import DEFAULT_MODEL
from asr_adapt.transcribe import TranscribeOptions


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="bundled name (whisper-tiny.en, whisper-base), a transformers or "
                            f"CTranslate2 folder, or a hub id (default: {DEFAULT_MODEL})")
    group.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                       help="where to run: auto picks CUDA when present (default: auto)")
    group.add_argument("--dtype", default="auto",
                       help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, float16, bfloat16")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TranscribeOptions()
    group = parser.add_argument_group("decoding")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help=f"windows decoded at once (default: {defaults.batch_size})")
    group.add_argument("--beam-size", type=int, default=defaults.beam_size,
                       help=f"1 = greedy (default: {defaults.beam_size})")
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                       help=f"longest text per 30 s window, in tokens (default: {defaults.max_new_tokens})")
    group.add_argument("--language", default=defaults.language,
                       help="spoken language for multilingual models (default: en)")
    group.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_SECONDS / 60,
                       help="refuse files longer than this (default: %(default).0f)")


def decoding_options(args: argparse.Namespace) -> TranscribeOptions:
    return TranscribeOptions(batch_size=args.batch_size, beam_size=args.beam_size,
                             max_new_tokens=args.max_new_tokens,
                             language=args.language, max_seconds=args.max_minutes * 60)


def load_model(args: argparse.Namespace):
    """Resolve --model/--device/--dtype (import deferred: torch is slow to import)."""
    from asr_adapt.models import resolve_model

    return resolve_model(args.model, device=args.device, dtype=args.dtype)


def add_profile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME",
                        help="use this speaker profile's adapter on its base model")


def load_model_or_profile(args: argparse.Namespace):
    """--profile NAME (its base model + adapter) or plain --model."""
    if getattr(args, "profile", None):
        from asr_adapt.personal import load_profile_model

        model = args.model if args.model != DEFAULT_MODEL else None
        loaded, _ = load_profile_model(args.profile, model=model, device=args.device, dtype=args.dtype)
        return loaded
    return load_model(args)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """LoRA and training flags, mapped 1:1 onto LoraSettings and TrainOptions."""
    from asr_adapt.lora import PLACES, LoraSettings
    from asr_adapt.training import TrainOptions

    lora, train = LoraSettings(), TrainOptions()
    group = parser.add_argument_group("adaptation")
    group.add_argument("--rank", type=int, default=lora.rank, help=f"LoRA rank (default: {lora.rank})")
    group.add_argument("--alpha", type=float, default=lora.alpha, help=f"LoRA alpha (default: {lora.alpha})")
    group.add_argument("--lora-dropout", type=float, default=lora.dropout,
                       help=f"LoRA dropout (default: {lora.dropout})")
    group.add_argument("--adapt", choices=PLACES, default=lora.where, dest="lora_where",
                       help=f"which half of Whisper gets adapters (default: {lora.where})")
    group.add_argument("--epochs", type=int, default=train.epochs, help=f"most epochs (default: {train.epochs})")
    group.add_argument("--learning-rate", "--lr", type=float, default=train.learning_rate,
                       help=f"(default: {train.learning_rate})")
    group.add_argument("--train-batch-size", type=int, default=train.batch_size,
                       help=f"30 s windows per step (default: {train.batch_size})")
    group.add_argument("--pack-seconds", type=float, default=train.pack_seconds,
                       help=f"pack utterances into windows this long; 0 = one per window (default: {train.pack_seconds})")
    group.add_argument("--patience", type=int, default=train.patience,
                       help=f"stop after this many epochs without a better held-out WER (default: {train.patience})")
    group.add_argument("--seed", type=int, default=train.seed, help=f"(default: {train.seed})")
    group.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop training after this many minutes")


def training_settings(args: argparse.Namespace):
    from asr_adapt.lora import LoraSettings
    from asr_adapt.training import TrainOptions

    lora = LoraSettings(rank=args.rank, alpha=args.alpha, dropout=args.lora_dropout, where=args.lora_where)
    options = TrainOptions(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.train_batch_size,
                           pack_seconds=args.pack_seconds, patience=args.patience, seed=args.seed,
                           time_budget_minutes=args.time_budget)
    return lora, options


def print_adapt_report(report, stream) -> None:
    """A short human summary of an adaptation run."""
    t = report.training
    print(f"held-out WER {100 * t.baseline_heldout_wer:.1f}% -> {100 * t.best_heldout_wer:.1f}% "
          f"(best epoch {t.best_epoch} of {t.epochs_run}; {t.train_utterances} utterances, "
          f"{t.train_seconds_of_audio / 60:.1f} min; {t.wall_seconds:.0f} s)", file=stream)
    if report.generic_wer_before is not None and report.generic_wer_after is not None:
        print(f"generic speech WER {100 * report.generic_wer_before:.1f}% -> "
              f"{100 * report.generic_wer_after:.1f}% (forgetting guard)", file=stream)
    for warning in report.warnings:
        print(f"warning: {warning}", file=stream)
    if report.saved:
        print(f"adapter saved: {report.adapter_dir}", file=stream)
