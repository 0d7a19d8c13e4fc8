"""No one gets in where they don't belong, and nothing a client sends breaks the server: each
bad or hostile request is answered with the right 4xx (or WebSocket close code) and an
OpenAI-style one-line error, and afterwards a good request is still served."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from fake_profiles import make_profile
from server_harness import multipart, request, running_server, transcribe_request, wav_bytes, write_keys

from asr_adapt.server.options import ServeOptions

websockets_sync = pytest.importorskip("websockets.sync.client")

ALICE, BOB = "aa-key-of-alice", "aa-key-of-bob"
MAX_UPLOAD = 300_000
MAX_SECONDS = 5.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_whisper_dir):
    """alice's and bob's profiles on the tiny model, each key for its own profile only;
    uploads of at most 300 kB and 5 s; one live stream per key."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(home))
        make_profile("alice", tiny_whisper_dir, seed=1)
        make_profile("bob", tiny_whisper_dir, seed=2)
        keys = write_keys(home / "keys.txt", {ALICE: "alice", BOB: "bob"})
        options = ServeOptions(api_keys=keys, max_upload_bytes=MAX_UPLOAD, max_audio_seconds=MAX_SECONDS,
                               max_streams_per_key=1, beam_size=1, batch_window_ms=0)
        with running_server(options) as server:
            yield server


def speech_like(seconds: float = 1.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return wav_bytes(0.3 * np.sin(2 * np.pi * 220 * t))


def float_wav(samples: np.ndarray) -> bytes:
    """A 32-bit float WAV holding exactly ``samples`` (NaN included)."""
    data = samples.astype("<f4").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 3, 1, 16000,
                         64000, 4, 32, b"data", len(data))
    return header + data


