"""Choosing where the model runs: CUDA when present, the CPU otherwise.

torch is imported when a device is resolved, not when this module is: the CLI reads
:data:`DEVICE_CHOICES` to build ``--help``, which must answer without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from asr_adapt.core.errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Placement:
    """A device and the floating-point type that is fastest and safe there."""

    device: torch.device
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"{self.device} ({str(self.dtype).removeprefix('torch.')})"


def resolve_device(name: str = "auto", dtype: str = "auto") -> Placement:
    """Turn ``auto|cpu|cuda|cuda:N`` into a :class:`Placement`.

    ``auto`` picks CUDA when a GPU is visible. On CUDA the default dtype is bfloat16 where
    the GPU supports it (no loss scaling needed) and float16 otherwise; on the CPU float32,
    since half precision is slower there, not faster.
    """
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    base = name.split(":", 1)[0]
    if base not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device '{name}'; use one of: auto, cpu, cuda, cuda:N")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu or auto")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DeviceError(f"bad CUDA device '{name}'; use cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    else:
        device = torch.device("cpu")
    return Placement(device=device, dtype=_resolve_dtype(dtype, device))


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    dtype = (dtype or "auto").lower()
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in table:
        raise DeviceError(f"unknown dtype '{dtype}'; use auto, float32, float16 or bfloat16")
    if device.type == "cpu" and table[dtype] == torch.float16:
        raise DeviceError("float16 is not supported on the CPU; use float32 or bfloat16")
    return table[dtype]
