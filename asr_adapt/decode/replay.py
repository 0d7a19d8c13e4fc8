"""Replaying recorded audio through a :class:`~asr_adapt.decode.streaming.StreamingProcessor`.

:func:`run_deterministic` feeds a fixed hop per step, so that the text does not depend on
the machine's speed, and keeps a simulated clock in which each step's measured compute time
is spent (for honest latency figures); :func:`simulate_live` lets a slow machine take
longer steps, as a live microphone session does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor, StreamUpdate


#: Audio block size of the simulations (a microphone delivers 50 ms blocks).
BLOCK_SECONDS = 0.05


@dataclass(frozen=True)
class CommittedWord:
    """A committed word and when: ``audio_time`` is how much audio the processor had
    received, ``commit_time`` the simulated clock (audio time plus the wall time compute
    took), ``cpu_commit_time`` the same clock run on the CPU time instead: what a core of
    its own would give when the machine is shared (exact for one torch thread)."""

    text: str
    audio_time: float
    commit_time: float
    cpu_commit_time: float = 0.0


@dataclass(frozen=True)
class StreamResult:
    """The outcome of :func:`run_deterministic`."""

    text: str
    phrases: tuple[str, ...]
    words: tuple[CommittedWord, ...]
    audio_seconds: float
    compute_seconds: float
    cpu_seconds: float
    steps: int
    decodes: int
    max_buffer_seconds: float
    options: StreamingOptions

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of audio (below 1: faster than real time)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


def run_deterministic(processor: StreamingProcessor, audio: np.ndarray,
                      on_update: Callable[[StreamUpdate], None] | None = None) -> StreamResult:
    """Stream ``audio`` through ``processor`` in 50 ms blocks, deciding when to step from the
    audio alone (a hop, or a phrase's end), whatever the wall clock.

    The text is reproducible (it depends only on the audio, the model and the options).
    Timing is simulated honestly: a step starts when its audio has arrived *and* the
    previous step has finished, and lasts the compute time it really took, so a processor
    slower than real time falls behind and its commit times show it.
    """
    return _simulate(processor, audio, catch_up=False, on_update=on_update)


def simulate_live(processor: StreamingProcessor, audio: np.ndarray,
                  on_update: Callable[[StreamUpdate], None] | None = None) -> StreamResult:
    """Like :func:`run_deterministic`, but each step takes *all* the audio that has arrived
    by the simulated clock (at least a hop), as :class:`~asr_adapt.decode.live.LiveSession` does
    with a microphone: a slow machine decodes longer steps instead of falling further
    behind. Commit times are realistic; the text depends on the machine's speed."""
    return _simulate(processor, audio, catch_up=True, on_update=on_update)


def _simulate(processor: StreamingProcessor, audio: np.ndarray, catch_up: bool,
              on_update: Callable[[StreamUpdate], None] | None) -> StreamResult:
    processor.reset()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    clock = compute = 0.0
    steps = fed = 0
    words: list[CommittedWord] = []

    cpu_clock = cpu = 0.0

    def record(update: StreamUpdate, arrived: float) -> None:
        nonlocal clock, compute, steps, cpu_clock, cpu
        steps += 1
        compute += update.compute_seconds
        cpu += update.cpu_seconds
        clock = max(clock, arrived) + update.compute_seconds
        cpu_clock = max(cpu_clock, arrived) + update.cpu_seconds
        words.extend(CommittedWord(w, arrived, clock, cpu_clock) for w in update.committed)
        if on_update is not None:
            on_update(update)

    while fed < len(audio):
        # Audio comes in blocks, as from a microphone; a step runs when the processor is
        # ready (a hop of audio, or a phrase just ended). Catching up, a step also takes
        # all the audio that arrived while the previous one ran.
        until = fed + block
        if catch_up:
            until = max(until, int(clock * SAMPLE_RATE))
        until = min(len(audio), until)
        processor.insert_audio(audio[fed:until])
        fed = until
        if processor.ready():
            record(processor.process_iter(), fed / SAMPLE_RATE)
    record(processor.finish(), len(audio) / SAMPLE_RATE)
    return StreamResult(text=processor.text, phrases=tuple(processor.phrases), words=tuple(words),
                        audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=compute, cpu_seconds=cpu,
                        steps=steps,
                        decodes=processor.decodes, max_buffer_seconds=processor.max_buffer_seconds_seen,
                        options=processor.options)


__all__ = ["BLOCK_SECONDS", "CommittedWord", "StreamResult", "run_deterministic", "simulate_live"]
