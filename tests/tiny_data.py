"""Tiny labeled utterances made in the test: sine tones with short transcripts."""

from __future__ import annotations

import soundfile as sf

from asr_adapt.data.manifest import Utterance

from conftest import sine


def tiny_utterances(tmp_path, count=10):
    """``count`` one-second-ish tones, each labeled with one of five words."""
    words = ["alpha", "bravo", "charlie", "delta", "echo"]
    utterances = []
    for i in range(count):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, sine(1.0 + 0.1 * i, freq=200 + 120 * (i % 5)), 16000)
        utterances.append(Utterance(id=f"u{i}", audio=path, text=words[i % 5].upper(), speaker="s"))
    return utterances
