"""Offline transcription of arrays and files, in batches, with long audio cut into windows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from asr_adapt.audio.io import DEFAULT_MAX_SECONDS, SAMPLE_RATE, is_silent, load_audio, split_into_windows
from asr_adapt.core.errors import OptionsError
from asr_adapt.models.loading import LoadedModel


#: Upper bound on speech rate used to cap decoding length (tokens per second of audio).
MAX_TOKENS_PER_SECOND = 10
#: Whisper's threshold: text whose gzip compression ratio exceeds this is a repetition loop.
COMPRESSION_RATIO_THRESHOLD = 2.4
#: The shortest encoder window "auto" gives a short-window profile offline (its training's minimum).
OFFLINE_MIN_WINDOW_SECONDS = 4.0


def compression_ratio(text: str) -> float:
    """Bytes of text per byte of its zlib compression (high for repetitive text)."""
    import zlib

    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_runaway(text: str) -> bool:
    """True for a hypothesis that is a repetition loop rather than speech."""
    return len(text) > 40 and compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD


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
    #: instead of 24.8% (2 adapted seeds). See :mod:`asr_adapt.encoder_window`.
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
        from asr_adapt.decode.streaming import check_encoder_window

        object.__setattr__(self, "encoder_window", check_encoder_window(self.encoder_window))


@dataclass(frozen=True)
class Segment:
    """A stretch of the input and the text recognised in it (times in seconds)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """The result for one input, with what produced it."""

    source: str
    text: str
    segments: tuple[Segment, ...]
    duration: float
    model: str
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber:
    """Batched decoding of files and arrays, on whatever device the model is on; how a batch
    is decoded (Whisper ``generate``, CTC argmax) is the model's backend's business."""

    def __init__(self, loaded: LoadedModel, options: TranscribeOptions | None = None):
        self.loaded = loaded
        self.backend = loaded.engine
        options = options or TranscribeOptions()
        if options.beam_size is None:
            options = replace(options, beam_size=self.backend.default_beam_size)
        self.options = options
        self.backend.check_decoding(self.options)

    @property
    def model(self):
        return self.loaded.model

    @torch.inference_mode()
    def transcribe_arrays(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Transcribe pieces of at most 30 s each; silent pieces give empty text."""
        texts = [""] * len(audios)
        todo = [i for i, audio in enumerate(audios) if len(audio) and not is_silent(audio)]
        if reads_short_windows(self.loaded, self.options):
            # A short window fits a batch's longest piece: batching pieces of like length
            # keeps the others' padding close to what training gave them.
            todo.sort(key=lambda i: len(audios[i]))
        for begin in range(0, len(todo), self.options.batch_size):
            batch = todo[begin:begin + self.options.batch_size]
            for i, text in zip(batch, self._decode([audios[i] for i in batch])):
                texts[i] = text
        return texts

    def _decode(self, audios: list[np.ndarray]) -> list[str]:
        return self.backend.decode(self.loaded, audios, self.options)

    def transcribe_audio(self, audio: np.ndarray, source: str = "<audio>") -> Transcript:
        """Transcribe one array of any length (16 kHz mono float)."""
        return next(self._transcribe_stream([(source, lambda: audio)]))

    def transcribe_files(self, paths: Iterable[str | Path], progress: bool = False) -> Iterator[Transcript]:
        """Transcribe files in order, batching windows across files; yields one result per file."""
        paths = [Path(p) for p in paths]
        loaders = [(str(p), (lambda p=p: load_audio(p, self.options.max_seconds))) for p in paths]
        bar = None
        if progress and len(paths) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="file", desc="transcribing", leave=False)
        try:
            for transcript in self._transcribe_stream(loaders):
                if bar is not None:
                    bar.update(1)
                yield transcript
        finally:
            if bar is not None:
                bar.close()

    def _transcribe_stream(self, loaders) -> Iterator[Transcript]:
        """Load inputs lazily, cut them into windows, decode windows in full batches, and
        yield each input's transcript as soon as all its windows are decoded."""
        pending: list[tuple[str, float, list[tuple[int, int]], list[str | None]]] = []
        queue: list[tuple[int, int, np.ndarray]] = []  # (input index, window index, samples)
        done = 0

        def flush() -> None:
            texts = self.transcribe_arrays([samples for _, _, samples in queue])
            for (item, window, _), text in zip(queue, texts):
                pending[item][3][window] = text
            queue.clear()

        def finished() -> Iterator[Transcript]:
            nonlocal done
            while done < len(pending) and all(t is not None for t in pending[done][3]):
                yield self._assemble(*pending[done])
                done += 1

        for source, load in loaders:
            audio = load()
            windows = split_into_windows(audio, max_seconds=self.options.window_seconds)
            pending.append((source, len(audio) / SAMPLE_RATE, windows, [None] * len(windows)))
            for w, (start, end) in enumerate(windows):
                queue.append((len(pending) - 1, w, audio[start:end]))
            if len(queue) >= self.options.batch_size:
                flush()
                yield from finished()
        flush()
        yield from finished()

    def _assemble(self, source: str, seconds: float, windows, texts) -> Transcript:
        segments = tuple(Segment(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), text)
                         for (start, end), text in zip(windows, texts) if text)
        return Transcript(source=source, text=" ".join(s.text for s in segments), segments=segments,
                          duration=round(seconds, 3), model=self.loaded.name,
                          options=asdict(self.options))


# --------------------------------------------------------------------------- Whisper decoding


def _generate_kwargs(model, options: TranscribeOptions) -> dict:
    kwargs = {"max_new_tokens": options.max_new_tokens, "num_beams": options.beam_size or 1, "do_sample": False}
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(language=options.language, task="transcribe")
    return kwargs


