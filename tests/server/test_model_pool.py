"""Many users in one process: requests naming different profiles share one batch on one base
model (PEFT mixed-adapter batches), and adapters past --max-adapters are evicted, least
recently used first, and loaded again when asked for. A tiny random Whisper stands in for a
real one: only whether texts are equal matters here."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fake_profiles import make_profile
from server_harness import running_server, transcribe_request, wav_bytes

from asr_adapt.server.options import ServeOptions


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory, tiny_whisper_dir):
    """Profiles p1, p2, p3 (three adapters) on the tiny model, which requests may also name
    plainly as "tiny"; two adapters fit; requests wait up to 0.5 s to share a batch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(tmp_path_factory.mktemp("home")))
        for seed, name in enumerate(("p1", "p2", "p3"), start=1):
            make_profile(name, tiny_whisper_dir, seed=seed)
        options = ServeOptions(allowed_models=(("tiny", str(tiny_whisper_dir)),), max_adapters=2,
                               batch_window_ms=500)
        with running_server(options) as server:
            server.worker = server.engine.worker(str(tiny_whisper_dir))
            yield server


def audio(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    return wav_bytes((0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(16000)))


def text_of(server, model: str, seed: int) -> str:
    status, body = transcribe_request(server.base_url, model, audio(seed))
    assert status == 200, body
    return body["text"]


def test_two_profiles_and_the_base_model_share_one_batch(pool_server):
    cases = [("p1", 1), ("p2", 2), ("tiny", 3)]
    alone = [text_of(pool_server, model, seed) for model, seed in cases]
    assert len(set(alone)) == 3  # three different models: a mix-up would show
    before = len(pool_server.worker.recent_batches)
    start = threading.Barrier(len(cases))

    def together(case):
        start.wait()
        return text_of(pool_server, *case)

    with ThreadPoolExecutor(len(cases)) as pool:
        batched = list(pool.map(together, cases))
    assert batched == alone
    new = list(pool_server.worker.recent_batches)[before:]
    assert any(len(batch) == 3 and len(set(batch)) == 3 and "__base__" in batch for batch in new), new


def test_least_recently_used_adapter_is_evicted_and_comes_back(pool_server):
    adapters = pool_server.worker.adapters
    first = text_of(pool_server, "p1", 7)
    text_of(pool_server, "p2", 7)
    loads, evictions = adapters.loads, adapters.evictions
    assert text_of(pool_server, "p3", 7) != first
    assert adapters.evictions == evictions + 1  # p1, the least recently used, made room for p3
    assert [key.profile for key in adapters.resident()] == ["p2", "p3"]
    assert text_of(pool_server, "p1", 7) == first  # loaded again, the same adapter
    assert adapters.loads == loads + 2
    assert [key.profile for key in adapters.resident()] == ["p3", "p1"]


def test_a_transcription_past_the_timeout_is_answered_504(tmp_path, monkeypatch, tiny_whisper_dir):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    options = ServeOptions(allowed_models=(("tiny", str(tiny_whisper_dir)),), request_timeout=0.001)
    with running_server(options) as server:
        status, body = transcribe_request(server.base_url, "tiny", audio(1))
    assert status == 504 and body["error"]["code"] == "timeout" and "limit" in body["error"]["message"]
