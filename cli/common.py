"""Flags shared by several sub-commands, mapped 1:1 onto library options."""

from __future__ import annotations

import argparse
from pathlib import Path

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
