"""A stand-in for the sounddevice module (devices, streams, callbacks), for tests without audio hardware."""

from __future__ import annotations

import types

import numpy as np

from asr_adapt.audio import devices, microphone


class FakePortAudioError(Exception):
    pass


class FakeFlags:
    def __init__(self, input_overflow: bool = False) -> None:
        self.input_overflow = input_overflow


class FakeStream:
    """Calls the callback when told to (``deliver``), as PortAudio's thread would."""

    def __init__(self, sd, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback) -> None:
        self.sd, self.device, self.samplerate, self.channels = sd, device, samplerate, channels
        self.blocksize, self.callback, self.finished_callback = blocksize, callback, finished_callback
        self.active = False
        self.closed = False
        sd.streams.append(self)

    def start(self) -> None:
        if self.sd.fail_start:
            raise FakePortAudioError(self.sd.fail_start)
        self.active = True

    def deliver(self, audio: np.ndarray, overflow_blocks: tuple[int, ...] = ()) -> int:
        """Feed ``audio`` (frames x channels or 1-D) block by block; return the block count."""
        data = audio.reshape(len(audio), -1)
        if data.shape[1] != self.channels:
            data = np.repeat(data[:, :1], self.channels, axis=1)
        count = 0
        for start in range(0, len(data), self.blocksize):
            block = data[start:start + self.blocksize].astype(np.float32)
            self.callback(block, len(block), None, FakeFlags(count in overflow_blocks))
            count += 1
        return count

    def vanish(self) -> None:
        """The device is unplugged: PortAudio ends the stream."""
        self.active = False
        self.finished_callback()

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True


def fake_sounddevice(devices=None, default_input: int = 0, rates=(16000, 44100, 48000),
                     channel_counts=(1, 2), fail_start: str | None = None):
    """A module with the parts of sounddevice that asr_adapt uses."""
    sd = types.SimpleNamespace()
    sd.PortAudioError = FakePortAudioError
    sd.devices = [dict(d, index=i) for i, d in enumerate(devices or [])]
    sd.default = types.SimpleNamespace(device=[default_input, default_input])
    sd.streams = []
    sd.fail_start = fail_start

    def query_devices(device=None, kind=None):
        if kind == "input":
            index = sd.default.device[0]
            if index < 0 or index >= len(sd.devices):
                raise FakePortAudioError(f"Error querying device {index}")
            return sd.devices[index]
        return list(sd.devices)

    def check_input_settings(device=None, channels=None, dtype=None, samplerate=None):
        if samplerate not in rates:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")
        if channels not in channel_counts:
            raise FakePortAudioError("Invalid number of channels [PaErrorCode -9998]")

    sd.query_devices = query_devices
    sd.query_hostapis = lambda index: {"name": "ALSA"}
    sd.check_input_settings = check_input_settings
    sd.InputStream = lambda **kwargs: FakeStream(sd, **kwargs)
    return sd


def patch_sounddevice(monkeypatch, importer) -> None:
    """Replace ``import_sounddevice`` where it is looked up: listing devices and opening one."""
    monkeypatch.setattr(devices, "import_sounddevice", importer)
    monkeypatch.setattr(microphone, "import_sounddevice", importer)


def device(name: str, inputs: int = 1, rate: float = 48000.0, outputs: int = 0) -> dict:
    return {"name": name, "max_input_channels": inputs, "max_output_channels": outputs,
            "default_samplerate": rate, "hostapi": 0}
