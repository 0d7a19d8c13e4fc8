"""A Whisper model run by CTranslate2: where it runs and in what precision (chosen here, once),
and the model with its tokenizer and features, without torch or transformers.

``--engine ct2`` decodes with this (:mod:`asr_adapt.models.whisper.ct2_decode`): int8 weights on
the CPU, float16 on a CUDA GPU, the encoder and decoder in CTranslate2's own kernels. Importing
this module loads nothing heavy; CTranslate2 itself is imported when a model is placed or loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from asr_adapt.core.errors import DeviceError, ModelError, OptionsError
from asr_adapt.models.whisper.constants import FULL_WINDOW_FRAMES
from asr_adapt.models.whisper.features import batch_features

#: Weight/compute types ``--dtype`` may ask of the ct2 engine ("auto": see :func:`ct2_placement`).
CT2_DTYPES = ("auto", "int8", "int8_float32", "float32", "float16", "bfloat16", "int8_float16")
#: Those that need a GPU.
GPU_ONLY_DTYPES = ("float16", "bfloat16", "int8_float16")
#: Files a CTranslate2 Whisper folder needs for this engine.
CT2_RUNTIME_FILES = ("model.bin", "config.json", "tokenizer.json")
#: Whisper's decoder holds 448 positions: a prompt of previous text gets at most half.
MAX_PROMPT_TOKENS = 223


def import_ctranslate2():
    """CTranslate2, or a one-line ModelError naming what to install."""
    try:
        import ctranslate2
    except ImportError:
        raise ModelError("--engine ct2 needs CTranslate2: pip install ctranslate2 (or use --engine torch)") from None
    return ctranslate2


@dataclass(frozen=True)
class CT2Placement:
    """Where a CTranslate2 model runs and its compute type (the weights are stored float16 and
    converted when loaded)."""

    device: str           # "cpu" or "cuda"
    index: int
    compute_type: str

    def __str__(self) -> str:
        where = self.device if self.device == "cpu" else f"{self.device}:{self.index}"
        return f"{where} ({self.compute_type})"


def ct2_placement(device: str = "auto", dtype: str = "auto") -> CT2Placement:
    """Turn ``auto|cpu|cuda|cuda:N`` and a dtype into a :class:`CT2Placement`: the one place the
    ct2 engine's precision is chosen. ``auto``: int8 weights on the CPU (4x smaller than float32,
    faster on every CPU CTranslate2 supports), float16 on a CUDA GPU (int8 saves memory there
    but not time)."""
    ctranslate2 = import_ctranslate2()
    name = (device or "auto").strip().lower()
    gpus = ctranslate2.get_cuda_device_count()
    if name == "auto":
        name = "cuda" if gpus else "cpu"
    base, _, index_text = name.partition(":")
    if base not in ("cpu", "cuda") or (index_text and not index_text.isdigit()) or (base == "cpu" and index_text):
        raise DeviceError(f"unknown device '{name}'; use one of: auto, cpu, cuda, cuda:N")
    index = int(index_text or 0)
    if base == "cuda" and index >= gpus:
        raise DeviceError("--device cuda asked for, but CTranslate2 sees no CUDA GPU; use --device cpu or auto"
                          if not gpus else f"{name}: only {gpus} CUDA device(s) visible")
    dtype = (dtype or "auto").strip().lower()
    if dtype not in CT2_DTYPES:
        raise DeviceError(f"unknown dtype '{dtype}' for --engine ct2; use one of: {', '.join(CT2_DTYPES)}")
    if dtype == "auto":
        dtype = "float16" if base == "cuda" else "int8"
    if base == "cpu" and dtype in GPU_ONLY_DTYPES:
        raise DeviceError(f"{dtype} needs a GPU with --engine ct2; on the CPU use int8 (the default) or float32")
    return CT2Placement(device=base, index=index, compute_type=dtype)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class CT2WhisperModel:
    """A CTranslate2 Whisper model, its tokenizer (``tokenizer.json``) and numpy features: what
    the ct2 engine decodes with. ``config.model_type`` is "whisper", as for transformers models."""

    def __init__(self, folder: str | Path, placement: CT2Placement, threads: int = 0) -> None:
        ctranslate2 = import_ctranslate2()
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        missing = [name for name in CT2_RUNTIME_FILES if not (self.folder / name).is_file()]
        if missing:
            raise ModelError(f"{self.folder}: CTranslate2 Whisper folder lacks {', '.join(missing)}")
        try:
            self.whisper = ctranslate2.models.Whisper(str(self.folder), device=placement.device,
                                                      device_index=placement.index,
                                                      compute_type=placement.compute_type, intra_threads=threads)
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelError(f"cannot load the CTranslate2 model in {self.folder}: {_first_line(error)}") from None
        try:
            self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        except Exception as error:  # the tokenizers library raises plain Exception for a bad file
            raise ModelError(f"cannot read {self.folder / 'tokenizer.json'}: {_first_line(error)}") from None
        self.placement = placement
        self.threads = threads
        self.n_mels = int(self.whisper.n_mels)
        self.multilingual = bool(self.whisper.is_multilingual)
        self.config = SimpleNamespace(model_type="whisper", num_mel_bins=self.n_mels)
        self.eot = self._special("<|endoftext|>")
        self.sot = self._special("<|startoftranscript|>")
        self.no_timestamps = self._special("<|notimestamps|>")
        self.start_of_prev = self._special("<|startofprev|>")

    def _special(self, token: str) -> int:
        ident = self.tokenizer.token_to_id(token)
        if ident is None:
            raise ModelError(f"{self.folder}: the tokenizer has no {token}; is this a Whisper model?")
        return int(ident)

    def start_tokens(self, language: str = "en") -> list[int]:
        """Start of transcript, (language, transcribe,) no timestamps."""
        if not self.multilingual:
            return [self.sot, self.no_timestamps]
        language_id = self.tokenizer.token_to_id(f"<|{language}|>")
        if language_id is None:
            raise OptionsError(f"unknown language '{language}' for this model; use a code such as en, de, fr")
        return [self.sot, int(language_id), self._special("<|transcribe|>"), self.no_timestamps]

    def prompt_tokens(self, text: str) -> list[int]:
        """``<|startofprev|>`` and the last :data:`MAX_PROMPT_TOKENS` tokens of ``text``."""
        return [self.start_of_prev] + self.encode_text(" " + text.strip())[-MAX_PROMPT_TOKENS:]

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True).strip()

    def features(self, audios: Sequence[np.ndarray], frames: int = FULL_WINDOW_FRAMES) -> np.ndarray:
        """(batch, mels, frames) log-mel features, as transformers computes them."""
        return batch_features(audios, self.n_mels, frames)

    def generate(self, features: np.ndarray, prompts: list[list[int]], beam_size: int, max_new_tokens: int,
                 no_repeat_ngram_size: int = 0) -> list[list[int]]:
        """Token ids after each prompt's start sequence (a forced prefix included), without
        the end token: at most ``max_new_tokens`` after the prefix, as transformers counts
        them. Whisper's suppressed tokens and blank start are suppressed, as in ``generate``."""
        forced = max(len(p) - p.index(self.no_timestamps) - 1 for p in prompts)
        # CTranslate2 decodes at most half its max_length (openai-whisper's sample_len, n_ctx // 2),
        # the forced prefix included.
        results = self.whisper.generate(
            self._encoded(features), prompts, beam_size=beam_size, max_length=2 * (forced + max_new_tokens),
            no_repeat_ngram_size=no_repeat_ngram_size, suppress_blank=True, suppress_tokens=[-1])
        return [list(result.sequences_ids[0]) for result in results]

    def _encoded(self, features: np.ndarray):
        """What ``generate`` reads: the features (it encodes them), or on the CPU, where a batch
        of full 30 s windows is slower per window than one alone and its attention scores take
        ~55 MB a window (tiny.en), the encoder's output, encoded a few windows at a time so that
        each encoder call holds about one full window's scores."""
        ctranslate2 = import_ctranslate2()
        features = np.ascontiguousarray(features, dtype=np.float32)
        positions = max(1, features.shape[-1] // 2)
        at_once = max(1, (FULL_WINDOW_FRAMES // 2 // positions) ** 2)
        if self.placement.device != "cpu" or at_once >= len(features):
            return ctranslate2.StorageView.from_array(features)
        parts = [np.asarray(self.whisper.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(features[begin:begin + at_once])), to_cpu=True))
            for begin in range(0, len(features), at_once)]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))


__all__ = ["CT2Placement", "CT2WhisperModel", "ct2_placement", "import_ctranslate2"]
