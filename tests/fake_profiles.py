"""Miniature profiles for tests: what PEFT writes for an adapter, and profiles on the tiny model with seeded adapters."""

from __future__ import annotations

import functools
import json
from pathlib import Path


@functools.lru_cache(maxsize=None)
def tiny_en_sha() -> str:
    """The sha256 a profile records for the bundled whisper-tiny.en weights (hashed, not converted):
    an imported profile on that model must carry it."""
    from asr_adapt.models.bundled import BUNDLED
    from asr_adapt.models.loading import bundled_weights_sha256

    return bundled_weights_sha256(BUNDLED["whisper-tiny.en"])


def add_member(tar, name: str, data: bytes = b"", **fields) -> None:
    """Add a member ``name`` holding ``data`` to an open tarfile; ``fields`` set TarInfo
    attributes (a link's ``type`` and ``linkname``, a device's numbers)."""
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def write_archive(path: Path, files: dict[str, bytes], extra=None) -> Path:
    """A .tar.gz at ``path`` holding ``files`` (member name -> bytes), then whatever ``extra(tar)`` adds."""
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            add_member(tar, name, data)
        if extra:
            extra(tar)
    return path


def fake_adapter(folder: Path, peft_type: str = "LORA", value: float = 0.0) -> None:
    """What PEFT save_pretrained writes, in miniature."""
    import torch
    from safetensors.torch import save_file

    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": 2}))
    save_file({"lora_A": torch.full((2, 2), value)}, str(folder / "adapter_model.safetensors"))


def make_profile(name, tiny_whisper_dir, seed=1, with_adapter=True):
    """A profile on the tiny model whose LoRA adapter has random (seeded) B weights, so that
    it changes the outputs and two seeds give two different adapters."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.adapt.attach import attach_lora
    from asr_adapt.profiles.profile import Profile

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
