"""Transcription: batching, long audio, silence, options, and real accuracy of tiny.en."""

from __future__ import annotations

import numpy as np
import torch
import pytest
import soundfile as sf

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.core.errors import OptionsError
from asr_adapt.data.scoring import score
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.transcriber import Transcriber
from asr_adapt.models.options import TranscribeOptions
from conftest import espeak, sine


@pytest.fixture(scope="module")
def tiny_transcriber(tiny_whisper_dir):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    return Transcriber(loaded, TranscribeOptions(batch_size=3, max_new_tokens=5))


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(beam_size=0), dict(max_new_tokens=500),
                                 dict(window_seconds=45), dict(max_seconds=-1), dict(encoder_window="short"),
                                 dict(encoder_window=1.0), dict(encoder_window=45)])
def test_options_are_validated(bad):
    with pytest.raises(OptionsError):
        TranscribeOptions(**bad)


def test_one_result_per_file_in_order(tiny_transcriber, tmp_path):
    paths = []
    for i, seconds in enumerate([1.0, 2.0, 0.5, 3.0, 1.5]):
        path = tmp_path / f"f{i}.wav"
        sf.write(path, sine(seconds, freq=200 + 50 * i), SAMPLE_RATE)
        paths.append(path)
    results = list(tiny_transcriber.transcribe_files(paths))
    assert [r.source for r in results] == [str(p) for p in paths]
    assert [r.duration for r in results] == [1.0, 2.0, 0.5, 3.0, 1.5]
    assert all(r.model == tiny_transcriber.loaded.name for r in results)
    assert results[0].options["batch_size"] == 3


def test_whisper_searches_a_beam_of_five_unless_told(tiny_whisper_dir, monkeypatch):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    beams = []
    generate = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate", lambda *a, **kw: beams.append(kw["num_beams"]) or generate(*a, **kw))
    clip = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    default = Transcriber(loaded, TranscribeOptions(max_new_tokens=3))
    greedy = Transcriber(loaded, TranscribeOptions(beam_size=1, max_new_tokens=3))
    assert default.options.beam_size == 5 and greedy.options.beam_size == 1  # what reports record
    default.transcribe_arrays([clip])
    greedy.transcribe_arrays([clip])
    assert beams[0] == 5 and beams[-1] == 1


def _encoder_windows(monkeypatch) -> list[int]:
    """Record the frames of every short-window encoder pass."""
    from asr_adapt.models.whisper import decode

    frames, real = [], decode.encode
    monkeypatch.setattr(decode, "encode", lambda model, features, n: frames.append(n) or real(model, features, n))
    return frames


@pytest.mark.parametrize("beam", [1, 5])
def test_profiles_trained_on_short_windows_are_decoded_in_short_windows(tiny_whisper_dir, monkeypatch, beam):
    """With "auto", as live: a short-window adapter reads the piece plus 1 s (at least 4 s);
    the plain model and adapters that saw 30 s windows read Whisper's full window."""
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    frames = _encoder_windows(monkeypatch)
    clips = [np.random.default_rng(i).normal(0, 0.1, int(s * SAMPLE_RATE)).astype(np.float32)
             for i, s in enumerate((2.0, 5.5))]
    transcriber = Transcriber(loaded, TranscribeOptions(beam_size=beam, max_new_tokens=3, encoder_window="auto"))
    transcriber.transcribe_arrays(clips)
    assert frames == []                                   # plain model: 30 s
    loaded.info.update(profile="alice", short_windows=True)
    texts = transcriber.transcribe_arrays(clips)
    assert frames == [700] and all(isinstance(t, str) for t in texts)  # 5.5 s + 1 s, whole seconds
    frames.clear()
    Transcriber(loaded, TranscribeOptions(beam_size=beam, max_new_tokens=3, batch_size=1,
                                          encoder_window="auto")).transcribe_arrays(clips)
    assert frames == [400, 700]                           # 2 s + 1 s -> the 4 s minimum
    frames.clear()
    Transcriber(loaded, TranscribeOptions(beam_size=beam, max_new_tokens=3)).transcribe_arrays(clips)
    assert frames == []                                   # the default: 30 s, whatever the profile
    loaded.info["short_windows"] = False                 # an adapter that saw 30 s windows
    transcriber.transcribe_arrays(clips)
    assert frames == []
    Transcriber(loaded, TranscribeOptions(beam_size=beam, max_new_tokens=3, encoder_window=10)).transcribe_arrays(clips)
    assert frames == [1000]                               # asked for: at least 10 s


