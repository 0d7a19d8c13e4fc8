"""Training-time augmentation: speed perturbation of the waveform and SpecAugment masks on
Whisper's log-mel features.

A few minutes of speech are memorised within a few epochs (training loss 0.02 by epoch 3
at lr 1e-3, BENCHMARKS.md); both augmentations show the adapter a slightly different
utterance every epoch, which is the standard remedy (Ko et al. 2015, speed perturbation;
Park et al. 2019, SpecAugment).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from asr_adapt.audio.io import SAMPLE_RATE

#: Whisper's feature frames per second (10 ms hop).
FRAMES_PER_SECOND = 100


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """``audio`` played ``factor`` times faster (tempo and pitch together, as Kaldi's speed
    perturbation): 1.1 makes it 10% shorter and higher."""
    if factor == 1.0:
        return audio
    import soxr

    # Reading samples recorded at factor x 16 kHz as if they were 16 kHz plays them faster.
    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)


def choose_factor(factors: Sequence[float], rng: random.Random) -> float:
    """One factor drawn uniformly from ``factors`` (1.0 when there are none)."""
    return rng.choice(list(factors)) if factors else 1.0


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks on a batch of log-mel features ``(batch, mels, frames)``.

    Defaults are milder than LibriSpeech's policy (F=27, T=100): the adapter sees minutes,
    not hundreds of hours, and Whisper's features are 80 mel bands of 10 ms frames.
    """

    freq_masks: int = 2
    freq_width: int = 12
    #: Time masks per 10 s of real audio (padding is never counted), each up to
    #: ``time_width`` frames.
    time_masks_per_10s: float = 2.0
    time_width: int = 40

    def __call__(self, features: torch.Tensor, audio_lengths: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """Masked copy of ``features``; masked cells take each row's mean value, so a mask
        looks like a flat, quiet stretch rather than an extreme value."""
        out = features.clone()
        mels = features.shape[1]
        for row, samples in enumerate(audio_lengths):
            fill = out[row].mean()
            for _ in range(self.freq_masks):
                width = int(torch.randint(0, self.freq_width + 1, (1,), generator=generator))
                start = int(torch.randint(0, max(1, mels - width), (1,), generator=generator))
                out[row, start:start + width, :] = fill
            frames = min(features.shape[2], samples * FRAMES_PER_SECOND // SAMPLE_RATE)
            count = int(round(self.time_masks_per_10s * frames / (10 * FRAMES_PER_SECOND)))
            for _ in range(count):
                width = int(torch.randint(0, self.time_width + 1, (1,), generator=generator))
                start = int(torch.randint(0, max(1, frames - width), (1,), generator=generator))
                out[row, :, start:start + width] = fill
        return out