def truncated_wav() -> bytes:
    whole = speech_like(1.0)
    return whole[:len(whole) // 3]  # the header promises three times what follows


def assert_openai_error(status: int, body, expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "code"} <= set(error), error
    assert error["message"] and "\n" not in error["message"] and "Traceback" not in error["message"]
    assert "/tmp" not in error["message"] and "asr-adapt-upload" not in error["message"]  # no server paths
    if code is not None:
        assert error["code"] == code, error


def upload(server, model="alice", audio=None, key=ALICE, **fields):
    return transcribe_request(server.base_url, model, speech_like() if audio is None else audio, key=key, **fields)


HTTP_CASES = {
    # who is asking
    "no key": (lambda s: upload(s, key=None), 401, "invalid_api_key"),
    "wrong key": (lambda s: upload(s, key="aa-guessed"), 401, "invalid_api_key"),
    "not a bearer key": (lambda s: request(s.base_url, "POST", "/v1/audio/transcriptions", b"x",
                                           {"Authorization": f"Basic {ALICE}"}), 401, "invalid_api_key"),
    "no key for the model list": (lambda s: request(s.base_url, "GET", "/v1/models"), 401, "invalid_api_key"),
    # which model
    "another user's profile": (lambda s: upload(s, model="bob"), 404, "model_not_found"),
    "a profile that is not there": (lambda s: upload(s, model="carol"), 404, "model_not_found"),
    "a relative path": (lambda s: upload(s, model="../alice"), 404, "model_not_found"),
    "an absolute path": (lambda s: upload(s, model="/etc/passwd"), 404, "model_not_found"),
    "a home path": (lambda s: upload(s, model="~/.ssh/id_rsa"), 404, "model_not_found"),
    "a hub id nobody allowed": (lambda s: upload(s, model="openai/whisper-large-v3"), 404, "model_not_found"),
    "a windows path": (lambda s: upload(s, model="C:\\Windows\\win.ini"), 404, "model_not_found"),
    # the audio
    "corrupt audio": (lambda s: upload(s, audio=bytes(range(256)) * 40), 400, "invalid_audio"),
    "an empty file": (lambda s: upload(s, audio=b""), 400, "invalid_audio"),
    "a truncated wav": (lambda s: upload(s, audio=truncated_wav()), 400, "invalid_audio"),
    "NaN samples": (lambda s: upload(s, audio=float_wav(np.full(8000, np.nan))), 400, "invalid_audio"),
    "an oversize upload": (lambda s: upload(s, audio=b"\0" * (MAX_UPLOAD + 100_000)), 413, "request_too_large"),
    "audio longer than the limit": (lambda s: upload(s, audio=speech_like(MAX_SECONDS + 1)), 413, "request_too_large"),
    # the form
    "malformed multipart": (lambda s: request(s.base_url, "POST", "/v1/audio/transcriptions", b"--x\r\ngarbage",
                                              {"Authorization": f"Bearer {ALICE}",
                                               "Content-Type": "multipart/form-data; boundary=x"}), 400, None),
    "multipart without a boundary": (lambda s: request(s.base_url, "POST", "/v1/audio/transcriptions", b"abc",
                                                       {"Authorization": f"Bearer {ALICE}",
                                                        "Content-Type": "multipart/form-data"}), 400, None),
    "json instead of a form": (lambda s: request(s.base_url, "POST", "/v1/audio/transcriptions", b'{"model": "alice"}',
                                                 {"Authorization": f"Bearer {ALICE}",
                                                  "Content-Type": "application/json"}), 400, "invalid_multipart"),
    "no file field": (lambda s: _form(s, {"model": "alice"}), 400, "invalid_value"),
    "the file as a text field": (lambda s: _form(s, {"model": "alice", "file": "RIFF...."}), 400, "invalid_value"),
    "two files": (lambda s: _form(s, {"model": "alice"}, {"file": ("a.wav", speech_like()),
                                                           "other": ("b.wav", speech_like())}), 400, None),
    "no model field": (lambda s: _form(s, {}, {"file": ("a.wav", speech_like())}), 400, "invalid_value"),
    "a bad response format": (lambda s: upload(s, response_format="xml"), 400, "invalid_value"),
    "a temperature that is not a number": (lambda s: upload(s, temperature="hot"), 400, "invalid_value"),
    "a temperature out of range": (lambda s: upload(s, temperature="5"), 400, "invalid_value"),
    "word timestamps": (lambda s: upload(s, response_format="verbose_json", **{"timestamp_granularities[]": "word"}),
                        400, "unsupported_value"),
    "a bad language": (lambda s: upload(s, language="english; drop table"), 400, "invalid_value"),
    "a prompt too long": (lambda s: upload(s, prompt="x" * 5000), 400, "invalid_value"),
    "streaming asked for": (lambda s: upload(s, stream="true"), 400, "invalid_value"),
    # the route
    "the wrong method": (lambda s: request(s.base_url, "GET", "/v1/audio/transcriptions",
                                           headers={"Authorization": f"Bearer {ALICE}"}), 405, None),
    "a route that is not there": (lambda s: request(s.base_url, "GET", "/v1/../../etc/passwd"), 404, None),
}


def _form(server, fields, files=None):
    body, content_type = multipart(fields, files)
    return request(server.base_url, "POST", "/v1/audio/transcriptions", body,
                   {"Authorization": f"Bearer {ALICE}", "Content-Type": content_type})


def test_every_bad_request_gets_its_4xx_and_the_server_keeps_serving(guarded):
    assert len(HTTP_CASES) >= 20
    failures = []
    for name, (send, expected, code) in HTTP_CASES.items():
        status, body = send(guarded)
        try:
            assert_openai_error(status, body, expected, code)
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)
    status, body = upload(guarded)
    assert status == 200 and isinstance(body["text"], str), body
    status, body = upload(guarded, model="bob", key=BOB)
    assert status == 200, body