def test_a_phrase_said_twice_in_a_short_window_is_decoded_again_in_the_full_one(tiny_whisper_dir, monkeypatch):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    loaded.info.update(profile="alice", short_windows=True)
    tokenizer = loaded.processor.tokenizer
    once = tokenizer(" We watched the fireworks from the roof.", add_special_tokens=False).input_ids
    twice = tokenizer(" We watched the fireworks from the roof. We watched the fireworks from the roof.",
                      add_special_tokens=False).input_ids
    windows = []

    def generate(*args, **kwargs):
        short = "encoder_outputs" in kwargs
        windows.append("short" if short else "full")
        return torch.tensor([twice if short else once])

    monkeypatch.setattr(loaded.model, "generate", generate)
    clip = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    text = Transcriber(loaded, TranscribeOptions(beam_size=1, encoder_window="auto")).transcribe_arrays([clip])[0]
    assert text == "We watched the fireworks from the roof." and windows == ["short", "full"]


def test_beam_search_cache_gives_the_same_beams(bundled_model):
    """Skipping the cross-attention reorder (a speed-up) must not change a single token of
    any beam; real speech on the real model, so that beams do get reordered."""
    from pathlib import Path

    import warnings

    from asr_adapt.models.whisper.decode import beam_search_cache, generate_cache_keyword

    test_dir = Path(__file__).resolve().parents[2] / "samples" / "test"
    clips = [load_audio(path) for path in sorted(test_dir.glob("*.flac"))[:3]]
    features = bundled_model.processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    kwargs = dict(num_beams=4, num_return_sequences=4, do_sample=False, max_new_tokens=24)
    plain = bundled_model.model.generate(features.input_features, **kwargs)
    cache = beam_search_cache()
    reorders = []
    real_reorder = cache.self_attention_cache.reorder_cache
    cache.self_attention_cache.reorder_cache = lambda idx: reorders.append(1) or real_reorder(idx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keyword = generate_cache_keyword(bundled_model.model)
        shared = bundled_model.model.generate(features.input_features, **{keyword: cache}, **kwargs)
    assert reorders, "generate did not use the cache it was given"
    assert not [w for w in caught if "past_key_values" in str(w.message)]  # no deprecated name
    assert plain.shape == shared.shape and plain.shape[0] == 12
    assert torch.equal(plain, shared)


def test_generate_takes_the_cache_under_the_name_transformers_knows():
    """``cache`` where transformers renames ``past_key_values`` to it (a deprecation wrapper)
    or has it as a parameter; ``past_key_values`` in releases before the rename."""
    import functools

    from asr_adapt.models.whisper.decode import generate_cache_keyword

    def renames(old_name, new_name):  # the shape of transformers' deprecate_kwarg
        def wrapper(func):
            @functools.wraps(func)
            def wrapped(*args, **kwargs):
                if old_name in kwargs:
                    kwargs[new_name] = kwargs.pop(old_name)
                return func(*args, **kwargs)
            return wrapped
        return wrapper

    class Old:
        def generate(self, inputs=None, past_key_values=None, **kwargs): ...

    class Renamed:
        @renames("cache_params", "cache")
        @renames("past_key_values", "cache")
        def generate(self, inputs=None, **kwargs): ...

    class New:
        def generate(self, inputs=None, cache=None, **kwargs): ...

    assert generate_cache_keyword(Old()) == "past_key_values"
    assert generate_cache_keyword(Renamed()) == "cache"
    assert generate_cache_keyword(New()) == "cache"


def test_batched_equals_one_at_a_time(tiny_whisper_dir):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    rng = np.random.default_rng(1)
    clips = [rng.normal(0, 0.1, int(SAMPLE_RATE * s)).astype(np.float32) for s in (1.0, 2.5, 4.0)]
    batched = Transcriber(loaded, TranscribeOptions(batch_size=3, max_new_tokens=6)).transcribe_arrays(clips)
    single = Transcriber(loaded, TranscribeOptions(batch_size=1, max_new_tokens=6)).transcribe_arrays(clips)
    assert batched == single


def test_silence_gives_empty_text_without_running_the_model(tiny_transcriber, monkeypatch):
    monkeypatch.setattr(tiny_transcriber, "_decode", lambda audios: pytest.fail("decoded silence"))
    result = tiny_transcriber.transcribe_audio(np.zeros(SAMPLE_RATE * 2, dtype=np.float32))
    assert result.text == "" and result.segments == ()


def test_long_audio_is_windowed_and_stitched(tiny_transcriber, monkeypatch):
    seen = []

    def fake_decode(audios):
        seen.extend(len(a) for a in audios)
        return [f"piece{len(seen) - len(audios) + i}" for i in range(len(audios))]

    monkeypatch.setattr(tiny_transcriber, "_decode", fake_decode)
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([sine(20.0), gap, sine(20.0), gap, sine(20.0)])  # 62 s
    result = tiny_transcriber.transcribe_audio(audio)
    assert len(seen) == 3 and all(n <= 29 * SAMPLE_RATE for n in seen)
    assert result.text == "piece0 piece1 piece2"
    assert result.segments[0].start == 0.0
    assert result.segments[-1].end == pytest.approx(62.0)
    assert all(a.end == b.start for a, b in zip(result.segments, result.segments[1:]))


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone bursts with quiet gaps of random lengths: audio whose windows are cut at gaps."""
    rng = np.random.default_rng(seed)
    parts, total = [], 0.0
    while total < seconds:
        burst, gap = rng.uniform(1.0, 6.0), rng.uniform(0.2, 1.0)
        parts += [sine(burst, freq=rng.uniform(150, 400)), np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)]
        total += burst + gap
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]


def test_a_long_file_is_read_in_blocks_and_cut_as_if_whole(tiny_transcriber, monkeypatch, tmp_path):
    """Files longer than a block are streamed; the windows (and so the transcript) are the
    ones the whole file in memory gives, whatever the block length."""
    from asr_adapt.audio import io

    audio = speech_like(200.0)
    path = tmp_path / "long.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    monkeypatch.setattr(tiny_transcriber, "_decode", lambda audios: [f"{len(a)}" for a in audios])
    whole = tiny_transcriber.transcribe_audio(load_audio(path), source=str(path))
    for block in (45.0, 61.0):
        monkeypatch.setattr(io, "STREAM_BLOCK_SECONDS", block)
        read_sizes = []
        real_blocks = io.audio_blocks

        def counted(*args, **kwargs):
            for chunk in real_blocks(*args, block_seconds=block, max_seconds=None):
                read_sizes.append(len(chunk))
                yield chunk
        monkeypatch.setattr("asr_adapt.models.transcriber.audio_blocks", counted)
        streamed = next(tiny_transcriber.transcribe_files([path]))
        assert max(read_sizes) <= block * SAMPLE_RATE + 1 and len(read_sizes) >= 4
        assert streamed.segments == whole.segments and streamed.duration == whole.duration == 200.0


def test_an_interrupted_run_keeps_what_it_decoded(tiny_transcriber, monkeypatch, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, speech_like(150.0, seed=1), SAMPLE_RATE)
    calls = []

    def decode_then_ctrl_c(audios):
        calls.append(len(audios))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ["words"] * len(audios)
    monkeypatch.setattr(tiny_transcriber, "_decode", decode_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        list(tiny_transcriber.transcribe_files([path]))
    [partial] = tiny_transcriber.interrupted
    assert partial.source == str(path) and len(partial.segments) == calls[0] == 3
    assert partial.segments[0].start == 0.0 and partial.segments[-1].end < 150.0


# The bound is set from measurement: tiny.en gets 0-10% WER on these espeak-ng en-us
# sentences; 25% leaves room for espeak version differences while catching a broken model.
CLEAN_SENTENCES = [
    "The weather is nice today, so we will walk to the park.",
    "Please send me the report before the meeting on Monday.",
    "My brother bought a new car last week.",
    "Can you tell me where the nearest train station is?",
]


@pytest.mark.slow
def test_bundled_model_transcribes_generated_speech(bundled_model, tmp_path):
    paths = [espeak(text, tmp_path / f"s{i}.wav") for i, text in enumerate(CLEAN_SENTENCES)]
    transcriber = Transcriber(bundled_model)
    hypotheses = [t.text for t in transcriber.transcribe_files(paths)]
    report = score(CLEAN_SENTENCES, hypotheses)
    assert report.wer < 0.25, hypotheses


@pytest.mark.slow
def test_bundled_model_on_shipped_samples(bundled_model):
    from conftest import read_samples_manifest

    utterances = read_samples_manifest("test")[:8]
    transcriber = Transcriber(bundled_model)
    hypotheses = [transcriber.transcribe_audio(load_audio(u.audio)).text for u in utterances]
    report = score([u.text for u in utterances], hypotheses)
    # An accented, band-limited voice: tiny.en makes real mistakes, but it is speech it
    # mostly understands (measured ~40% on the whole test part; see samples/README.md).
    assert 0.05 < report.wer < 0.9


def test_repetition_loops_are_recognised():
    from asr_adapt.models.repetition import is_runaway

    assert is_runaway("That is the one, the one, the one, the one, the one, the one, the one, the one.")
    assert not is_runaway("Please call Stella and ask her to bring these things with her from the store.")
    assert not is_runaway("Yes yes.")  # short text never counts


def test_decoding_length_is_capped_by_the_audio_length(tiny_whisper_dir):
    """A random model never stops on its own: 1 s of audio must not cost 440 tokens."""
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    transcriber = Transcriber(loaded, TranscribeOptions(max_new_tokens=440))
    rng = np.random.default_rng(3)
    text = transcriber.transcribe_arrays([rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32)])[0]
    tokens = loaded.processor.tokenizer(text, add_special_tokens=False).input_ids
    assert len(tokens) <= 10 * 1 + 16 + 2
