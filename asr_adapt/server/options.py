"""What ``asr-adapt serve`` takes: one frozen dataclass, validated in one place (no torch, no
fastapi: the CLI builds it before anything heavy is imported)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.engines import DEFAULT_ENGINE, check_engine

#: OpenAI's own upload limit for the audio endpoints.
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: 30 minutes: a float32 copy of the audio takes 115 MB while it is transcribed.
DEFAULT_MAX_AUDIO_SECONDS = 30 * 60.0
#: Host names that only this machine can reach.
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens, whom it lets in, and the limits it holds every request to."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: The API keys file (see :mod:`asr_adapt.server.keys`); None: no keys, loopback only.
    api_keys: Path | None = None
    #: Profile adapters resident on each base model at once; the least recently used goes first.
    max_adapters: int = 16
    #: How long the first waiting request waits for others to share its batch (milliseconds).
    batch_window_ms: float = 10.0
    #: Most pieces (of at most 30 s) decoded in one batch.
    max_batch: int = 16
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    #: Live WebSocket streams one key may hold open at once.
    max_streams_per_key: int = 2
    #: Seconds a transcription may take, waiting included, before it is answered with an error.
    request_timeout: float = 300.0
    #: Beam width (None: the model family's usual one, 5 for Whisper, as ``transcribe``).
    beam_size: int | None = None
    #: Models that are neither bundled nor a profile's base, which requests may name:
    #: ``(name, path or hub id)`` pairs the operator allowed (``--allow-model [NAME=]PATH``).
    allowed_models: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    dtype: str = "auto"
    #: What decodes: ``torch`` (mixed-adapter batches) or ``ct2`` (CTranslate2, Whisper only:
    #: one converted model per profile, batches grouped by profile).
    engine: str = DEFAULT_ENGINE

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", check_engine(self.engine))
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise OptionsError(f"port must be 0-65535, got {self.port!r}")
        if self.api_keys is None and not is_loopback(self.host):
            raise OptionsError(f"refusing to listen on {self.host} without --api-keys: anyone who reaches it "
                               "could use every profile; give --api-keys FILE or listen on 127.0.0.1")
        _positive_int("max adapters", self.max_adapters)
        _positive_int("max batch", self.max_batch)
        _positive_int("max streams per key", self.max_streams_per_key)
        _positive_int("max upload bytes", self.max_upload_bytes)
        if not 0 <= self.batch_window_ms <= 1000:
            raise OptionsError(f"batching window must be 0-1000 ms, got {self.batch_window_ms}")
        if not self.max_audio_seconds > 0:
            raise OptionsError(f"max audio seconds must be positive, got {self.max_audio_seconds}")
        if not self.request_timeout > 0:
            raise OptionsError(f"request timeout must be positive, got {self.request_timeout}")
        if self.beam_size is not None:
            _positive_int("beam size", self.beam_size)
        for name, where in self.allowed_models:
            if not name or not where or any(ch.isspace() for ch in name):
                raise OptionsError(f"allowed model needs a name and a path, got {name!r}={where!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address (or name) only this machine reaches."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_allowed_model(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after its last path part) -> ``(name, path)``."""
    name, sep, where = spec.partition("=")
    if not sep:
        where = spec
        name = Path(spec.rstrip("/\\")).name or spec
    return name.strip(), where.strip()


def _positive_int(what: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OptionsError(f"{what} must be a positive integer, got {value!r}")


__all__ = ["ServeOptions", "is_loopback", "parse_allowed_model"]
