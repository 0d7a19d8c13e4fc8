"""The CTC backend: wav2vec2, HuBERT, WavLM (and their kin) with a CTC head.

A CTC model reads the raw waveform (no log-mel, no 30 s window), emits one distribution
over its vocabulary every 20 ms, and is trained with the CTC loss. Its vocabulary is
usually characters, often UPPERCASE without punctuation, with ``|`` between words. So:

* targets are mapped into that vocabulary (:class:`CtcVocabulary`): case folded to the
  vocabulary's case, punctuation dropped (or turned into a word break for hyphens and
  slashes), whitespace made ``|``. Characters it cannot spell (digits, accented letters,
  symbols such as ``%``) are refused with a message that lists them, never silently lost;
* decoding is greedy: the most likely token per frame, repeats merged, blanks dropped
  (beam search with an n-gram LM would need pyctcdecode + kenlm, which this package does
  not ship; ``--beam-size`` above 1 is refused for CTC models);
* LoRA adapts the encoder's attention projections and feed-forward layers;
* streaming re-decodes the growing buffer at every hop and the streaming policy
  (LocalAgreement) commits what two hypotheses agree on, exactly as for Whisper: CTC
  hypotheses of a growing buffer are stable, so words commit one hop after they are heard.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.base import Backend
from asr_adapt.core.errors import AsrAdaptError, ModelError, OptionsError

#: Module names of the encoder blocks LoRA may adapt, per role (Whisper name -> CTC name).
CTC_TARGET_NAMES = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "out_proj": "out_proj",
                    "fc1": "intermediate_dense", "fc2": "output_dense",
                    "intermediate_dense": "intermediate_dense", "output_dense": "output_dense"}
#: Punctuation that separates words ("well-known", "and/or"); other punctuation is dropped.
_WORD_BREAKS = set("-\u2010\u2011\u2012\u2013\u2014/_")
#: Punctuation that is read aloud ("5%" is "five percent"): refused like symbols, never dropped.
_SPOKEN_PUNCTUATION = set("%&#@*\u2030\u00a7")
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"}


class VocabularyError(AsrAdaptError):
    """Text that the model's vocabulary cannot spell."""


@dataclass(frozen=True)
class CtcVocabulary:
    """The characters a CTC tokenizer can spell, and how text is put into them."""

    characters: frozenset[str]
    #: "upper", "lower" or "mixed" (letters of both cases: text keeps its case).
    case: str
    delimiter: str = "|"

    @classmethod
    def from_tokenizer(cls, tokenizer) -> CtcVocabulary:
        delimiter = getattr(tokenizer, "word_delimiter_token", None) or "|"
        special = set(tokenizer.all_special_tokens)
        characters = frozenset(t for t in tokenizer.get_vocab() if len(t) == 1 and t not in special
                               and t != delimiter)
        letters = [c for c in characters if c.isalpha() and c.lower() != c.upper()]
        upper = any(c.isupper() for c in letters)
        lower = any(c.islower() for c in letters)
        if getattr(tokenizer, "do_lower_case", False):  # the tokenizer lower-cases its input itself
            case = "lower"
        else:
            case = "upper" if upper and not lower else "lower" if lower and not upper else "mixed"
        return cls(characters, case, delimiter)

    def map(self, text: str) -> tuple[str, list[str]]:
        """``(text in this vocabulary, the characters it cannot spell)``; words are
        separated by single spaces (the tokenizer turns them into the delimiter)."""
        text = unicodedata.normalize("NFKC", text)
        text = "".join(_APOSTROPHES.get(c, c) for c in text)
        if self.case == "upper":
            text = text.upper()
        elif self.case == "lower":
            text = text.lower()
        out, bad = [], []
        for char in text:
            if char in self.characters:
                out.append(char)
            elif char.isspace() or char in _WORD_BREAKS or char == self.delimiter:
                out.append(" ")
            elif unicodedata.category(char).startswith("P") and char not in _SPOKEN_PUNCTUATION:
                continue  # punctuation carries no sound: "hello, world." -> HELLO WORLD
            elif char not in bad:
                bad.append(char)
        return " ".join("".join(out).split()), bad

    def describe(self) -> str:
        """A short picture of the vocabulary, e.g. ``A-Z ' and word breaks``."""
        letters = sorted(c for c in self.characters if c.isalpha())
        others = sorted(c for c in self.characters if not c.isalpha())
        shown = f"{letters[0]}-{letters[-1]}" if len(letters) > 3 else " ".join(letters)
        return " ".join(filter(None, [shown, " ".join(others)])) + " and word breaks"