def beam_search_cache():
    """An encoder-decoder cache for beam search that leaves the cross-attention cache alone.

    transformers reorders every cached tensor after each beam step, the encoder's keys and
    values too (for tiny.en, batch 8 x 5 beams: ~740 MB copied per token). All beams of one
    input share those, and a beam only ever continues a beam of its own input, so the
    reorder is a costly identity. Skipping it gives the same tokens; on an idle 2-core CPU
    it is level, with another process competing for memory bandwidth 2-3x faster
    (BENCHMARKS.md)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class SharedCrossAttentionCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx):
            self.self_attention_cache.reorder_cache(beam_idx)

    return SharedCrossAttentionCache(DynamicCache(), DynamicCache())


def generate_cache_keyword(model) -> str:
    """The name under which ``model.generate`` takes a cache object: ``cache`` where
    transformers renames ``past_key_values`` to it (deprecated there, removed in 6.0), or
    where ``cache`` is a parameter of its own; ``past_key_values`` in older releases."""
    import inspect

    generate = model.generate
    if "cache" in inspect.signature(generate).parameters:
        return "cache"
    layer = getattr(generate, "__func__", generate)
    while layer is not None:  # the deprecation decorators wrap generate, one layer each
        closure = inspect.getclosurevars(layer).nonlocals if inspect.isfunction(layer) else {}
        if closure.get("old_name") == "past_key_values" and closure.get("new_name") == "cache":
            return "cache"
        layer = getattr(layer, "__wrapped__", None)
    return "past_key_values"


def whisper_decode(loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions,
                   **overrides) -> list[str]:
    """Greedy (or beam) Whisper ``generate`` over a batch of pieces of at most 30 s."""
    processor = loaded.processor
    features = processor.feature_extractor(
        [np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
        return_tensors="pt", return_attention_mask=True)
    placement = loaded.placement
    inputs = features.input_features.to(placement.device, dtype=placement.dtype)
    kwargs = _generate_kwargs(loaded.model, options)
    # Nobody says more than ~6 tokens a second: a cap from the audio's length keeps a
    # decoder stuck in a loop from running to the 448-token limit.
    longest = max(len(a) for a in audios) / SAMPLE_RATE
    kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], int(MAX_TOKENS_PER_SECOND * longest) + 16)
    kwargs.update(overrides)
    if kwargs["num_beams"] > 1:
        kwargs[generate_cache_keyword(loaded.model)] = beam_search_cache()
    attention_mask = features.attention_mask.to(placement.device)
    frames = offline_window_frames(loaded, audios, options)
    if frames < inputs.shape[-1]:
        from transformers.modeling_outputs import BaseModelOutput

        from asr_adapt.models.whisper.encoder_window import encode

        encoded = encode(loaded.model, inputs, frames)
        tokens = loaded.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                                       attention_mask=attention_mask[:, :frames], **kwargs)
    else:
        tokens = loaded.model.generate(inputs, attention_mask=attention_mask, **kwargs)
    texts = [text.strip() for text in processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    if frames < inputs.shape[-1]:
        texts = _redo_doubled_in_full_window(loaded, audios, texts, options, overrides)
    if not overrides:
        texts = _retry_runaways(loaded, audios, texts, options)
    return texts


def offline_window_frames(loaded: LoadedModel, audios: list[np.ndarray], options: TranscribeOptions) -> int:
    """Feature frames the encoder reads for this batch: 3000 (Whisper's 30 s), or, for a short
    window (see ``TranscribeOptions.encoder_window``), the longest piece plus a margin."""
    from asr_adapt.models.whisper.encoder_window import window_frames

    if not reads_short_windows(loaded, options):
        return FULL_WINDOW_FRAMES
    window = OFFLINE_MIN_WINDOW_SECONDS if options.encoder_window == "auto" else options.encoder_window
    return window_frames(max(len(a) for a in audios), float(window), FULL_WINDOW_FRAMES)


#: Whisper's encoder window in feature frames (30 s).
FULL_WINDOW_FRAMES = 3000


def reads_short_windows(loaded: LoadedModel, options: TranscribeOptions) -> bool:
    """Whether the encoder reads short windows: asked for in seconds, or "auto" with a
    profile that reads best in them (``loaded.info``, set when a profile is loaded)."""
    if options.encoder_window == "auto":
        info = getattr(loaded, "info", None) or {}
        return bool(info.get("profile") and info.get("short_windows"))
    return options.encoder_window != "full"


def _redo_doubled_in_full_window(loaded: LoadedModel, audios: list[np.ndarray], texts: list[str],
                                 options: TranscribeOptions, overrides: dict) -> list[str]:
    """A short window with little silence after the speech sometimes makes Whisper say a
    phrase twice in a row (as in live decoding); the full window does not. Such pieces, and
    repetition loops, are decoded again over the full window."""
    from asr_adapt.decode.streaming import says_twice

    redo = [i for i, text in enumerate(texts) if says_twice(text.split()) or is_runaway(text)]
    if redo:
        full = replace(options, encoder_window="full")
        again = whisper_decode(loaded, [audios[i] for i in redo], full, **overrides)
        for i, text in zip(redo, again):
            texts[i] = text
    return texts


def _retry_runaways(loaded: LoadedModel, audios: list[np.ndarray], texts: list[str],
                    options: TranscribeOptions) -> list[str]:
    """Decode again, forbidding repeated 4-grams, whatever came out as a loop (Whisper's
    own test: text that compresses too well). Deterministic, unlike temperature fallback."""
    for i, text in enumerate(texts):
        if is_runaway(text):
            retry = whisper_decode(loaded, [audios[i]], options, no_repeat_ngram_size=4)[0]
            if compression_ratio(retry) < compression_ratio(text):
                texts[i] = retry
    return texts
