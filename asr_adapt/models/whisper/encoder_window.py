"""Whisper's encoder over less than its 30 s window.

Whisper's encoder always reads 3000 feature frames (30 s), however short the audio; the
reference implementations pad. Its cost grows with its input, and a streaming buffer is a
few seconds, so reading only the audio plus a margin (whisper.cpp's ``--audio-ctx``) makes a
live step several times cheaper. Adapters are trained on the same short windows (by
default; ``TrainOptions.short_window_share``), so that a profile keeps its accuracy there,
and training itself does not pay for 30 s of padding per utterance. Offline transcription
can read such profiles' audio in short windows too (``TranscribeOptions.encoder_window``
"auto"); it reads the full window by default, which measured better on real speech.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.options import AUTO_ENCODER_SECONDS
from asr_adapt.models.whisper.constants import ENCODER_FRAMES_PER_SECOND, FEATURE_FRAMES_PER_SECOND, FULL_WINDOW_FRAMES

if TYPE_CHECKING:  # torch is imported where a mask is made: the ct2 engine reads window_frames without it
    import torch

#: Seconds of padding the encoder reads after the buffer when its window is shortened: the
#: model was trained on audio followed by silence, and stops more reliably when it sees some.
ENCODER_WINDOW_MARGIN = 1.0


def window_frames(samples: int, min_seconds: float, full: int = FULL_WINDOW_FRAMES) -> int:
    """Feature frames a short window holds for ``samples`` of audio: the audio plus
    :data:`ENCODER_WINDOW_MARGIN`, rounded up to whole seconds (few distinct shapes), at least
    ``min_seconds``, at most ``full``; always even (the encoder's second convolution halves it)."""
    seconds = max(float(min_seconds), math.ceil(samples / SAMPLE_RATE + ENCODER_WINDOW_MARGIN))
    return min(full, 2 * math.ceil(seconds * FEATURE_FRAMES_PER_SECOND / 2))


def streaming_window_frames(window: str | float, info: dict, samples: int, full: int = FULL_WINDOW_FRAMES) -> int:
    """Feature frames a streaming step's encoder reads for a buffer of ``samples``: ``full``
    (30 s), or the buffer plus a margin of at least ``window`` seconds. "auto" is decided from
    ``info`` (the loaded model's) at every step, since a profile switched in while live runs
    changes the answer: the full window for a profile that does not read short windows best."""
    if window == "auto":
        window = "full" if info.get("profile") and not info.get("short_windows") else AUTO_ENCODER_SECONDS
    if window == "full":
        return full
    return window_frames(samples, float(window), full)


def encode(model, features, frames: int):
    """Whisper's encoder over the first ``frames`` feature frames (all of them: the model's
    own forward). Shorter windows are whisper.cpp's ``--audio-ctx`` trick: the encoder's cost
    grows with its input, and a streaming buffer is a few seconds, not 30. The layers are the
    model's own (with any LoRA in them); only the position table is cut to the window."""
    import torch.nn.functional as F

    encoder = model.get_encoder()
    if frames >= features.shape[-1]:
        return encoder(features).last_hidden_state
    x = F.gelu(encoder.conv1(features[..., :frames]))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
    return encoder.layer_norm(x)




def frame_mask(sample_counts: list[int], frames: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(batch, frames) booleans: which encoder frames hold audio rather than padding.

    Windows are padded to 30 s before the encoder; pooling over the padding would make the
    head's task "how long is this window" and drown the speech in identical padding states.
    """
    import torch

    per_frame = sample_rate / ENCODER_FRAMES_PER_SECOND
    valid = [max(1, min(frames, math.ceil(n / per_frame))) for n in sample_counts]
    positions = torch.arange(frames)
    return positions[None, :] < torch.tensor(valid)[:, None]
