"""Judging an epoch on the held-out slice: greedy WER as at inference, and the teacher-forced
loss that breaks ties between equal WERs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from asr_adapt.data.scoring import score
from asr_adapt.models.base import Example, LoadedModel
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import Transcriber


def heldout_wer(loaded: LoadedModel, examples: Sequence[Example], batch_size: int = 8) -> float:
    """Greedy WER on held-out examples, one utterance per window as at inference."""
    # Bound the output by the references' length: a hypothesis three times longer than the
    # longest reference is wrong anyway, and a looping model would otherwise cost minutes.
    tokenizer = loaded.processor.tokenizer
    longest = max(len(tokenizer(" " + e.text, add_special_tokens=False).input_ids) for e in examples)
    limit = min(440, max(16, 3 * longest))
    # Greedy: epochs are compared with each other, every epoch; a beam costs 2.4x.
    transcriber = Transcriber(loaded, TranscribeOptions(batch_size=batch_size, beam_size=1, max_new_tokens=limit))
    hypotheses = transcriber.transcribe_arrays([e.audio for e in examples])
    return score([e.text for e in examples], hypotheses).wer or 0.0


def heldout_loss(model, batcher, windows: Sequence[Example], batch_size: int, autocast) -> float:
    """Mean teacher-forced loss per target token on held-out windows (no gradients);
    ``batcher`` is the backend's (``loaded.engine.batcher``)."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(windows), batch_size):
            batch = batcher(windows[begin:begin + batch_size])
            count = int((batch["labels"] != -100).sum())
            with autocast:
                total += float(batcher.loss(model, batch)) * count
            tokens += count
    return total / max(tokens, 1)


__all__ = ["heldout_loss", "heldout_wer"]
