"""Audio sources without hardware: a fake sounddevice module stands in for PortAudio."""

from __future__ import annotations

import importlib.abc
import sys
import threading
import time

import numpy as np
import pytest

from fake_sounddevice import device, fake_sounddevice
from asr_adapt.audio.devices import (
    NO_MICROPHONE, PORTAUDIO_MISSING, MicrophoneError, import_sounddevice, list_input_devices,
    resolve_input_device,
)
from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.audio.microphone import MicrophoneSource
from asr_adapt.audio.sources import ArraySource, AudioSource
from asr_adapt.core.errors import AsrAdaptError


def tone(seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def read_all(source, limit: int = 10_000) -> list[np.ndarray]:
    blocks = []
    for _ in range(limit):
        block = source.read(timeout=0)
        if block is None:
            break
        blocks.append(block)
    return blocks


# --------------------------------------------------------------------------- import


class _RaisingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise self.error


def test_missing_portaudio_is_a_one_line_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RaisingFinder(OSError("PortAudio library not found"))]
                        + sys.meta_path)
    with pytest.raises(MicrophoneError) as caught:
        import_sounddevice()
    assert str(caught.value) == PORTAUDIO_MISSING
    assert isinstance(caught.value, AsrAdaptError) and caught.value.exit_code == 2
    with pytest.raises(MicrophoneError, match="PortAudio library is missing"):
        MicrophoneSource().open()


def test_missing_sounddevice_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MicrophoneError, match="pip install sounddevice"):
        import_sounddevice()


def test_real_sounddevice_imports():
    # libportaudio2 is installed here; whether a device exists does not matter.
    assert hasattr(import_sounddevice(), "InputStream")


# --------------------------------------------------------------------------- devices


def test_no_input_device(use_fake):
    use_fake(fake_sounddevice(devices=[], default_input=-1))
    assert list_input_devices() == []
    with pytest.raises(MicrophoneError) as caught:
        resolve_input_device(None)
    assert str(caught.value) == NO_MICROPHONE
    with pytest.raises(MicrophoneError, match="no microphone found"):
        MicrophoneSource().open()


def test_output_only_devices_are_not_microphones(use_fake):
    use_fake(fake_sounddevice(devices=[device("HDMI", inputs=0, outputs=2)], default_input=-1))
    with pytest.raises(MicrophoneError, match="no microphone found"):
        resolve_input_device("HDMI")


def test_opening_reports_querying_device_minus_one_as_no_microphone(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("pulse")], fail_start="Error querying device -1"))
    with pytest.raises(MicrophoneError) as caught:
        MicrophoneSource().open()
    assert str(caught.value) == NO_MICROPHONE
    assert sd.streams[0].closed


def test_opening_failure_is_a_one_line_error(use_fake):
    use_fake(fake_sounddevice(devices=[device("USB Mic")],
                              fail_start="Device unavailable [PaErrorCode -9985]"))
    with pytest.raises(MicrophoneError) as caught:
        MicrophoneSource().open()
    message = str(caught.value)
    assert "USB Mic" in message and "Device unavailable" in message and "\n" not in message


def test_list_and_resolve_devices(use_fake):
    use_fake(fake_sounddevice(devices=[device("HDMI out", inputs=0, outputs=2),
                                       device("USB Audio Mic", rate=44100.0),
                                       device("pulse", inputs=32), device("default", inputs=32)],
                              default_input=2))
    inputs = list_input_devices()
    assert [d["index"] for d in inputs] == [1, 2, 3]
    assert inputs[0] == {"index": 1, "name": "USB Audio Mic", "channels": 1,
                         "default_samplerate": 44100.0, "is_default": False, "hostapi": "ALSA"}
    assert resolve_input_device(None)["name"] == "pulse"
    assert resolve_input_device(1)["name"] == "USB Audio Mic"
    assert resolve_input_device("3")["name"] == "default"
    assert resolve_input_device("usb")["index"] == 1
    assert resolve_input_device("PULSE")["index"] == 2
    with pytest.raises(MicrophoneError) as caught:
        resolve_input_device("webcam")
    assert "no input device matches 'webcam'" in str(caught.value)
    assert "1 'USB Audio Mic'" in str(caught.value) and "2 'pulse'" in str(caught.value)
    with pytest.raises(MicrophoneError, match="there is no input device 0"):
        resolve_input_device(0)  # an output-only device
    with pytest.raises(MicrophoneError, match="matches 3 input devices"):
        resolve_input_device("u")


def test_default_falls_back_to_first_input(use_fake):
    use_fake(fake_sounddevice(devices=[device("mic a"), device("mic b")], default_input=-1))
    assert resolve_input_device(None)["name"] == "mic a"


# --------------------------------------------------------------------------- MicrophoneSource


