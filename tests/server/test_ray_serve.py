"""The same app on Ray Serve: a local Ray instance (2 CPUs), two model replicas of half a CPU
each, profiles multiplexed. OpenAI's client gets the CLI's transcripts through it, requests
for a profile go to the replica that holds its adapter, live streams work, and a replica's
error reaches the client as the one-line 4xx the local server gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLES, read_samples_manifest
from server_harness import free_port, make_bundled_profile, write_keys

from asr_adapt.server.options import ServeOptions
from asr_adapt.server.ray_options import RayOptions

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install -e '.[ray]')")
openai = pytest.importorskip("openai")

KEY = "aa-test-ray"


@pytest.fixture(scope="module")
def on_ray(tmp_path_factory):
    """alice, bob and a profile whose adapter file is damaged, served on a local Ray instance."""
    from asr_adapt.server.ray_app import start_on_ray

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(home))  # before ray.init: the replicas see it too
        make_bundled_profile("alice", seed=1)
        make_bundled_profile("bob", seed=2)
        damaged = make_bundled_profile("damaged", seed=3)
        for weights in damaged.adapter_dir.glob("*.safetensors"):
            weights.write_bytes(b"not safetensors")
        keys = write_keys(home / "keys.txt", {KEY: "*"})
        # "local": a new instance of its own, even where another Ray runs on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield start_on_ray(ServeOptions(api_keys=keys, port=free_port()), RayOptions(replicas=2, replica_cpus=0.5))
        finally:
            serve.shutdown()
            ray.shutdown()


def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=180)


def transcribe(server, model: str, path) -> str:
    with open(path, "rb") as handle:
        return client(server).audio.transcriptions.create(model=model, file=handle).text


def test_profiles_transcribe_on_ray_as_the_cli_does(on_ray):
    import asr_adapt

    path = SAMPLES / "test" / read_samples_manifest("test")[2].audio
    expected = {name: asr_adapt.transcribe([path], profile=name)[0].text for name in ("alice", "bob")}
    assert expected["alice"] != expected["bob"]  # the adapters differ: a mix-up would show
    for name in ("alice", "bob", "alice"):
        assert transcribe(on_ray, name, path) == expected[name]
    assert transcribe(on_ray, "whisper-tiny.en", path) == asr_adapt.transcribe([path])[0].text


def test_requests_for_a_profile_go_to_a_replica_that_holds_it(on_ray):
    """Multiplexing: with two replicas, a request naming alice lands where alice's adapter is
    resident, every time (random routing would miss half of the time)."""
    from asr_adapt.server.ray_app import APP_NAME

    path = SAMPLES / "test" / read_samples_manifest("test")[0].audio
    transcribe(on_ray, "alice", path)
    transcribe(on_ray, "bob", path)
    models = serve.get_deployment_handle("asr-adapt-models", app_name=APP_NAME)
    for profile in ("alice", "bob") * 4:
        resident = models.options(multiplexed_model_id=profile).resident.remote("whisper-tiny.en").result()
        assert profile in resident


def test_a_live_stream_on_ray(on_ray):
    from websockets.sync.client import connect

    from asr_adapt.audio.io import load_audio
    from asr_adapt.data.scoring import score

    utterance = read_samples_manifest("test")[0]
    audio = np.concatenate([load_audio(SAMPLES / "test" / utterance.audio), np.zeros(8000, np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    url = on_ray.base_url.replace("http://", "ws://") + f"/v1/live?model=whisper-tiny.en&api_key={KEY}"
    with connect(url, open_timeout=60) as stream:
        assert json.loads(stream.recv(timeout=60)) == {"type": "ready", "model": "whisper-tiny.en"}
        for start in range(0, len(pcm), 6400):  # 0.2 s frames
            stream.send(pcm[start:start + 6400])
        stream.send(json.dumps({"type": "stop"}))
        events = []
        while not events or events[-1]["type"] not in ("done", "error"):
            events.append(json.loads(stream.recv(timeout=120)))
    assert events[-1] == {"type": "done"}
    heard = " ".join(e["text"] for e in events if e["type"] == "final")
    assert score([utterance.text], [heard]).wer <= 0.25, heard


def test_a_replica_error_is_a_one_line_4xx_and_serving_goes_on(on_ray):
    path = SAMPLES / "test" / read_samples_manifest("test")[0].audio
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(on_ray, "damaged", path)
    message = refused.value.body["message"]
    assert "damaged" in message and "Traceback" not in message and "\n" not in message
    assert transcribe(on_ray, "alice", path)
