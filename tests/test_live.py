"""Live sessions (source -> processor -> display -> transcript) and profile switching."""

from __future__ import annotations

import numpy as np
import pytest

from asr_adapt.profiles import ProfileError


@pytest.fixture(autouse=True)
def profiles_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))


def make_profile(name, tiny_whisper_dir, seed=1, with_adapter=True):
    """A profile on the tiny model whose LoRA adapter has random (seeded) B weights, so that
    it changes the outputs and two seeds give two different adapters."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from asr_adapt.lora import LoraSettings, attach_lora
    from asr_adapt.profiles import Profile

    profile = Profile.create(name, base_model=str(tiny_whisper_dir), base_weights_sha256=None)
    if with_adapter:
        model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            peft_model = attach_lora(model, LoraSettings(rank=2))
            with torch.no_grad():
                for param_name, param in peft_model.named_parameters():
                    if "lora_B" in param_name:
                        param.copy_(0.05 * torch.randn(param.shape))
        profile.commit_adapter(lambda d: peft_model.save_pretrained(d), settings={}, metrics={})
    return profile


def logits(loaded):
    import torch

    features = torch.linspace(-1, 1, 80 * 3000).reshape(1, 80, 3000)
    with torch.no_grad():
        return loaded.model(input_features=features, decoder_input_ids=torch.tensor([[50257, 50362, 464]])).logits


def test_switching_profiles_without_reloading_the_base(tiny_whisper_dir):
    from asr_adapt.models import resolve_model
    from asr_adapt.personal import AdapterSwitcher, load_profile_model

    import torch

    make_profile("alice", tiny_whisper_dir, seed=1)
    bob = make_profile("bob", tiny_whisper_dir, seed=7)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    model_object = loaded.model
    base = logits(loaded)
    switcher = AdapterSwitcher(loaded)
    switcher.use("alice")
    alice = logits(loaded)
    assert switcher.active == "alice" and loaded.name.endswith("+alice")
    assert not torch.allclose(alice, base)
    switcher.use("bob")
    bob_logits = logits(loaded)
    assert not torch.allclose(bob_logits, alice)
    switcher.use("alice")
    assert torch.allclose(logits(loaded), alice, atol=1e-6)
    switcher.use(None)
    assert torch.equal(logits(loaded), base)          # the base weights come back bit for bit
    assert loaded.model is model_object               # one model object all along
    assert not any(hasattr(m, "base_layer") for m in loaded.model.modules())  # merged, no LoRA layers
    # The same as loading the profile the ordinary way.
    fresh, _ = load_profile_model("bob", device="cpu")
    switcher.use("bob")
    assert torch.allclose(logits(loaded), logits(fresh), atol=1e-6)
    assert bob.name == "bob"


def test_switching_to_a_bad_profile_keeps_a_working_model(tiny_whisper_dir):
    from asr_adapt.models import resolve_model
    from asr_adapt.personal import AdapterSwitcher

    make_profile("alice", tiny_whisper_dir)
    make_profile("empty", tiny_whisper_dir, with_adapter=False)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    switcher = AdapterSwitcher(loaded)
    switcher.use("alice")
    with pytest.raises(ProfileError, match="no adapter yet"):
        switcher.use("empty")
    with pytest.raises(ProfileError, match="no profile|not found|does not exist|unknown"):
        switcher.use("nobody")
    assert switcher.active == "alice"
