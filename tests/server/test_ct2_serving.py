"""``asr-adapt serve --engine ct2``: OpenAI's client gets the text ``transcribe --engine ct2``
gives, for a profile and for a plain model; profiles in one burst each get their own text
(rows grouped by profile); profile models past --max-adapters are dropped, least recently
used first; a CTC model is refused in one line; a live stream gives the recording's words.
A tiny random Whisper stands in for a real one except in the live test."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import read_samples_manifest
from fake_profiles import make_profile
from server_harness import running_server, transcribe_request, wav_bytes

from asr_adapt.profiles.engines import ENGINES_FOLDER
from asr_adapt.profiles.profile import Profile
from asr_adapt.server.options import ServeOptions

pytest.importorskip("ctranslate2", reason="the ct2 engine needs ctranslate2")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def ct2_server(tmp_path_factory, tiny_whisper_dir):
    """Profiles p1, p2, p3 on the tiny model (also served plainly as "tiny"), a tiny wav2vec2
    served as "w2v"; two profile models fit; requests wait up to 0.5 s to share a batch."""
    from wav2vec2_models import build_tiny_ctc

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(home))
        for seed, name in enumerate(("p1", "p2", "p3"), start=1):
            make_profile(name, tiny_whisper_dir, seed=seed)
        ctc = build_tiny_ctc(tmp_path_factory.mktemp("w2v") / "w2v")
        options = ServeOptions(engine="ct2", allowed_models=(("tiny", str(tiny_whisper_dir)), ("w2v", str(ctc))),
                               max_adapters=2, batch_window_ms=500)
        with running_server(options) as server:
            server.worker = server.engine.worker(str(tiny_whisper_dir))
            yield server


def audio(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32)


def text_of(server, model: str, seed: int) -> str:
    status, body = transcribe_request(server.base_url, model, wav_bytes(audio(seed)))
    assert status == 200, body
    return body["text"]


def test_the_openai_client_gets_what_transcribe_engine_ct2_gives(ct2_server, tiny_whisper_dir, tmp_path):
    import asr_adapt

    wav = tmp_path / "tone.wav"
    wav.write_bytes(wav_bytes(audio(4)))
    client = openai.OpenAI(base_url=ct2_server.base_url + "/v1", api_key="none", max_retries=0, timeout=120)
    expected = {"p1": asr_adapt.transcribe([wav], profile="p1", engine="ct2")[0].text,
                "tiny": asr_adapt.transcribe([wav], model=str(tiny_whisper_dir), engine="ct2")[0].text}
    assert expected["p1"] != expected["tiny"]  # the adapter changes the text: a missing one would show
    assert ct2_server.worker.loaded.engine.runtime == "ct2"
    for model, text in expected.items():
        with open(wav, "rb") as handle:
            assert client.audio.transcriptions.create(model=model, file=handle).text == text
    conversions = list((Profile.open("p1").path / ENGINES_FOLDER).glob("ct2-*"))
    assert len(conversions) == 1  # the server used (and made no second copy of) the profile's cached conversion


def test_two_profiles_in_one_burst_each_get_their_own_text(ct2_server):
    cases = [("p1", 1), ("p2", 1), ("p1", 2), ("tiny", 1)]
    alone = [text_of(ct2_server, model, seed) for model, seed in cases]
    assert alone[0] != alone[1]  # two profiles, one audio: a mix-up would show
    before = len(ct2_server.worker.recent_batches)
    start = threading.Barrier(len(cases))

    def together(case):
        start.wait()
        return text_of(ct2_server, *case)

    with ThreadPoolExecutor(len(cases)) as pool:
        assert list(pool.map(together, cases)) == alone
    new = list(ct2_server.worker.recent_batches)[before:]
    assert any({"p1", "p2", "__base__"} <= set(batch) for batch in new), new


def test_least_recently_used_profile_model_is_dropped_and_comes_back(ct2_server):
    models = ct2_server.worker.adapters
    first = text_of(ct2_server, "p1", 7)
    text_of(ct2_server, "p2", 7)
    loads, evictions = models.loads, models.evictions
    assert text_of(ct2_server, "p3", 7) != first
    assert models.evictions == evictions + 1
    assert [key.profile for key in models.resident()] == ["p2", "p3"]
    assert text_of(ct2_server, "p1", 7) == first  # loaded again from its conversion
    assert models.loads == loads + 2
    assert [key.profile for key in models.resident()] == ["p3", "p1"]


def test_a_ctc_model_and_a_prompt_are_refused_in_one_line(ct2_server):
    status, body = transcribe_request(ct2_server.base_url, "w2v", wav_bytes(audio(1)))
    assert status == 400, body
    message = body["error"]["message"]
    assert "--engine ct2 runs Whisper models only" in message and "\n" not in message
    assert str(ct2_server.options.allowed_models[1][1]) not in message  # the operator's folder stays private
    status, body = transcribe_request(ct2_server.base_url, "p1", wav_bytes(audio(1)), prompt="hello")
    assert status == 400 and "prompt" in body["error"]["message"], body


@pytest.mark.slow
def test_a_live_stream_on_ct2_gives_the_recordings_words(tmp_path, monkeypatch):
    """The plain model streamed in real time gives the recording's words; a profile streamed
    four times faster (its conversion active for each step) gives what it transcribes offline."""
    from server_harness import make_bundled_profile
    from test_live_websocket import check_events, stream

    import asr_adapt
    from asr_adapt.audio.io import load_audio
    from asr_adapt.data.scoring import score

    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    make_bundled_profile("alice", seed=1)
    first, second = read_samples_manifest("test")[:2]
    recording = np.concatenate([load_audio(first.audio), np.zeros(8000, dtype=np.float32)])
    offline = asr_adapt.transcribe([second.audio], profile="alice", engine="ct2")[0].text
    with running_server(ServeOptions(engine="ct2")) as server:
        text = check_events(stream(server, "whisper-tiny.en", recording, pace=1.0))
        profile_text = check_events(stream(server, "alice", load_audio(second.audio), pace=4.0))
    assert score([first.text], [text]).wer <= 0.3, (first.text, text)
    assert score([offline], [profile_text]).wer <= 0.35, (offline, profile_text)


@pytest.mark.slow
def test_ray_replicas_decode_with_ct2(tmp_path, monkeypatch):
    """--ray --engine ct2: the replicas get the engine and answer as transcribe --engine ct2."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    serve = pytest.importorskip("ray.serve")
    from server_harness import free_port, make_bundled_profile

    import asr_adapt
    from asr_adapt.server.ray_app import start_on_ray
    from asr_adapt.server.ray_options import RayOptions

    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))  # before ray.init: the replicas see it too
    make_bundled_profile("alice", seed=1)
    path = read_samples_manifest("test")[1].audio
    expected = asr_adapt.transcribe([path], profile="alice", engine="ct2")[0].text
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        server = start_on_ray(ServeOptions(engine="ct2", port=free_port()), RayOptions(replicas=1, replica_cpus=0.5))
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0, timeout=180)
        with open(path, "rb") as handle:
            assert client.audio.transcriptions.create(model="alice", file=handle).text == expected
        with open(path, "rb") as handle:
            status, body = transcribe_request(server.base_url, "alice", handle.read(), prompt="hello")
        assert status == 400 and "--engine ct2" in body["error"]["message"], body  # the replica's ct2 engine said so
    finally:
        serve.shutdown()
        ray.shutdown()
