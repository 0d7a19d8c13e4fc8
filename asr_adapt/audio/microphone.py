"""Audio sources: the microphone (through sounddevice / PortAudio) and array replay.

Everything here hands out float32 mono blocks at :data:`asr_adapt.audio.SAMPLE_RATE`, so
the code that consumes audio (enrollment recording, later live transcription) never cares
where it comes from. An :class:`AudioSource` has:

* ``read(timeout)``: the next block, or ``None`` when nothing arrived within ``timeout``
  seconds (and, once ``ended`` is true, for good);
* ``discard_pending()``: drop what arrived but was not read yet (call it before a take, so
  that the take starts *now* and not with what the microphone heard minutes ago);
* ``overflows``: how many times the device dropped input because it was not read in time;
* ``ended`` and ``close()``.

:class:`MicrophoneSource` keeps the audio thread cheap: its callback only copies the block
into a bounded :class:`queue.Queue` (dropping the *oldest* block when full, never waiting).
Channel mixing and resampling to 16 kHz happen in :meth:`MicrophoneSource.read`, on the
consumer's thread. A device that disappears or stops delivering audio makes ``read`` raise
:class:`MicrophoneError`, after every block that did arrive has been handed out.

:class:`ArraySource` replays an array (or a file) in blocks, optionally in real time: it is
what tests and file replays use instead of hardware.

Every problem a user can fix (no PortAudio, no microphone, an unknown device name, a device
that cannot be opened or vanishes) is raised as :class:`MicrophoneError` with one line.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, load_audio, resample
from asr_adapt.core.errors import AsrAdaptError

PORTAUDIO_MISSING = ("the PortAudio library is missing: install it (Debian/Ubuntu: apt-get install "
                     "libportaudio2; macOS: brew install portaudio)")
NO_MICROPHONE = "no microphone found; plug one in, or enroll from recordings with --from DIR"
#: Seconds of audio one :meth:`AudioSource.read` returns at most (50 ms).
BLOCK_SECONDS = 0.05


class MicrophoneError(AsrAdaptError):
    """No usable microphone: PortAudio missing, no input device, or a device that fails."""


@runtime_checkable
class AudioSource(Protocol):
    """Anything that hands out float32 mono blocks at :data:`SAMPLE_RATE`."""

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next block, or ``None`` when none arrived within ``timeout`` (or ``ended``)."""
        ...

    def discard_pending(self) -> int:
        """Drop audio that arrived but was not read yet; return how many blocks."""
        ...

    @property
    def overflows(self) -> int:
        """How many times input was lost because it was not read in time."""
        ...

    @property
    def ended(self) -> bool:
        """True when no more audio will ever come."""
        ...

    def close(self) -> None:
        """Release the device (idempotent)."""
        ...


# --------------------------------------------------------------------------- sounddevice


def import_sounddevice() -> Any:
    """Import :mod:`sounddevice`, turning a missing PortAudio into :class:`MicrophoneError`."""
    try:
        import sounddevice
    except OSError as error:
        if "portaudio" in str(error).lower():
            raise MicrophoneError(PORTAUDIO_MISSING) from None
        raise MicrophoneError(f"the audio system cannot start ({_first_line(error)}); check "
                              "the PortAudio installation") from None
    except ImportError:
        raise MicrophoneError("the sounddevice package is missing: pip install sounddevice") \
            from None
    except Exception as error:  # PortAudioError from Pa_Initialize at import time
        raise MicrophoneError(f"the audio system cannot start ({_first_line(error)}); check "
                              "the sound setup (ALSA/PulseAudio)") from None
    return sounddevice


def _first_line(error: BaseException) -> str:
    args = getattr(error, "args", ())
    text = str(args[0]) if args and isinstance(args[0], str) else str(error)
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return text[:160]


def _is_portaudio_error(sd: Any, error: BaseException) -> bool:
    kind = getattr(sd, "PortAudioError", None)
    return isinstance(kind, type) and isinstance(error, kind)


def _default_input_index(sd: Any) -> int | None:
    """The default input device's index, or ``None`` when PortAudio has none."""
    try:
        info = sd.query_devices(kind="input")
    except Exception as error:  # PortAudioError "Error querying device -1", ValueError
        if _is_portaudio_error(sd, error) or isinstance(error, ValueError):
            return None
        raise
    index = info.get("index") if isinstance(info, dict) else None
    return int(index) if isinstance(index, int) and index >= 0 else None


def list_input_devices() -> list[dict]:
    """The input devices PortAudio sees, each as ``{"index", "name", "channels",
    "default_samplerate", "is_default"}`` (``hostapi`` too, by name, when known)."""
    sd = import_sounddevice()
    try:
        devices = list(sd.query_devices())
    except Exception as error:
        if _is_portaudio_error(sd, error):
            raise MicrophoneError(f"cannot list audio devices ({_first_line(error)}); check the "
                                  "sound setup") from None
        raise
    default = _default_input_index(sd)
    inputs = []
    for position, info in enumerate(devices):
        channels = int(info.get("max_input_channels", 0) or 0)
        if channels <= 0:
            continue
        index = int(info.get("index", position))
        entry = {"index": index, "name": str(info.get("name", f"device {index}")),
                 "channels": channels,
                 "default_samplerate": float(info.get("default_samplerate") or 0.0),
                 "is_default": index == default}
        try:
            entry["hostapi"] = str(sd.query_hostapis(info["hostapi"])["name"])
        except Exception:
            pass
        inputs.append(entry)
    return inputs