def to_model_vocabulary(vocabulary: CtcVocabulary, text: str, utterance_id: str = "") -> str:
    """``text`` mapped into ``vocabulary``; :class:`VocabularyError` for what it cannot spell."""
    mapped, bad = vocabulary.map(text)
    where = f"the transcript of '{utterance_id}'" if utterance_id else "the text"
    if bad:
        shown = ", ".join(repr(c) for c in bad[:12])
        raise VocabularyError(f"{where} has characters this model's vocabulary cannot spell: {shown} (it spells "
                              f"{vocabulary.describe()}); write numbers and symbols as words")
    if not mapped:
        raise VocabularyError(f"{where} has no characters this model can spell ({text[:40]!r})")
    return mapped


# --------------------------------------------------------------------------- features and loss


def _base(model):
    """The encoder stack of a CTC model (``model.wav2vec2``, ``model.hubert``, ...)."""
    return getattr(model, model.base_model_prefix)


def output_lengths(model, sample_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Frames the model emits for inputs of these lengths (its conv stack's arithmetic)."""
    counts = torch.as_tensor(list(sample_counts) if not torch.is_tensor(sample_counts) else sample_counts)
    return model._get_feat_extract_output_lengths(counts).to(torch.long)


def model_inputs(loaded, audios: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Padded waveforms (+ attention mask where the model was trained with one) on the
    model's device. Models with group-norm feature encoders (wav2vec2-base) were trained
    without a mask on zero-padded input: their feature extractor says so and we follow it."""
    extractor = loaded.processor.feature_extractor
    use_mask = bool(getattr(extractor, "return_attention_mask", True))
    features = extractor([np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
                         padding=True, return_tensors="pt", return_attention_mask=use_mask)
    placement = loaded.placement
    dtype = next(loaded.model.parameters()).dtype
    inputs = {"input_values": features.input_values.to(placement.device, dtype=dtype)}
    if use_mask:
        inputs["attention_mask"] = features.attention_mask.to(placement.device)
    return inputs


def frame_mask_for(model, sample_counts: Sequence[int], frames: int) -> torch.Tensor:
    """(batch, frames) booleans: which output frames come from audio rather than padding."""
    valid = output_lengths(model, sample_counts).clamp(max=frames)
    return torch.arange(frames)[None, :] < valid[:, None]


def ctc_loss(model, logits: torch.Tensor, sample_counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CTC loss per target character, averaged over the batch.

    Always the "mean" reduction (each utterance's loss divided by its target length), not
    the config's (often "sum"): the learning rate and gradient clipping of the training loop
    assume a per-token loss, as Whisper's cross-entropy is. Impossible alignments (more
    characters than frames) are refused before training, so ``zero_infinity`` only guards
    against rounding.
    """
    lengths = output_lengths(model, sample_counts.cpu()).to(logits.device).clamp(max=logits.shape[1])
    mask = labels >= 0
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's CTC wants int32 targets on CPU; keep one path
        return torch.nn.functional.ctc_loss(log_probs, labels.masked_select(mask), lengths, mask.sum(-1),
                                            blank=model.config.pad_token_id, reduction="mean", zero_infinity=True)


def greedy_decode(loaded, logits: torch.Tensor, sample_counts: Sequence[int]) -> list[str]:
    """Best token per frame (padding frames cut off), repeats merged, blanks dropped."""
    lengths = output_lengths(loaded.model, sample_counts).tolist()
    best = logits.argmax(dim=-1).cpu()
    tokenizer = loaded.processor.tokenizer
    blank = loaded.model.config.pad_token_id
    # Collapsed here rather than by the tokenizer's decode: the blank must separate two
    # copies of a letter *before* it is dropped, and other special tokens (<s>, <unk>) must
    # go too; tokenizer versions differ in which of these they do.
    delimiter = getattr(tokenizer, "word_delimiter_token", None) or "|"
    special = (set(tokenizer.all_special_ids) | {blank}) - {tokenizer.convert_tokens_to_ids(delimiter)}
    texts = []
    for row, n in zip(best, lengths):
        ids = [int(i) for k, i in enumerate(row[:n].tolist()) if k == 0 or i != row[k - 1]]
        tokens = tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])
        texts.append(" ".join("".join(" " if t == delimiter else t for t in tokens).split()))
    return texts


# --------------------------------------------------------------------------- training batches


class CtcBatcher:
    """CTC training batches: waveforms, their lengths, and character targets (-100 padded)."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.processor.tokenizer
        self.vocabulary = CtcVocabulary.from_tokenizer(self.tokenizer)

    def target_text(self, text: str, utterance_id: str = "") -> str:
        """The transcript in the model's vocabulary (or a VocabularyError naming the characters)."""
        return to_model_vocabulary(self.vocabulary, text, utterance_id)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text).input_ids)

    def target_problem(self, example) -> str | None:
        # CTC emits at most one character per frame, and a doubled letter needs a blank
        # between its two copies: more than that cannot be aligned at all.
        ids = self.encode_text(example.text)
        needed = len(ids) + sum(1 for a, b in pairwise(ids) if a == b)
        frames = int(output_lengths(self.loaded.model, [len(example.audio)])[0])
        if needed > frames:
            return (f"has {needed} characters to emit in {frames} frames of audio; this model cannot "
                    "align text spoken that fast (or audio that short)")
        return None

    def _labels(self, texts: Sequence[str]) -> torch.Tensor:
        sequences = [self.encode_text(t) for t in texts]
        labels = torch.full((len(texts), max(1, max(len(s) for s in sequences))), -100, dtype=torch.long)
        for row, ids in enumerate(sequences):
            labels[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return labels

    def __call__(self, windows) -> dict[str, torch.Tensor]:
        batch = model_inputs(self.loaded, [w.audio for w in windows])
        device = self.loaded.placement.device
        batch["labels"] = self._labels([w.text for w in windows]).to(device)
        batch["sample_counts"] = torch.tensor([len(w.audio) for w in windows], dtype=torch.long)
        return batch

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean CTC loss per target character."""
        inputs = {k: v for k, v in batch.items() if k in ("input_values", "attention_mask")}
        logits = model(**inputs).logits
        return ctc_loss(model, logits, batch["sample_counts"], batch["labels"])

    def joint_forward(self, model, windows, unlabeled):
        """(CTC loss of ``windows``, hidden states of all windows, frame mask), one encoder pass."""
        everything = [*windows, *unlabeled]
        inputs = model_inputs(self.loaded, [w.audio for w in everything])
        encoded = _base(model)(**inputs, output_hidden_states=True)
        labeled = len(windows)
        hidden = encoded.last_hidden_state[:labeled]
        logits = model.lm_head(model.dropout(hidden))
        counts = torch.tensor([len(w.audio) for w in windows], dtype=torch.long)
        labels = self._labels([w.text for w in windows]).to(logits.device)
        task = ctc_loss(model, logits, counts, labels)
        mask = frame_mask_for(model, [len(w.audio) for w in everything], hidden.shape[1])
        return task, encoded.hidden_states, mask.to(hidden.device)


# --------------------------------------------------------------------------- streaming


class CtcDecoder:
    """Greedy CTC decoding of one streaming buffer (the prompt is ignored: CTC models take
    none). Reads ``loaded.model`` at every call, so profile switches take effect at once."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded

    def __call__(self, audio: np.ndarray, prompt: str = "") -> str:
        return CTC_BACKEND.decode(self.loaded, [np.asarray(audio, dtype=np.float32)], None)[0]


# --------------------------------------------------------------------------- the backend


class CtcBackend(Backend):
    """wav2vec2-family models with a CTC head, loaded through ``AutoModelForCTC``."""

    name = "ctc"
    takes_prompt = False

    def load(self, path, config, placement, attempt, **where):
        from transformers import AutoModelForCTC, Wav2Vec2Processor

        architectures = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("ForCTC")]
        if not architectures:
            raise ModelError(f"'{path}' is a {config.model_type} model without a CTC head (a pretrained-only "
                             "checkpoint such as facebook/wav2vec2-base); use one fine-tuned for "
                             "transcription, e.g. facebook/wav2vec2-base-960h")
        folder = Path(path)
        if folder.is_dir() and not (folder / "vocab.json").is_file():
            # transformers fails on this with a TypeError deep inside the tokenizer.
            raise ModelError(f"'{path}' lacks vocab.json: a CTC model needs its processor files "
                             "(vocab.json, tokenizer_config.json, preprocessor_config.json) beside the weights")
        model = attempt("weights", lambda: AutoModelForCTC.from_pretrained(str(path), dtype=placement.dtype, **where))
        # The plain processor even where the checkpoint ships an n-gram LM: its
        # Wav2Vec2ProcessorWithLM needs pyctcdecode, and we decode greedily anyway.
        processor = attempt("processor (feature extractor + tokenizer)",
                            lambda: Wav2Vec2Processor.from_pretrained(str(path), **where))
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or getattr(processor, "feature_extractor", None) is None:
            raise ModelError(f"'{path}' lacks a CTC processor (feature extractor + tokenizer); it needs "
                             "preprocessor_config.json, vocab.json and tokenizer_config.json")
        if len(tokenizer) > model.config.vocab_size or len(tokenizer) < 3:
            raise ModelError(f"the tokenizer of '{path}' has {len(tokenizer)} tokens but the model's CTC head "
                             f"has {model.config.vocab_size}; the folder's vocab.json does not belong to it")
        return model, processor

    def check_decoding(self, options) -> None:
        if options.beam_size != 1:
            raise OptionsError("CTC models decode greedily here (beam search with an n-gram LM needs pyctcdecode "
                               "and kenlm, which asr-adapt does not ship); use --beam-size 1")
        if options.encoder_window != "full":
            raise OptionsError("--encoder-window shortens Whisper's fixed 30 s window; a CTC model reads "
                               "exactly its audio already: leave it out")

    @torch.inference_mode()
    def decode(self, loaded, audios, options) -> list[str]:
        inputs = model_inputs(loaded, audios)
        logits = loaded.model(**inputs).logits
        return greedy_decode(loaded, logits, [len(a) for a in audios])

    def streaming_decoder(self, loaded, max_new_tokens=440, encoder_window=None):
        # A CTC encoder reads the buffer as it is: there is no fixed window to shorten.
        return CtcDecoder(loaded)

    def prepare_for_training(self, model) -> None:
        # transformers makes the conv feature encoder's output require grad in training mode
        # (for full fine-tuning), which keeps every conv activation for a backward pass that
        # LoRA does not need (no adapter sits below the transformer blocks). Freezing it
        # saves most of a step's memory on long windows.
        if hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()

    def batcher(self, loaded) -> CtcBatcher:
        return CtcBatcher(loaded)

    def hidden_size(self, config) -> int:
        return int(config.hidden_size)

    def encoder_layers(self, config) -> int:
        return int(config.num_hidden_layers)

    def encoder_states(self, loaded, audios):
        model = loaded.model
        output = _base(model)(**model_inputs(loaded, audios), output_hidden_states=True)
        frames = output.hidden_states[0].shape[1]
        return output.hidden_states, frame_mask_for(model, [len(a) for a in audios], frames).to(
            output.hidden_states[0].device)

    def lora_target_regex(self, targets, where) -> str:
        if where == "decoder":
            raise OptionsError("CTC models (wav2vec2, HuBERT, WavLM) have no decoder: adapt the encoder "
                               "(--adapt encoder or both)")
        names = sorted({CTC_TARGET_NAMES[t] for t in targets})
        attention = [n for n in names if n.endswith("_proj")]
        feed_forward = [n for n in names if n.endswith("_dense")]
        parts = []
        if attention:
            parts.append(rf"attention\.({'|'.join(attention)})")
        if feed_forward:
            parts.append(rf"feed_forward\.({'|'.join(feed_forward)})")
        # Only the transformer blocks: the conv feature encoder, the feature projection
        # and the CTC head stay as they are.
        return rf"\w+\.encoder\.layers\.\d+\.({'|'.join(parts)})"


CTC_BACKEND = CtcBackend()

__all__ = ["CTC_BACKEND", "CtcBackend", "CtcBatcher", "CtcDecoder", "CtcVocabulary", "VocabularyError",
           "ctc_loss", "greedy_decode", "model_inputs", "output_lengths", "to_model_vocabulary"]

