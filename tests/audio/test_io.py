"""Audio loading: any rate and channel count in, 16 kHz mono out; bad files refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.audio.io import SAMPLE_RATE, audio_info, is_silent, load_audio, split_into_windows
from asr_adapt.core.errors import AudioError
from conftest import sine


def _dominant_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(audio))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_16k_keeping_pitch(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(2.0, rate=rate, freq=440.0), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2 * SAMPLE_RATE) <= 2
    assert abs(_dominant_frequency(audio) - 440.0) < 2.0


def test_stereo_is_mixed_down(tmp_path):
    left = sine(1.0, freq=300.0)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(tmp_path / "s.flac", stereo, SAMPLE_RATE)
    audio = load_audio(tmp_path / "s.flac")
    assert audio.ndim == 1
    assert np.allclose(audio, left / 2, atol=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory_given_as_file(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_non_audio_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError):
        load_audio(path)


def test_header_only_wav_has_no_audio(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio"):
        load_audio(path)


def test_truncated_flac(tmp_path):
    path = tmp_path / "cut.flac"
    rng = np.random.default_rng(0)
    sf.write(path, rng.uniform(-0.5, 0.5, SAMPLE_RATE * 3).astype(np.float32), SAMPLE_RATE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="corrupt|truncated|not a readable"):
        load_audio(path)


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, sine(3.0), SAMPLE_RATE)
    with pytest.raises(AudioError, match="longer than"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=None)) == 3 * SAMPLE_RATE


def test_audio_info_reads_the_header(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(1.5, rate=8000, channels=2), 8000)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (8000, 2)
    assert info.duration == pytest.approx(1.5)


def test_silence_detection():
    assert is_silent(np.zeros(16000, dtype=np.float32))
    assert is_silent(np.full(16000, 1e-4, dtype=np.float32))
    assert not is_silent(sine(1.0))


def test_short_audio_is_one_window():
    assert split_into_windows(sine(10.0)) == [(0, 10 * SAMPLE_RATE)]


def test_long_audio_is_cut_in_the_pauses():
    # 20 s of tone, 1 s of silence, 20 s of tone, 1 s silence, 20 s tone.
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([sine(20.0), gap, sine(20.0), gap, sine(20.0)])
    windows = split_into_windows(audio, max_seconds=29.0)
    assert windows[0][0] == 0 and windows[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # contiguous, no overlap
    assert all(end - start <= 29 * SAMPLE_RATE for start, end in windows)
    for _, end in windows[:-1]:
        assert np.abs(audio[end - 160:end + 160]).max() == 0.0  # each cut lies in a pause
