"""The torch side of a training run: seeding, autocast, snapshots of the LoRA weights, peak
memory and the progress bar."""

from __future__ import annotations

import random

import numpy as np
import torch

from asr_adapt.models.base import LoadedModel


def lora_state(peft_model) -> dict[str, torch.Tensor]:
    """A copy of the adapter weights (to restore the best epoch's later)."""
    return {k: v.detach().clone() for k, v in peft_model.state_dict().items() if "lora_" in k}


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(loaded: LoadedModel, compute_dtype: torch.dtype | None):
    """Autocast to ``compute_dtype`` (or the model's dtype) for half-precision on CUDA; a
    context that does nothing elsewhere."""
    dtype = compute_dtype or loaded.placement.dtype
    if loaded.placement.device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype)
    import contextlib

    return contextlib.nullcontext()


def peak_memory_mb(loaded: LoadedModel) -> float | None:
    """Peak GPU memory on CUDA, else the process's peak resident memory (None: unknown)."""
    if loaded.placement.device.type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    except (ImportError, AttributeError):
        return None


def progress_bar(total: int, enabled: bool):
    """A tqdm bar over ``total`` steps, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="adapting", leave=False)


__all__ = ["autocast_for", "lora_state", "peak_memory_mb", "progress_bar", "seed_everything"]
