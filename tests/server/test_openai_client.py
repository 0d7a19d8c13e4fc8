"""OpenAI's own client against a real server: a profile's transcript is the one
``asr-adapt transcribe --profile`` gives, in every response format."""

from __future__ import annotations

import json

import pytest

from conftest import SAMPLES
from server_harness import make_bundled_profile, running_server, write_keys

from asr_adapt.server.options import ServeOptions

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")

ALICE_KEY, ALL_KEY = "aa-test-alice", "aa-test-everything"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with two profiles on the bundled tiny.en, alice and bob (different adapters),
    and two keys: one for alice only, one for everything."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(home))
        make_bundled_profile("alice", seed=1)
        make_bundled_profile("bob", seed=2)
        keys = write_keys(home / "keys.txt", {ALICE_KEY: "alice", ALL_KEY: "*"})
        with running_server(ServeOptions(api_keys=keys)) as server:
            yield server


def sample(n: int):
    files = sorted((SAMPLES / "test").glob("*.flac"))
    if len(files) <= n:
        pytest.skip("samples/ is missing: run python recipes/make_samples.py --out samples")
    return files[n]


def client(server, key=ALICE_KEY):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0, timeout=120)


def test_a_profile_transcribes_as_the_cli_does(served):
    """The openai client names the profile as its model and gets exactly what
    `asr-adapt transcribe --profile alice` prints (the adapter applied unmerged, in a batch,
    gives the merged adapter's text), and that is not the base model's text."""
    import asr_adapt

    files = [sample(1), sample(3)]  # (the base model runs into a loop on sample 2: slow to retry)
    expected = [t.text for t in asr_adapt.transcribe(files, profile="alice")]
    base = [t.text for t in asr_adapt.transcribe(files)]
    assert expected != base  # the adapter changes words: the test could tell it missing
    got = []
    for path in files:
        with open(path, "rb") as handle:
            got.append(client(served).audio.transcriptions.create(model="alice", file=handle).text)
    assert got == expected
    with open(files[0], "rb") as handle:  # a base model by name, as any OpenAI program asks
        assert client(served).audio.transcriptions.create(model="whisper-tiny.en", file=handle).text == base[0]


def test_response_formats(served):
    import asr_adapt

    path = sample(0)
    expected = asr_adapt.transcribe([path], profile="alice")[0]
    create = client(served).audio.transcriptions.create
    with open(path, "rb") as handle:
        text = create(model="alice", file=handle, response_format="text")
    assert text.strip() == expected.text
    with open(path, "rb") as handle:
        srt = create(model="alice", file=handle, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and expected.text in srt
    with open(path, "rb") as handle:
        vtt = create(model="alice", file=handle, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and expected.text in vtt
    with open(path, "rb") as handle:
        verbose = create(model="alice", file=handle, response_format="verbose_json",
                         timestamp_granularities=["segment"], language="en")
    assert verbose.text == expected.text and verbose.language == "english"
    assert abs(verbose.duration - expected.duration) < 0.01
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(s.start, s.end, s.text) for s in expected.segments]


def test_models_lists_base_models_and_only_the_callers_profiles(served):
    alice = {m.id for m in client(served).models.list()}
    everything = {m.id for m in client(served, ALL_KEY).models.list()}
    assert "whisper-tiny.en" in alice and "alice" in alice and "bob" not in alice
    assert {"alice", "bob", "whisper-tiny.en"} <= everything


def test_health_needs_no_key(served):
    from urllib.request import urlopen

    with urlopen(served.base_url + "/health", timeout=10) as answer:
        assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"


def test_greedy_decoding_through_the_pool_equals_the_merged_adapter(served):
    """The same with greedy decoding (--beam-size 1), three files of the profile batched
    together with the base model's: the unmerged adapter gives the merged one's words."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import asr_adapt
    from asr_adapt.audio.io import load_audio
    from asr_adapt.server.engine import DecodeRequest, LocalEngine
    from asr_adapt.server.names import ModelRef

    files = [sample(n) for n in range(3)]
    greedy = asr_adapt.TranscribeOptions(beam_size=1)
    expected = [t.text for t in asr_adapt.transcribe(files, profile="bob", options=greedy)]
    base = [t.text for t in asr_adapt.transcribe(files, options=greedy)]
    engine = LocalEngine(ServeOptions(beam_size=1, batch_window_ms=200))
    try:
        deadline = time.monotonic() + 600
        refs = [ModelRef("bob", "whisper-tiny.en", "bob"), ModelRef("whisper-tiny.en", "whisper-tiny.en")]
        with ThreadPoolExecutor(6) as pool:
            jobs = [(ref, pool.submit(engine.transcribe_now, ref, load_audio(path), DecodeRequest(), deadline))
                    for path in files for ref in refs]
            got = {(ref.name, n // 2): job.result().text for n, (ref, job) in enumerate(jobs)}
        assert [got[("bob", n)] for n in range(3)] == expected
        assert [got[("whisper-tiny.en", n)] for n in range(3)] == base
        assert max(len(batch) for batch in engine.worker("whisper-tiny.en").recent_batches) > 1
    finally:
        engine.close()
