"""Whisper's log-mel features in numpy alone, for engines that do not load torch.

The same numbers as transformers' ``WhisperFeatureExtractor`` (a periodic Hann window of 400
samples, a hop of 160, Slaney mel filters up to 8 kHz, log10 clamped 8 below the loudest
value, scaled to about -1..1), computed on the audio padded with zeros to Whisper's 30 s, so
that the CTranslate2 engine reads what the torch engine reads without importing torch or
transformers (5 s and 400 MB before the first file on a small CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.whisper.constants import FEATURE_FRAMES_PER_SECOND, FULL_WINDOW_FRAMES

N_FFT = 400
HOP_LENGTH = SAMPLE_RATE // FEATURE_FRAMES_PER_SECOND
#: Samples of Whisper's window: every piece is padded with zeros to this length first.
WINDOW_SAMPLES = FULL_WINDOW_FRAMES * HOP_LENGTH


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = 3.0 * hz / 200.0
    log_part = hz >= 1000.0
    mels[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    hz = 200.0 * mels / 3.0
    log_part = mels >= 15.0
    hz[log_part] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_part] - 15.0))
    return hz


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """(n_mels, 201) triangular filters, Slaney-normalised (librosa's ``mel(norm="slaney")``)."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0], n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(down, up)) * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return bank.T.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(n_mels, 3000) features of one piece of at most 30 s (16 kHz mono float)."""
    audio = np.asarray(audio, dtype=np.float32)[:WINDOW_SAMPLES]
    padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    padded[:len(audio)] = audio
    padded = np.pad(padded, N_FFT // 2, mode="reflect")  # centred frames, as torch.stft(center=True)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:FULL_WINDOW_FRAMES]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2
    mel = mel_filters(n_mels) @ power.T.astype(np.float32)
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def batch_features(audios: Sequence[np.ndarray], n_mels: int = 80, frames: int = FULL_WINDOW_FRAMES) -> np.ndarray:
    """(batch, n_mels, frames) features: each piece's :func:`log_mel`, cut to its first
    ``frames`` (a short encoder window; the loudness clamp still sees the whole piece)."""
    return np.ascontiguousarray(np.stack([log_mel(a, n_mels)[:, :frames] for a in audios]))


__all__ = ["batch_features", "log_mel", "mel_filters"]