def test_microphone_source_at_16k_mono(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource() as mic:
        stream = sd.streams[0]
        assert (stream.samplerate, stream.channels) == (16000, 1)
        audio = tone(1.0)
        count = stream.deliver(audio)
        blocks = read_all(mic)
        assert len(blocks) == count
        np.testing.assert_allclose(np.concatenate(blocks), audio, atol=1e-7)
        assert mic.read(timeout=0.05) is None and not mic.ended
    assert stream.closed and mic.ended and mic.read(0) is None


def test_microphone_source_resamples_and_mixes_down(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic", inputs=2, rate=48000.0)],
                                   rates=(48000,), channel_counts=(2,)))
    with MicrophoneSource("mic") as mic:
        stream = sd.streams[0]
        assert (stream.samplerate, stream.channels) == (48000, 2)
        stream.deliver(tone(2.0, rate=48000))
        out = np.concatenate(read_all(mic))
    assert out.dtype == np.float32
    assert abs(len(out) - 2 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE  # minus the resampler's delay
    body = out[4000:20000]  # a continuous 440 Hz tone, no seams at block edges
    expected_rms = 0.3 / np.sqrt(2)
    assert abs(np.sqrt(np.mean(body ** 2)) - expected_rms) < 0.01
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(body)
    assert abs(peak_hz - 440) < 3
    assert spectrum[np.fft.rfftfreq(len(body), 1 / SAMPLE_RATE) > 1000].max() < 1e-3 * spectrum.max()


def test_unsupported_rates_are_an_error(use_fake):
    use_fake(fake_sounddevice(devices=[device("odd", rate=22050.0)], rates=(8000,)))
    with pytest.raises(MicrophoneError, match="accepts neither 16000 Hz nor its default rate 22050"):
        MicrophoneSource().open()


def test_overflows_are_counted_not_fatal(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource() as mic:
        sd.streams[0].deliver(tone(0.5), overflow_blocks=(1, 3))
        assert mic.overflows == 2
        assert len(read_all(mic)) == 10


def test_full_queue_drops_the_oldest_blocks(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource(queue_seconds=0.2) as mic:  # room for 4 blocks of 50 ms
        audio = np.arange(16000, dtype=np.float32) / 16000
        sd.streams[0].deliver(audio)
        blocks = read_all(mic)
        assert len(blocks) == 4 and mic.dropped_blocks == 16
        np.testing.assert_allclose(np.concatenate(blocks), audio[-3200:])


def test_discard_pending(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource() as mic:
        sd.streams[0].deliver(tone(0.3))
        assert mic.discard_pending() == 6
        assert mic.read(timeout=0) is None


def test_vanished_device_keeps_delivered_audio_then_raises(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("USB Mic")]))
    with MicrophoneSource() as mic:
        stream = sd.streams[0]
        stream.deliver(tone(0.2))
        stream.vanish()
        for _ in range(4):  # what arrived is handed out first
            assert mic.read(timeout=0) is not None
        with pytest.raises(MicrophoneError) as caught:
            mic.read(timeout=0.5)
        assert "'USB Mic' stopped delivering audio" in str(caught.value)
        assert mic.ended
        with pytest.raises(MicrophoneError):
            mic.read(timeout=0)


def test_stalled_device_raises(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource(stall_timeout=0.1) as mic:
        sd.streams[0].deliver(tone(0.1))
        assert len(read_all(mic)) == 2
        time.sleep(0.15)
        with pytest.raises(MicrophoneError, match="stopped delivering audio for 0.1 s"):
            mic.read(timeout=0.3)


def test_silent_start_raises_after_start_timeout(use_fake):
    use_fake(fake_sounddevice(devices=[device("mic")]))
    with MicrophoneSource(start_timeout=0.1) as mic:
        with pytest.raises(MicrophoneError, match="delivered no audio within 0.1 s"):
            mic.read(timeout=1.0)


def test_callback_on_another_thread(use_fake):
    sd = use_fake(fake_sounddevice(devices=[device("mic")]))
    audio = tone(1.0)
    with MicrophoneSource() as mic:
        feeder = threading.Thread(target=sd.streams[0].deliver, args=(audio,))
        feeder.start()
        blocks = []
        while sum(len(b) for b in blocks) < len(audio):
            block = mic.read(timeout=2.0)
            assert block is not None
            blocks.append(block)
        feeder.join()
    np.testing.assert_allclose(np.concatenate(blocks), audio, atol=1e-7)


def test_read_before_open_is_an_error():
    with pytest.raises(MicrophoneError, match="not open"):
        MicrophoneSource().read(0)


# --------------------------------------------------------------------------- ArraySource


def test_array_source_blocks_and_end():
    audio = np.arange(8000, dtype=np.float32)
    source = ArraySource(audio)
    assert isinstance(source, AudioSource)
    blocks = read_all(source)
    assert [len(b) for b in blocks] == [800] * 10
    np.testing.assert_array_equal(np.concatenate(blocks), audio)
    assert source.ended and source.read(1.0) is None and source.overflows == 0


def test_array_source_resamples():
    source = ArraySource(tone(1.0, rate=8000), sample_rate=8000)
    assert abs(sum(len(b) for b in read_all(source)) - SAMPLE_RATE) <= 1


def test_array_source_realtime_pacing_and_discard():
    source = ArraySource(np.zeros(SAMPLE_RATE, dtype=np.float32), realtime=True)
    start = time.monotonic()
    assert source.read(timeout=1.0) is not None
    assert source.read(timeout=0.001) is None  # the next block is not due yet
    blocks = 1
    while source.read(timeout=1.0) is not None and blocks < 5:
        blocks += 1
    assert time.monotonic() - start >= 0.2
    time.sleep(0.3)
    assert source.discard_pending() >= 4
    assert source.position >= 0.5 * SAMPLE_RATE


def test_array_source_from_file(tmp_path):
    from asr_adapt.audio.io import write_audio

    path = tmp_path / "a.wav"
    write_audio(path, tone(0.5, rate=8000), rate=8000)
    source = ArraySource.from_file(path)
    assert abs(len(source.audio) - 8000) <= 1