def test_an_upload_sent_in_chunks_is_cut_off_at_the_limit(guarded):
    """Without a Content-Length the body is counted as it arrives."""
    import http.client

    body, content_type = multipart({"model": "alice"}, {"file": ("a.wav", b"\0" * (MAX_UPLOAD * 2))})
    connection = http.client.HTTPConnection("127.0.0.1", int(guarded.base_url.rsplit(":", 1)[1]), timeout=60)
    try:
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
        connection.request("POST", "/v1/audio/transcriptions", body=chunks, encode_chunked=True,
                           headers={"Authorization": f"Bearer {ALICE}", "Content-Type": content_type})
        answer = connection.getresponse()
        assert_openai_error(answer.status, json.loads(answer.read()), 413, "request_too_large")
    finally:
        connection.close()


def ws_attempt(server, query: str, frames=(), headers=None) -> tuple[list[dict], int | None]:
    """Open /v1/live?QUERY, send ``frames``; return the events received and the close code."""
    from websockets.exceptions import ConnectionClosed

    events = []
    with websockets_sync.connect(f"{server.ws_url}/v1/live?{query}", additional_headers=headers or {},
                                 open_timeout=30, close_timeout=10) as socket:
        try:
            for frame in frames:
                socket.send(frame)
            while True:
                events.append(json.loads(socket.recv(timeout=60)))
        except ConnectionClosed:
            pass
        return events, socket.close_code


WS_CASES = {
    "no key": ("model=alice", (), None, 1008, "invalid_api_key"),
    "a wrong key": ("model=alice&api_key=aa-guessed", (), None, 1008, "invalid_api_key"),
    "another user's profile": (f"model=bob&api_key={ALICE}", (), None, 1008, "model_not_found"),
    "a path as the model": (f"model=../../etc/passwd&api_key={ALICE}", (), None, 1008, "model_not_found"),
    "an odd-length frame": (f"model=alice&api_key={ALICE}", (b"\x01\x02\x03",), None, 1003, "invalid_audio"),
    "text that is not JSON": (f"model=alice&api_key={ALICE}", ("hello",), None, 1003, "invalid_message"),
    "JSON that is not stop": (f"model=alice&api_key={ALICE}", ('{"type": "start"}',), None, 1003, "invalid_message"),
    "garbage after audio": (f"model=alice&api_key={ALICE}", (b"\0\0" * 800, b"\xff" * 7), None, 1003, "invalid_audio"),
    "another site's page": (f"model=alice&api_key={ALICE}", (), {"Origin": "http://evil.example"}, 1008,
                            "forbidden_origin"),
}


def test_every_bad_stream_is_closed_with_its_code_and_streams_still_work(guarded):
    failures = []
    for name, (query, frames, headers, close_code, code) in WS_CASES.items():
        events, closed = ws_attempt(guarded, query, frames, headers)
        errors = [e for e in events if e.get("type") == "error"]
        if closed != close_code or len(errors) != 1 or errors[0]["code"] != code or "\n" in errors[0]["message"]:
            failures.append(f"{name}: closed {closed}, events {events}")
    assert not failures, "\n".join(failures)
    pcm = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) * 8000).astype("<i2").tobytes()
    events, closed = ws_attempt(guarded, f"model=alice&api_key={ALICE}", (pcm, '{"type": "stop"}'))
    assert events[0] == {"type": "ready", "model": "alice"} and events[-1] == {"type": "done"} and closed == 1000


def test_a_key_holds_at_most_its_streams(guarded):
    with websockets_sync.connect(f"{guarded.ws_url}/v1/live?model=alice",
                                 additional_headers={"Authorization": f"Bearer {ALICE}"}) as first:
        assert json.loads(first.recv(timeout=60))["type"] == "ready"
        events, closed = ws_attempt(guarded, f"model=alice&api_key={ALICE}")
        assert closed == 1008 and events[-1]["code"] == "too_many_streams"
        events, closed = ws_attempt(guarded, f"model=bob&api_key={BOB}", ('{"type": "stop"}',))  # another key
        assert events[0]["type"] == "ready" and closed == 1000
