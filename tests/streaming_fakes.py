"""Synthetic 'speech' for streaming tests: each word is a tone burst whose pitch names it,
and a fake decoder that reads the bursts back (the half-heard last word comes out wrong,
as Whisper's last word of a growing buffer often does)."""

from __future__ import annotations

import numpy as np

RATE = 16000
VOCABULARY = [f"w{i}" for i in range(50)]


def frequency(index: int) -> float:
    return 300.0 + 100.0 * (index % len(VOCABULARY))


def script_audio(phrases, word_seconds=0.3, gap_seconds=0.1, pause_seconds=0.8, lead_seconds=0.3,
                 amplitude=0.3):
    """Audio for ``phrases`` (lists of word indices) and each word's (text, end time)."""
    pieces, ends, t = [np.zeros(int(lead_seconds * RATE), np.float32)], [], lead_seconds
    for p, phrase in enumerate(phrases):
        for w, index in enumerate(phrase):
            n = int(word_seconds * RATE)
            tone = amplitude * np.sin(2 * np.pi * frequency(index) * np.arange(n) / RATE)
            pieces.append(tone.astype(np.float32))
            t += word_seconds
            ends.append((VOCABULARY[index % len(VOCABULARY)], t))
            gap = pause_seconds if w == len(phrase) - 1 else gap_seconds
            pieces.append(np.zeros(int(gap * RATE), np.float32))
            t += gap
    return np.concatenate(pieces), ends


class ToneDecoder:
    """Reads tone bursts back as words; a burst that touches the end of the buffer is
    still being spoken: it comes out as a wrong guess, a different one at each call."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.prompts: list[str] = []

    def __call__(self, audio: np.ndarray, prompt: str = "") -> str:
        self.calls.append(len(audio) / RATE)
        self.prompts.append(prompt)
        frame = 160
        count = len(audio) // frame
        if count == 0:
            return ""
        energy = (audio[:count * frame].reshape(count, frame) ** 2).mean(axis=1)
        loud = energy > 1e-3
        words, i = [], 0
        while i < count:
            if not loud[i]:
                i += 1
                continue
            j = i
            while j < count and loud[j]:
                j += 1
            burst = audio[i * frame:j * frame]
            if j >= count - 1 or len(burst) < 0.25 * RATE:  # cut off: not heard whole yet
                words.append(f"uh{len(self.calls)}" if j >= count - 1 else "um")
            else:
                spectrum = np.abs(np.fft.rfft(burst))
                peak = np.argmax(spectrum) * RATE / len(burst)
                index = round((peak - 300.0) / 100.0)
                words.append(VOCABULARY[index % len(VOCABULARY)].capitalize() + ("." if j >= count - 40 else ""))
            i = j
        return " ".join(words)
