"""Decoding options (one frozen dataclass, validated here for the library and the CLI alike)
and the encoder-window setting they share with streaming."""

from __future__ import annotations

from dataclasses import dataclass

from asr_adapt.audio.io import DEFAULT_MAX_SECONDS
from asr_adapt.core.errors import OptionsError


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode. Validated here, once, for the library and the CLI alike."""

    batch_size: int = 8
    #: None: the model family's usual decoding, resolved by :class:`Transcriber`: a beam of 5
    #: for Whisper (what openai-whisper and faster-whisper do; on the sample speaker it cuts an
    #: adapted model's WER from 13.2% to 10.5%), greedy for CTC. 1 = greedy.
    beam_size: int | None = None
    #: Whisper's decoder holds 448 positions; 4 go to the prompt.
    max_new_tokens: int = 440
    #: Spoken language for multilingual models (ignored by English-only ``.en`` models).
    language: str = "en"
    #: Files longer than this are refused (None: no limit).
    max_seconds: float | None = DEFAULT_MAX_SECONDS
    #: Long audio is cut into pieces of at most this many seconds (Whisper sees 30 s).
    window_seconds: float = 29.0
    #: What Whisper's encoder reads per piece: "full", its 30 s window, which the plain model
    #: was trained on; "auto", the piece plus 1 s (at least :data:`OFFLINE_MIN_WINDOW_SECONDS`)
    #: for a profile whose adapter was trained on such short windows only, with LoRA in the
    #: decoder too (as ``live`` reads them; ``personal.reads_best_in_short_windows``), 30 s
    #: otherwise; or a number of seconds, the shortest window, for any model.
    #: "full" by default, as measured with a beam of 5 (BENCHMARKS.md): "auto" gave the sample
    #: speaker 9.95% instead of 10.26% WER (3 seeds) but adult speechocean762 groups 26.3%
    #: instead of 24.8% (2 adapted seeds). See :mod:`asr_adapt.models.whisper.encoder_window`.
    encoder_window: str | float = "full"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise OptionsError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.beam_size is not None and (not isinstance(self.beam_size, int) or not 1 <= self.beam_size <= 16):
            raise OptionsError(f"beam size must be between 1 and 16, got {self.beam_size!r}")
        if not 1 <= self.max_new_tokens <= 444:
            raise OptionsError(f"max new tokens must be between 1 and 444, got {self.max_new_tokens}")
        if not 1.0 <= self.window_seconds <= 30.0:
            raise OptionsError(f"window must be between 1 and 30 seconds, got {self.window_seconds}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise OptionsError(f"maximum length must be positive, got {self.max_seconds}")
        object.__setattr__(self, "encoder_window", check_encoder_window(self.encoder_window))




#: Whisper's window: the buffer must always fit in it.
WINDOW_LIMIT_SECONDS = 29.5


def check_encoder_window(value: str | float) -> str | float:
    """``"full"`` (Whisper's 30 s), or the fewest seconds the encoder reads (2-30: the buffer
    plus a margin, rounded up to whole seconds), or ``"auto"``: short windows of at least
    :data:`AUTO_ENCODER_SECONDS` for the plain base model and for adapters trained on short
    windows only (``TrainOptions.short_window_share`` 1.0, the default) with LoRA in the
    decoder too (groups' default placement), the full window for one voice's encoder-only
    adapters (live WER 10.8% full vs 12.9% short) and for adapters that saw 30 s windows in
    training, which depend on them (``personal.reads_best_in_short_windows``): measured with a 4 s
    minimum, a packed-only sample profile's live WER went from 14.1% to 39.9%, while the base
    model's fell from 63.8% to 58.3% and its steps became 4x cheaper (BENCHMARKS.md).
    Raises OptionsError for anything else."""
    if value in ("full", "auto"):
        return value
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise OptionsError(f"encoder window must be 'auto', 'full' or seconds (2-30), got {value!r}") from None
    if not 2 <= seconds <= WINDOW_LIMIT_SECONDS:
        raise OptionsError(f"encoder window must be 'auto', 'full' or 2-{WINDOW_LIMIT_SECONDS:g} seconds, "
                           f"got {value!r}")
    return seconds


#: What the live decoder's encoder reads by default (see :func:`check_encoder_window`).
DEFAULT_ENCODER_WINDOW: str | float = "auto"


#: The shortest window "auto" gives the plain base model.
AUTO_ENCODER_SECONDS = 4.0
