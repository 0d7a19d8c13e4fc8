"""Whisper's training batches: log-mel features, teacher-forcing tokens, the loss, and the
joint encoder pass over labeled and unlabeled audio that domain confusion reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.base import Example, LoadedModel
from asr_adapt.models.whisper.constants import MAX_TARGET_TOKENS
from asr_adapt.models.whisper.encoder_window import encode, frame_mask
from asr_adapt.models.whisper.text_style import to_whisper_style


class WhisperBatcher:
    """Whisper's training batches: features and teacher-forcing tokens for a batch of windows
    (the CTC counterpart is :class:`asr_adapt.models.ctc.CtcBatcher`)."""

    def __init__(self, loaded: LoadedModel):
        self.processor = loaded.processor
        self.device = loaded.placement.device
        tokenizer = loaded.processor.tokenizer
        # The decoder prompt the model is given at inference, e.g. <|startoftranscript|>
        # (<|en|><|transcribe|>) <|notimestamps|>: its tokens are inputs, never targets.
        self.prefix = list(tokenizer.prefix_tokens)
        self.eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.tokenizer = tokenizer
        #: Set by the training loop while it trains (never while it judges).
        self.augment: Callable[[torch.Tensor, Sequence[int], torch.Generator], torch.Tensor] | None = None
        self.generator = torch.Generator().manual_seed(0)

    def target_text(self, text: str, utterance_id: str = "") -> str:
        """The transcript in Whisper's own style (sentence case, punctuated)."""
        return to_whisper_style(text)

    def target_problem(self, example: Example) -> str | None:
        """Why this example cannot be a target (None: it can)."""
        if len(self.encode_text(example.text)) > MAX_TARGET_TOKENS:
            return "is longer than Whisper's decoder allows"
        return None

    def loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy per target token (teacher forcing); over a short encoder window
        when the batch says so (``encoder_frames``)."""
        if "encoder_frames" in batch:
            inputs = dict(batch)
            frames = inputs.pop("encoder_frames")
            encoded = encode(model, inputs.pop("input_features"), frames)
            return model(encoder_outputs=(encoded,), **inputs).loss
        return model(**batch).loss

    def joint_forward(self, model, windows: Sequence[Example], unlabeled: Sequence[Example]):
        """(task loss on ``windows``, encoder hidden states of all windows, frame mask): labeled
        and unlabeled windows share one encoder pass; the decoder sees only the labeled."""
        batch = self(windows)
        features = torch.cat([batch["input_features"], self.features(unlabeled)])
        encoded = model.get_encoder()(features, output_hidden_states=True)
        labeled = len(windows)
        task = model(encoder_outputs=(encoded.last_hidden_state[:labeled],),
                     decoder_input_ids=batch["decoder_input_ids"], labels=batch["labels"]).loss
        mask = frame_mask([len(w.audio) for w in [*windows, *unlabeled]], encoded.hidden_states[0].shape[1])
        return task, encoded.hidden_states, mask

    def encode_text(self, text: str) -> list[int]:
        # Whisper's transcripts begin with a space token (" The"), so targets must too.
        ids = self.tokenizer(" " + text.strip(), add_special_tokens=False).input_ids
        return self.prefix + ids + [self.eot]

    def features(self, windows: Sequence[Example]) -> torch.Tensor:
        features = self.processor.feature_extractor([w.audio for w in windows], sampling_rate=SAMPLE_RATE,
                                                    return_tensors="pt").input_features
        if self.augment is not None:
            features = self.augment(features, [len(w.audio) for w in windows], self.generator)
        return features.to(self.device)

    def __call__(self, windows: Sequence[Example], encoder_frames: int | None = None) -> dict[str, torch.Tensor]:
        features = self.features(windows)
        sequences = [self.encode_text(w.text) for w in windows]
        longest = max(len(s) for s in sequences) - 1
        inputs = torch.full((len(windows), longest), self.eot, dtype=torch.long)
        labels = torch.full((len(windows), longest), -100, dtype=torch.long)
        for row, ids in enumerate(sequences):
            inputs[row, :len(ids) - 1] = torch.tensor(ids[:-1])
            target = torch.tensor(ids[1:])
            target[: len(self.prefix) - 1] = -100  # predicting the prompt is not our job
            labels[row, :len(ids) - 1] = target
        batch = {"input_features": features, "decoder_input_ids": inputs.to(self.device),
                 "labels": labels.to(self.device)}
        if encoder_frames is not None and encoder_frames < features.shape[-1]:
            batch["encoder_frames"] = encoder_frames
        return batch


__all__ = ["WhisperBatcher"]
