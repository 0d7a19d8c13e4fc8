"""The energy VAD: speech vs silence and noise, pauses, trailing silence, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sine

from asr_adapt.core.errors import OptionsError
from asr_adapt.audio.vad import EnergyVad, VadOptions, speech_mask

RATE = 16000


def silence(seconds, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return (noise * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def test_tone_is_speech_and_silence_is_not():
    audio = np.concatenate([silence(1.0), sine(1.0), silence(1.0)])
    mask = speech_mask(audio)
    frames = len(mask) // 3
    assert not mask[:frames].any()
    assert mask[frames + 2:2 * frames - 2].all()
    assert not mask[2 * frames + 2:].any()


def test_steady_noise_is_not_speech_but_speech_over_it_is():
    noise = 0.01  # -40 dBFS: above the absolute floor, so only the adaptive floor can tell
    audio = np.concatenate([silence(2.0, noise), sine(1.0) + silence(1.0, noise, seed=1), silence(1.0, noise, seed=2)])
    vad = EnergyVad()
    vad.accept(audio)
    assert vad.speech_seconds(0, 2 * RATE) < 0.1
    assert vad.speech_seconds(2 * RATE, 3 * RATE) > 0.9
    assert vad.trailing_silence() == pytest.approx(1.0, abs=0.05)


def test_streaming_blocks_give_the_same_answer_as_one_array():
    audio = np.concatenate([silence(0.5), sine(0.7), silence(0.6), sine(0.4)])
    whole = EnergyVad()
    whole.accept(audio)
    pieces = EnergyVad()
    for start in range(0, len(audio), 777):  # blocks that do not line up with frames
        pieces.accept(audio[start:start + 777])
    assert pieces._speech == whole._speech


def test_pauses_and_forgetting():
    audio = np.concatenate([sine(0.5), silence(0.3), sine(0.5), silence(0.05), sine(0.5)])
    vad = EnergyVad()
    vad.accept(audio)
    pauses = vad.pauses(0, len(audio), 0.2)
    assert len(pauses) == 1
    start, end = pauses[0]
    assert abs(start / RATE - 0.5) < 0.03 and abs(end / RATE - 0.8) < 0.03
    assert vad.trailing_silence() < 0.05
    vad.forget_before(int(1.0 * RATE))
    assert vad.pauses(0, len(audio), 0.2) == []
    assert vad.speech_seconds(0, len(audio)) == pytest.approx(0.8, abs=0.05)


def test_options_are_checked():
    with pytest.raises(OptionsError):
        VadOptions(frame_seconds=1.0)
    with pytest.raises(OptionsError):
        VadOptions(margin_db=0)
