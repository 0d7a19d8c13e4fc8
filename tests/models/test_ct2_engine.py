"""``--engine ct2``: Whisper decoded by CTranslate2 gives the torch engine's transcripts (on the
tiny test model, float32 and int8), is converted once into the cache, runs without torch, and
refuses what it cannot run in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from cli_runner import assert_one_line_error, run_cli
from conftest import sine

pytest.importorskip("ctranslate2", reason="the ct2 engine needs ctranslate2")

from asr_adapt.core.errors import DeviceError  # noqa: E402
from asr_adapt.models.loading import cache_dir, resolve_model  # noqa: E402
from asr_adapt.models.options import TranscribeOptions  # noqa: E402
from asr_adapt.models.transcriber import Transcriber  # noqa: E402
from asr_adapt.models.whisper.ct2_runtime import ct2_placement  # noqa: E402


def noisy_tones(count: int = 5) -> list[np.ndarray]:
    rng = np.random.RandomState(0)
    return [sine(0.8 + i / 3, freq=200 + 60 * i) + 0.05 * rng.randn(int(16000 * (0.8 + i / 3))).astype(np.float32)
            for i in range(count)]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_features_are_the_transformers_features(n_mels):
    from transformers import WhisperFeatureExtractor

    from asr_adapt.models.whisper.features import batch_features

    audios = [sine(2.0), np.random.RandomState(1).randn(16000 * 31).astype(np.float32) * 0.1, np.zeros(800, np.float32)]
    expected = WhisperFeatureExtractor(feature_size=n_mels)(audios, sampling_rate=16000, return_tensors="np").input_features
    assert np.abs(batch_features(audios, n_mels) - expected).max() < 1e-4
    assert batch_features(audios, n_mels, frames=400).shape == (3, n_mels, 400)


@pytest.mark.parametrize("options", [dict(beam_size=1), dict(beam_size=3), dict(beam_size=1, encoder_window=4)],
                         ids=["greedy", "beam", "short-window"])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_ct2_gives_the_torch_transcripts(tiny_whisper_dir, options, dtype):
    options = TranscribeOptions(max_new_tokens=8, **options)
    audios = noisy_tones()
    torch_texts = Transcriber(resolve_model(tiny_whisper_dir, device="cpu"), options).transcribe_arrays(audios)
    loaded = resolve_model(tiny_whisper_dir, engine="ct2", dtype=dtype)
    assert loaded.engine.runtime == "ct2" and str(loaded.placement) == f"cpu ({dtype})"
    assert Transcriber(loaded, options).transcribe_arrays(audios) == torch_texts
    assert all(torch_texts)


def test_long_files_are_cut_and_batched_across_files_as_with_torch(tiny_whisper_dir, tmp_path):
    """The Transcriber, not the engine, cuts, batches and skips silence: the same segments."""
    long = np.concatenate([sine(20.0, freq=300), np.zeros(16000 * 3, np.float32), sine(15.0, freq=500)])
    files = [tmp_path / "long.wav", tmp_path / "short.wav", tmp_path / "silent.wav"]
    for path, audio in zip(files, (long, sine(2.0), np.zeros(16000, np.float32))):
        sf.write(path, audio, 16000)
    options = TranscribeOptions(beam_size=1, max_new_tokens=6, batch_size=2)
    results = {}
    for engine in ("torch", "ct2"):
        loaded = resolve_model(tiny_whisper_dir, device="cpu", engine=engine, dtype="float32")
        results[engine] = [(t.text, [(s.start, s.end) for s in t.segments])
                           for t in Transcriber(loaded, options).transcribe_files(files)]
    assert results["ct2"] == results["torch"]
    assert len(results["ct2"][0][1]) == 2 and results["ct2"][2] == ("", [])


def test_streaming_decoder_matches_torch(tiny_whisper_dir):
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    torch_loaded = resolve_model(tiny_whisper_dir, device="cpu")
    ct2_loaded = resolve_model(tiny_whisper_dir, engine="ct2", dtype="float32")
    buffer = noisy_tones(3)[2]
    for window in ("full", 4):
        ours = ct2_loaded.engine.streaming_decoder(ct2_loaded, max_new_tokens=8, encoder_window=window)
        theirs = WhisperDecoder(torch_loaded, max_new_tokens=8, encoder_window=window)
        assert ours.forces_prefix
        assert ours(buffer) == theirs(buffer)
        assert ours(buffer, prefix=["hello"]) == theirs(buffer, prefix=["hello"])
        assert ours(buffer, prompt="Good morning.") == theirs(buffer, prompt="Good morning.")


def test_conversion_happens_once_and_leaves_no_staging(tiny_whisper_dir, monkeypatch):
    from asr_adapt.models import loading

    resolve_model(tiny_whisper_dir, engine="ct2")  # converted (or already there from another test)
    monkeypatch.setattr(loading, "convert_loaded", lambda *a, **k: pytest.fail("converted a second time"))
    loaded = resolve_model(tiny_whisper_dir, engine="ct2")
    folder = cache_dir() / "ct2"
    assert loaded.path.startswith(str(folder)) and loaded.kind == "local"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_a_full_disk_while_converting_is_one_line_and_leaves_nothing(tmp_path, tiny_whisper_dir, monkeypatch,
                                                                    capsys):
    import errno
    import shutil

    from asr_adapt.models import loading

    copy = tmp_path / "model"
    shutil.copytree(tiny_whisper_dir, copy)

    def full(loaded, target, *args):
        target.mkdir()
        (target / "model.bin").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(loading, "convert_loaded", full)
    code, _, err = run_cli(capsys, "transcribe", "--engine", "ct2", "--model", copy, _wav(tmp_path))
    assert_one_line_error(code, err, r"cannot build the CTranslate2 model .*No space left on device")
    assert not [p for p in (cache_dir() / "ct2").iterdir() if "model-" in p.name]


def _wav(folder, seconds=1.0):
    path = folder / "tone.wav"
    sf.write(path, sine(seconds), 16000)
    return path


def test_ctc_models_are_refused_in_one_line(tmp_path, capsys):
    from wav2vec2_models import build_tiny_ctc

    ctc = build_tiny_ctc(tmp_path / "w2v")
    code, _, err = run_cli(capsys, "transcribe", "--engine", "ct2", "--model", ctc, _wav(tmp_path))
    assert_one_line_error(code, err, r"--engine ct2 runs Whisper models only .* is a wav2vec2 model: use --engine torch")


def test_placement_is_chosen_in_one_place():
    import ctranslate2

    if ctranslate2.get_cuda_device_count():
        assert ct2_placement().compute_type == "float16"
    else:
        assert ct2_placement().compute_type == "int8"
        with pytest.raises(DeviceError, match="sees no CUDA GPU"):
            ct2_placement("cuda")
    assert ct2_placement("cpu", "float32").compute_type == "float32"
    with pytest.raises(DeviceError, match="float16 needs a GPU"):
        ct2_placement("cpu", "float16")
    with pytest.raises(DeviceError, match="unknown device"):
        ct2_placement("tpu")


def test_bad_engine_flags_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "transcribe", "--engine", "ct2", "--dtype", "float16", "--device", "cpu",
                           _wav(tmp_path))
    assert_one_line_error(code, err, "float16 needs a GPU with --engine ct2")
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, "transcribe", "--engine", "onnx", _wav(tmp_path))
    assert stop.value.code == 2
    assert_one_line_error(2, capsys.readouterr().err, r"invalid choice: 'onnx'")


def test_a_converted_model_runs_without_torch(tiny_whisper_dir, tmp_path):
    """A run whose CTranslate2 model is already converted never imports torch or transformers:
    seconds and hundreds of MB less before the first file."""
    resolve_model(tiny_whisper_dir, engine="ct2")
    code = ("import sys\nfrom asr_adapt.cli.main import main\n"
            f"code = main(['transcribe', '--engine', 'ct2', '--max-new-tokens', '4', '--model', {str(tiny_whisper_dir)!r}, "
            f"{str(_wav(tmp_path))!r}])\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules), code)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ})
    assert "HEAVY [] 0" in result.stdout, result.stdout[-500:] + result.stderr[-1500:]
