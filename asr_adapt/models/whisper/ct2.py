"""Reader for CTranslate2 ``model.bin`` files (binary format version 6).

faster-whisper users hold their Whisper weights in this format, and the only pretrained
Whisper weights reachable offline are shipped in it. Layout, all little-endian::

    u32 version; str spec_name; u32 revision; u32 n_vars;
    n_vars * (str name; u8 rank; u32 dims[rank]; u8 dtype; u32 nbytes; bytes data)
    u32 n_aliases; n_aliases * (str alias; str target)

where ``str`` is a u16 length followed by that many bytes ending in NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_adapt.core.errors import ModelError

#: CTranslate2 dtype codes.
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: "bfloat16",  # numpy has none: kept as raw uint16 and widened on conversion
}


@dataclass
class CT2Model:
    """The variables of a CTranslate2 model file, as numpy arrays keyed by name."""

    spec_name: str
    version: int
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. a tied output projection)."""
        seen = set()
        while name not in self.variables and name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        try:
            return self.variables[name]
        except KeyError:
            raise ModelError(f"CTranslate2 model lacks variable '{name}'; is it a Whisper model?") from None

    def has(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def float_weight(self, name: str) -> np.ndarray:
        """A weight as float32, dequantizing int8/int16 with its ``_scale`` if there is one."""
        array = self.get(name)
        if array.dtype == np.uint16 and self.dtype_codes.get(name) == 5:
            return (array.astype(np.uint32) << 16).view(np.float32)
        if array.dtype in (np.int8, np.int16):
            scale_name = f"{name}_scale"
            if not self.has(scale_name):
                raise ModelError(f"quantized variable '{name}' has no '{scale_name}'")
            scale = self.get(scale_name).astype(np.float32)
            # CTranslate2 stores one scale per output row: w_q = round(w * scale).
            return array.astype(np.float32) / scale.reshape(-1, *([1] * (array.ndim - 1)))
        return array.astype(np.float32)

    dtype_codes: dict[str, int] = field(default_factory=dict)


def _read_str(buffer: memoryview, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<H", buffer, offset)
    offset += 2
    raw = bytes(buffer[offset:offset + length])
    return raw.rstrip(b"\x00").decode("utf-8"), offset + length


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (a file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise ModelError(f"{path}: no CTranslate2 model.bin there")
    data = path.read_bytes()
    buffer = memoryview(data)
    try:
        return _parse(buffer, path)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as error:
        raise ModelError(f"{path}: not a valid CTranslate2 model file ({error}); re-convert or re-download it") from None


def _parse(buffer: memoryview, path: Path) -> CT2Model:
    (version,) = struct.unpack_from("<I", buffer, 0)
    offset = 4
    if version < 5 or version > 6:
        raise ModelError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6 expected)")
    spec_name, offset = _read_str(buffer, offset)
    (revision,) = struct.unpack_from("<I", buffer, offset)
    offset += 4
    (n_vars,) = struct.unpack_from("<I", buffer, offset)
    offset += 4
    variables: dict[str, np.ndarray] = {}
    codes: dict[str, int] = {}
    for _ in range(n_vars):
        name, offset = _read_str(buffer, offset)
        rank = buffer[offset]
        offset += 1
        dims = struct.unpack_from(f"<{rank}I", buffer, offset)
        offset += 4 * rank
        code = buffer[offset]
        offset += 1
        (nbytes,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if code not in _DTYPES:
            raise ValueError(f"unknown dtype code {code} for '{name}'")
        dtype = np.dtype("<u2") if code == 5 else _DTYPES[code]
        if offset + nbytes > len(buffer):
            raise ValueError(f"file ends inside variable '{name}' (truncated download?)")
        array = np.frombuffer(buffer[offset:offset + nbytes], dtype=dtype).reshape(dims)
        offset += nbytes
        variables[name] = array
        codes[name] = code
    aliases: dict[str, str] = {}
    if offset < len(buffer):
        (n_aliases,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        for _ in range(n_aliases):
            alias, offset = _read_str(buffer, offset)
            target, offset = _read_str(buffer, offset)
            aliases[alias] = target
    return CT2Model(spec_name=spec_name, version=version, revision=revision,
                    variables=variables, aliases=aliases, dtype_codes=codes)
