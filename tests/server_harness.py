"""A real server for the server tests: uvicorn on 127.0.0.1 with a free port, in a thread of
the test process, started and stopped by the test; and the profiles its tests serve."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from asr_adapt.server.app import create_app, uvicorn_config
from asr_adapt.server.options import ServeOptions


@dataclass
class RunningServer:
    """A started server: where it listens and its app (whose state the tests may read)."""

    base_url: str
    ws_url: str
    app: object
    options: ServeOptions

    @property
    def engine(self):
        return self.app.state.server.engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(options: ServeOptions | None = None, engine=None, timeout: float = 30.0) -> Iterator[RunningServer]:
    """Start the app on 127.0.0.1 (a free port) in a thread; stop it on the way out."""
    options = replace(options or ServeOptions(), host="127.0.0.1", port=free_port())
    app = create_app(options, engine)
    config = uvicorn_config(app, options)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(f"http://127.0.0.1:{options.port}", f"ws://127.0.0.1:{options.port}", app, options)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def make_bundled_profile(name: str, seed: int, scale: float = 0.004):
    """A profile on the bundled whisper-tiny.en whose adapter has seeded random deltas, small
    enough that the text stays speech, large enough that some words change."""
    import torch

    from asr_adapt.adapt.attach import attach_lora
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.profile import Profile

    loaded = resolve_model("whisper-tiny.en", device="cpu")
    profile = Profile.create(name, base_model="whisper-tiny.en", base_weights_sha256=loaded.weights_sha256)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        peft_model = attach_lora(loaded.model, LoraSettings(rank=4))
        with torch.no_grad():
            for param_name, param in peft_model.named_parameters():
                if "lora_B" in param_name:
                    param.copy_(scale * torch.randn(param.shape))
    profile.commit_adapter(lambda folder: peft_model.save_pretrained(folder), settings={}, metrics={})
    return profile


def write_keys(path: Path, entries: dict[str, str]) -> Path:
    """A keys file giving each key (the dict's keys) its profiles (``alice,bob`` or ``*``)."""
    from asr_adapt.server.keys import hash_key

    path.write_text("".join(f"sha256:{hash_key(key)} {profiles}\n" for key, profiles in entries.items()))
    return path


def multipart(fields: dict, files: dict | None = None, boundary: str = "asr-adapt-test-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body and its content type: ``fields`` (a list value repeats the
    field), ``files`` name -> (filename, bytes)."""
    parts = []
    for name, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(base_url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
            timeout: float = 120) -> tuple[int, object]:
    """One HTTP request by hand (http.client: nothing smooths what a test sends); returns the
    status and the body, parsed when it is JSON."""
    import http.client
    import json
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        data = answer.read()
    finally:
        connection.close()
    try:
        return answer.status, json.loads(data)
    except ValueError:
        return answer.status, data.decode("utf-8", "replace")


def transcribe_request(base_url: str, model: str, audio: bytes, key: str | None = None, filename: str = "a.wav",
                       **fields) -> tuple[int, object]:
    """POST /v1/audio/transcriptions with ``audio`` as the file."""
    body, content_type = multipart({"model": model, **fields}, {"file": (filename, audio)})
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return request(base_url, "POST", "/v1/audio/transcriptions", body, headers)


def wav_bytes(audio, rate: int = 16000) -> bytes:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