def _describe(devices: list[dict]) -> str:
    shown = ", ".join(f"{d['index']} '{d['name']}'" for d in devices[:12])
    more = f" and {len(devices) - 12} more" if len(devices) > 12 else ""
    return shown + more


def resolve_input_device(spec: str | int | None = None) -> dict:
    """The input device ``spec`` names, as an entry of :func:`list_input_devices`.

    ``None`` is the default input (the first input when PortAudio names no default); an
    int or a string of digits is a device index; any other string is a case-insensitive
    part of the device name (an exact name wins over a partial one; several partial
    matches are an error that lists them).
    """
    devices = list_input_devices()
    if not devices:
        raise MicrophoneError(NO_MICROPHONE)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        for device in devices:
            if device["is_default"]:
                return device
        return devices[0]
    if isinstance(spec, bool) or not isinstance(spec, (int, str)):
        raise MicrophoneError(f"input device must be an index or a name, not {spec!r}")
    text = spec.strip() if isinstance(spec, str) else str(spec)
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        for device in devices:
            if device["index"] == index:
                return device
        raise MicrophoneError(f"there is no input device {index}; available inputs: "
                              f"{_describe(devices)}")
    wanted = text.casefold()
    exact = [d for d in devices if d["name"].casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [d for d in devices if wanted in d["name"].casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise MicrophoneError(f"no input device matches '{text}'; available inputs: "
                              f"{_describe(devices)} (give an index or part of a name)")
    raise MicrophoneError(f"'{text}' matches {len(partial)} input devices: {_describe(partial)}; "
                          "give an index or a longer part of the name")


# --------------------------------------------------------------------------- microphone


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
        if not (_is_portaudio_error(sd, error) or isinstance(error, ValueError)):
            return error
        text = _first_line(error)
        if "querying device -1" in text:
            return MicrophoneError(NO_MICROPHONE)
        return MicrophoneError(f"cannot open the microphone '{self.name}' ({text}); close other "
                               "programs using it, or choose another with --input-device")

    def _choose_settings(self, sd: Any) -> tuple[int, int]:
        """16 kHz mono when the device can, else its default rate and/or two channels."""
        assert self.device is not None
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
                    if not (_is_portaudio_error(sd, error) or isinstance(error, ValueError)):
                        raise
                    problem = _first_line(error)
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
        assert self._resampler is not None
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
            return (f"the microphone '{name}' failed ({_first_line(self._callback_error)}); "
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


# --------------------------------------------------------------------------- replay


class ArraySource:
    """Replays an array in blocks, as an :class:`AudioSource` (tests, file replay).

    ``audio`` is mono float audio at ``sample_rate`` (resampled to 16 kHz here). With
    ``realtime`` the blocks come no faster than they would from a microphone: ``read``
    waits (up to its timeout) for the next block to be due, and :meth:`discard_pending`
    skips the blocks that fell due unread, as a microphone's queue would.
    """

    def __init__(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                 block_seconds: float = BLOCK_SECONDS, realtime: bool = False,
                 speed: float = 1.0) -> None:
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 2:
            data = data.mean(axis=1)
        if data.ndim != 1:
            raise ValueError("ArraySource needs mono audio (a 1-D array)")
        self.audio = resample(data, int(sample_rate))
        self.block = max(1, int(round(SAMPLE_RATE * block_seconds)))
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.position = 0
        self._started: float | None = None
        self._closed = False

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ArraySource:
        """Replay an audio file (any format :func:`asr_adapt.audio.load_audio` reads)."""
        return cls(load_audio(path), SAMPLE_RATE, **kwargs)

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def overflows(self) -> int:
        return 0

    @property
    def ended(self) -> bool:
        return self._closed or self.position >= len(self.audio)

    def _due(self) -> int:
        """Samples that a real-time device would have delivered by now."""
        if self._started is None:
            self._started = time.monotonic() - self.position / (SAMPLE_RATE * self.speed)
        return int((time.monotonic() - self._started) * SAMPLE_RATE * self.speed)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        if self.ended:
            return None
        end = min(self.position + self.block, len(self.audio))
        if self.realtime:
            wait = (end - self._due()) / (SAMPLE_RATE * self.speed)
            if wait > 0:
                if timeout is not None and wait > timeout:
                    time.sleep(max(0.0, timeout))
                    return None
                time.sleep(wait)
        block = self.audio[self.position:end].copy()
        self.position = end
        return block

    def discard_pending(self) -> int:
        if not self.realtime or self.ended:
            return 0
        due = min(self._due(), len(self.audio))
        skipped = max(0, due - self.position) // self.block
        self.position += skipped * self.block
        return skipped

    def close(self) -> None:
        self._closed = True


__all__ = [
    "BLOCK_SECONDS",
    "NO_MICROPHONE",
    "PORTAUDIO_MISSING",
    "ArraySource",
    "AudioSource",
    "MicrophoneError",
    "MicrophoneSource",
    "import_sounddevice",
    "list_input_devices",
    "resolve_input_device",
]
