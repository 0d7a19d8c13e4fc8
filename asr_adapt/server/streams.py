"""A live stream on the server: PCM audio in, the WebSocket protocol's events out, through
the same streaming core as ``asr-adapt live`` (:class:`~asr_adapt.decode.streaming.StreamingProcessor`).

Events (JSON objects, see docs/serving.md):

* ``{"type": "partial", "text": TAIL}``: the words that may still change (sent when the tail changes);
* ``{"type": "final", "text": TEXT, "start": SEC, "end": SEC}``: words committed for good;
  ``start``..``end`` is the stretch of the stream they were heard in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from asr_adapt.core.errors import AudioError
from asr_adapt.decode.streaming import StreamingProcessor, StreamUpdate


def pcm16_to_float(frame: bytes) -> np.ndarray:
    """16-bit little-endian PCM as float32 in -1..1; AudioError for an odd number of bytes."""
    if len(frame) % 2:
        raise AudioError(f"a binary frame must hold 16-bit samples: {len(frame)} bytes is an odd number")
    return np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0


class PooledDecoder:
    """A streaming decoder whose every call runs where the model runs (``runner.call``, e.g. a
    :class:`~asr_adapt.server.batching.DecodeWorker`), with the stream's adapter active."""

    def __init__(self, runner: Any, adapter: Any, inner: Callable[..., str]) -> None:
        self.runner, self.adapter, self.inner = runner, adapter, inner
        self.forces_prefix = bool(getattr(inner, "forces_prefix", False))

    def __call__(self, audio: np.ndarray, prompt: str = "", **kwargs) -> str:
        return self.runner.call(self.adapter, lambda: self.inner(audio, prompt, **kwargs))


class LiveStream:
    """One stream's processor and the events its updates make. ``feed`` and ``finish`` run
    the processor's steps in ``executor`` (one step at a time: the processor is not thread-safe)."""

    def __init__(self, processor: StreamingProcessor, executor: Executor | None = None) -> None:
        self.processor = processor
        self.executor = executor
        self._start = 0.0
        self._tail = ""
        self.finished = False

    # ----------------------------------------------------------------- blocking steps

    def feed_now(self, samples: np.ndarray) -> list[dict]:
        """Take ``samples`` (16 kHz mono float32); decode when a hop of audio arrived or a
        phrase ended (one step: what arrives meanwhile goes into the next, as live does)."""
        self.processor.insert_audio(samples)
        if not self.processor.ready():
            return []
        return self._events(self.processor.process_iter())

    def finish_now(self) -> list[dict]:
        """The end of the stream: decode what is left and commit it."""
        self.finished = True
        return self._events(self.processor.finish())

    def _events(self, update: StreamUpdate) -> list[dict]:
        events = []
        if update.committed:
            events.append({"type": "final", "text": " ".join(update.committed), "start": round(self._start, 2),
                           "end": round(update.stream_seconds, 2)})
        # The next words lie in what is left of the buffer.
        self._start = max(self._start, update.stream_seconds - update.buffer_seconds)
        if update.tentative != self._tail:
            self._tail = update.tentative
            events.append({"type": "partial", "text": update.tentative})
        return events

    @property
    def text(self) -> str:
        """All committed text so far."""
        return self.processor.text

    # ----------------------------------------------------------------- for the event loop

    async def feed(self, samples: np.ndarray) -> list[dict]:
        """:meth:`feed_now` off the event loop."""
        return await self._run(self.feed_now, samples)

    async def finish(self) -> list[dict]:
        """:meth:`finish_now` off the event loop."""
        return await self._run(self.finish_now)

    async def close(self) -> None:
        """Nothing to release: the model belongs to the engine."""

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


__all__ = ["LiveStream", "PooledDecoder", "pcm16_to_float"]
