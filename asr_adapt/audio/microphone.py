"""The microphone as an :class:`~asr_adapt.audio.sources.AudioSource` (sounddevice / PortAudio).

:class:`MicrophoneSource` keeps the audio thread cheap: its callback only copies the block
into a bounded :class:`queue.Queue` (dropping the *oldest* block when full, never waiting).
Channel mixing and resampling to 16 kHz happen in :meth:`MicrophoneSource.read`, on the
consumer's thread. A device that disappears or stops delivering audio makes ``read`` raise
:class:`~asr_adapt.audio.devices.MicrophoneError`, after every block that did arrive has been
handed out. Finding the device is :mod:`asr_adapt.audio.devices`.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from asr_adapt.audio.devices import (
    NO_MICROPHONE, MicrophoneError, first_line, import_sounddevice, is_portaudio_error, resolve_input_device,
)
from asr_adapt.audio.io import SAMPLE_RATE, resample
from asr_adapt.audio.sources import BLOCK_SECONDS


class _Resampler:
    """Streaming resampling of consecutive blocks to :data:`SAMPLE_RATE` (no seams)."""

    def __init__(self, rate: int) -> None:
        self.rate = int(rate)
        self._stream = None
        if self.rate != SAMPLE_RATE:
            import soxr

            if hasattr(soxr, "ResampleStream"):
                self._stream = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32",
                                                   quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.rate == SAMPLE_RATE:
            return block
        if self._stream is None:  # an old soxr: block-wise (small seams, still usable)
            return resample(block, self.rate)
        return np.asarray(self._stream.resample_chunk(block, last=last), dtype=np.float32)


class MicrophoneSource:
    """A sounddevice input stream as an :class:`AudioSource`; use it as a context manager.

    ``device`` is what :func:`resolve_input_device` accepts. The stream is mono at 16 kHz
    when the device supports it, else at the device's default rate (and two channels when
    it cannot do one), resampled and mixed down in :meth:`read`. Up to ``queue_seconds``
    of unread audio are kept; beyond that the oldest blocks are dropped (and counted in
    :attr:`dropped_blocks`). ``read`` raises :class:`MicrophoneError` when no audio came
    within ``start_timeout`` seconds of opening, when audio stops for ``stall_timeout``
    seconds, or when PortAudio ends the stream (a device unplugged).
    """

    def __init__(self, device: str | int | None = None, *, block_seconds: float = BLOCK_SECONDS,
                 queue_seconds: float = 60.0, start_timeout: float = 5.0,
                 stall_timeout: float = 3.0) -> None:
        self.spec = device
        self.block_seconds = float(block_seconds)
        self.queue_seconds = float(queue_seconds)
        self.start_timeout = float(start_timeout)
        self.stall_timeout = float(stall_timeout)
        self.device: dict | None = None
        self.stream_rate: int | None = None
        self.stream_channels: int | None = None
        self.dropped_blocks = 0
        self._sd: Any = None
        self._stream: Any = None
        self._queue: queue.Queue | None = None
        self._resampler: _Resampler | None = None
        self._overflows = 0
        self._opened_at = 0.0
        self._last_callback: float | None = None
        self._finished = threading.Event()
        self._started = threading.Event()
        self._callback_error: BaseException | None = None
        self._closed = False
        self._lost: str | None = None

    # ----------------------------------------------------------------- opening

    def __enter__(self) -> MicrophoneSource:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.device["name"] if self.device else str(self.spec)

    def open(self) -> MicrophoneSource:
        """Resolve the device and start the stream (a no-op when already open)."""
        if self._stream is not None:
            return self
        sd = self._sd = import_sounddevice()
        self.device = resolve_input_device(self.spec)
        rate, channels = self._choose_settings(sd)
        self.stream_rate, self.stream_channels = rate, channels
        blocksize = max(1, int(round(rate * self.block_seconds)))
        self._queue = queue.Queue(maxsize=max(4, int(self.queue_seconds / self.block_seconds)))
        self._resampler = _Resampler(rate)
        self._closed = False
        self._lost = None
        self._finished.clear()
        self._started.clear()
        try:
            stream = sd.InputStream(device=self.device["index"], samplerate=rate,
                                    channels=channels, dtype="float32", blocksize=blocksize,
                                    callback=self._callback, finished_callback=self._finished.set)
        except Exception as error:
            raise self._open_error(sd, error) from None
        try:
            stream.start()
        except Exception as error:
            try:
                stream.close()
            except Exception:
                pass
            raise self._open_error(sd, error) from None
        self._stream = stream
        self._opened_at = time.monotonic()
        return self

    def _open_error(self, sd: Any, error: BaseException) -> BaseException:
        if not (is_portaudio_error(sd, error) or isinstance(error, ValueError)):
            return error
        text = first_line(error)
        if "querying device -1" in text:
            return MicrophoneError(NO_MICROPHONE)
        return MicrophoneError(f"cannot open the microphone '{self.name}' ({text}); close other "
                               "programs using it, or choose another with --input-device")

    def _choose_settings(self, sd: Any) -> tuple[int, int]:
        """16 kHz mono when the device can, else its default rate and/or two channels."""
        if self.device is None:  # open() resolves the device before choosing settings
            raise MicrophoneError("no input device chosen; open the microphone first")
        default_rate = int(round(self.device["default_samplerate"])) or SAMPLE_RATE
        rates = [SAMPLE_RATE] + ([default_rate] if default_rate != SAMPLE_RATE else [])
        channel_options = [1] + ([2] if self.device["channels"] >= 2 else [])
        problem = "no settings tried"
        for channels in channel_options:
            for rate in rates:
                try:
                    sd.check_input_settings(device=self.device["index"], channels=channels,
                                            dtype="float32", samplerate=rate)
                    return rate, channels
                except Exception as error:
                    if not (is_portaudio_error(sd, error) or isinstance(error, ValueError)):
                        raise
                    problem = first_line(error)
                    if "querying device -1" in problem:
                        raise MicrophoneError(NO_MICROPHONE) from None
        raise MicrophoneError(f"the microphone '{self.name}' accepts neither 16000 Hz nor its "
                              f"default rate {default_rate} Hz ({problem}); choose another with "
                              "--input-device")

    # ----------------------------------------------------------------- the audio thread

    def _callback(self, indata, frames, time_info, status) -> None:
        """Runs on PortAudio's thread: copy the block into the queue, never wait."""
        try:
            self._last_callback = time.monotonic()
            if not self._started.is_set():
                self._started.set()
            if getattr(status, "input_overflow", False):
                self._overflows += 1
            block = np.array(indata, dtype=np.float32, copy=True)
            q = self._queue
            if q is None:
                return
            try:
                q.put_nowait(block)
            except queue.Full:
                try:
                    q.get_nowait()  # drop the oldest: the freshest audio matters most
                except queue.Empty:
                    pass
                self.dropped_blocks += 1
                try:
                    q.put_nowait(block)
                except queue.Full:
                    pass
        except BaseException as error:  # never raise into PortAudio; read() reports it
            self._callback_error = error

    # ----------------------------------------------------------------- reading

    def wait_until_started(self, timeout: float | None = None) -> bool:
        """Wait for the first block from the device (PulseAudio can take ~2 s); True once
        audio flows, False after ``timeout``."""
        return self._started.wait(timeout)

    @property
    def overflows(self) -> int:
        """How many callbacks reported an input overflow (audio lost by the device)."""
        return self._overflows

    @property
    def ended(self) -> bool:
        return self._closed or self._lost is not None

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next block (float32, mono, 16 kHz), or ``None`` after ``timeout`` seconds.

        Blocks that arrived are always handed out first; only when none is left does a
        lost device raise :class:`MicrophoneError`.
        """
        if self._closed:
            return None
        if self._stream is None or self._queue is None:
            raise MicrophoneError("the microphone is not open; use `with MicrophoneSource(...)`")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            wait = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
            try:
                raw = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                self._check_alive()
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            block = self._convert(raw)
            if block.size:
                return block
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        mono = raw.mean(axis=1) if raw.ndim == 2 and raw.shape[1] > 1 else raw.reshape(-1)
        if self._resampler is None:  # set by open(); blocks only arrive after it
            raise MicrophoneError("the microphone is not open")
        return self._resampler(np.ascontiguousarray(mono, dtype=np.float32))

    def _check_alive(self) -> None:
        """Raise :class:`MicrophoneError` when the device has stopped delivering audio."""
        if self._lost is None:
            self._lost = self._loss_reason()
        if self._lost is not None:
            raise MicrophoneError(self._lost)

    def _loss_reason(self) -> str | None:
        name = self.name
        if self._callback_error is not None:
            return (f"the microphone '{name}' failed ({first_line(self._callback_error)}); "
                    "audio recorded before that is kept")
        active = True
        try:
            active = bool(self._stream.active)
        except Exception:
            active = False
        if self._finished.is_set() or not active:
            return (f"the microphone '{name}' stopped delivering audio (unplugged?); audio "
                    "recorded before that is kept; reconnect it and run the command again")
        now = time.monotonic()
        if self._last_callback is None:
            if now - self._opened_at > self.start_timeout:
                return (f"the microphone '{name}' delivered no audio within "
                        f"{self.start_timeout:g} s; check it is not muted or used by another "
                        "program, or choose another with --input-device")
        elif now - self._last_callback > self.stall_timeout:
            return (f"the microphone '{name}' stopped delivering audio for "
                    f"{self.stall_timeout:g} s (unplugged?); audio recorded before that is kept")
        return None

    def discard_pending(self) -> int:
        """Drop the blocks waiting in the queue (and the resampler's state)."""
        count = 0
        if self._queue is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                count += 1
        if self.stream_rate is not None:
            self._resampler = _Resampler(self.stream_rate)
        return count

    def close(self) -> None:
        """Stop and close the stream (idempotent; errors of a vanished device are ignored)."""
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is None:
            return
        for step in (stream.abort, stream.close):
            try:
                step()
            except Exception:
                pass


__all__ = ["MicrophoneSource"]
