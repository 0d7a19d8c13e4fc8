"""The live endpoint with a real WebSocket client: a sample recording streamed as 16 kHz PCM16
frames comes back as partial and final events whose committed text is the recording's words."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from conftest import read_samples_manifest
from server_harness import make_bundled_profile, running_server

from asr_adapt.audio.io import load_audio
from asr_adapt.data.scoring import score
from asr_adapt.server.options import ServeOptions

pytestmark = pytest.mark.slow

websockets_sync = pytest.importorskip("websockets.sync.client")

FRAME_SECONDS = 0.1


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(tmp_path_factory.mktemp("home")))
        make_bundled_profile("alice", seed=1)
        with running_server(ServeOptions()) as server:
            yield server


def stream(server, model: str, audio: np.ndarray, pace: float) -> list[dict]:
    """Send ``audio`` in 100 ms frames, ``pace`` times faster than real time, then stop;
    return every event the server sent, read meanwhile by another thread."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(16000 * FRAME_SECONDS) * 2
    events: list[dict] = []
    with websockets_sync.connect(f"{server.ws_url}/v1/live?model={model}", open_timeout=60) as socket:
        assert json.loads(socket.recv(timeout=60)) == {"type": "ready", "model": model}

        def read() -> None:
            for message in socket:
                events.append(json.loads(message))

        reader = threading.Thread(target=read)
        reader.start()
        started = time.monotonic()
        for n, begin in enumerate(range(0, len(pcm), step)):
            socket.send(pcm[begin:begin + step])
            time.sleep(max(0.0, started + (n + 1) * FRAME_SECONDS / pace - time.monotonic()))
        socket.send(json.dumps({"type": "stop"}))
        reader.join(timeout=120)
        assert socket.close_code == 1000
    return events


def check_events(events: list[dict]) -> str:
    """The events follow the protocol; returns the committed text."""
    assert events and events[-1] == {"type": "done"}, events
    kinds = {event["type"] for event in events[:-1]}
    assert kinds <= {"partial", "final"}, events
    finals = [event for event in events if event["type"] == "final"]
    assert finals, events
    for before, after in zip(finals, finals[1:]):
        assert before["start"] <= after["start"]
    assert all(0 <= f["start"] <= f["end"] for f in finals)
    return " ".join(event["text"] for event in finals)


def test_a_recording_streamed_in_real_time_comes_back_as_its_words(live_server):
    utterance = read_samples_manifest("test")[0]
    audio = np.concatenate([load_audio(utterance.audio), np.zeros(8000, dtype=np.float32)])
    events = stream(live_server, "whisper-tiny.en", audio, pace=1.0)
    text = check_events(events)
    assert any(event["type"] == "partial" and event["text"] for event in events)  # words shown before committed
    assert score([utterance.text], [text]).wer <= 0.3, (utterance.text, text)


def test_a_profile_streams_faster_than_real_time(live_server):
    """Through alice's adapter (made active for each step), sent four times faster."""
    import asr_adapt

    utterance = read_samples_manifest("test")[1]
    offline = asr_adapt.transcribe([utterance.audio], profile="alice")[0].text
    text = check_events(stream(live_server, "alice", load_audio(utterance.audio), pace=4.0))
    assert score([offline], [text]).wer <= 0.35, (offline, text)
