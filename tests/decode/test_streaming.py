"""The streaming policy (LocalAgreement, buffer cuts, end of stream) and the processor, on
synthetic tone 'speech' with a fake decoder, then on real speech with the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES, read_samples_manifest
from streaming_fakes import ToneDecoder, script_audio

from asr_adapt.core.errors import OptionsError
from asr_adapt.decode.agreement import LocalAgreement, align_prefix, common_prefix
from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor
from asr_adapt.decode.replay import run_deterministic, simulate_live
from asr_adapt.models.repetition import normalize_word


def words_of(text):
    return [normalize_word(w) for w in text.split()]


# --------------------------------------------------------------------------- policy


def test_common_prefix_ignores_case_and_punctuation():
    assert common_prefix(["Hello,", "world"], ["hello", "World.", "again"]) == 2
    assert common_prefix(["a", "b"], ["a", "c"]) == 1
    assert common_prefix([], ["a"]) == 0
    assert common_prefix(["a", "b", "c"], ["a", "b", "c"], ["a", "x"]) == 1


def test_align_prefix_exact_fuzzy_and_short():
    assert align_prefix(["we", "watched"], ["We", "watched", "the", "fireworks"]) == (2, 2)
    # Whisper rewrote one committed word: the alignment still ends after it.
    assert align_prefix(["the", "multistorey", "car"], ["the", "multi-story", "car", "park"]) == (3, 3)
    # The hypothesis of a shorter stretch stops inside the committed words.
    assert align_prefix(["a", "b", "c", "d"], ["a", "b"]) == (2, 2)
    assert align_prefix([], ["x"]) == (0, 0)
    # Whisper split a committed word in two: the words after it still line up.
    assert align_prefix(["the", "multistorey", "car"], ["the", "multi", "story", "car", "park"]) == (3, 4)


def test_align_prefix_does_not_match_a_common_word_far_away():
    """Measured live (hop 0.5 s): four wrong words were committed, then the buffer's next
    hypothesis was right. Matching their "the" with the later "the" dropped five words."""
    committed = ["I'll", "leave", "the", "alone"]
    hypothesis = "Are there learnt to knit during the long winter evening?".split()
    assert align_prefix(committed, hypothesis) == (4, 4)


def test_local_agreement_commits_only_what_two_hypotheses_share():
    policy = LocalAgreement(2)
    assert policy.update(["We", "watch."]) == []          # one hypothesis: nothing is sure
    assert policy.tentative == ["We", "watch."]
    assert policy.update(["We", "watched", "the", "fire"]) == ["We"]
    assert policy.update(["We", "watched", "the", "fireworks", "from"]) == ["watched", "the"]
    assert policy.committed == ["We", "watched", "the"]
    assert policy.tentative == ["fireworks", "from"]
    # Committed words are never taken back, even when a later hypothesis disagrees.
    assert policy.update(["He", "washed", "the", "fireworks", "from", "the"]) == ["fireworks", "from"]
    assert policy.committed == ["We", "watched", "the", "fireworks", "from"]
    assert policy.flush() == ["the"]
    assert policy.tentative == []


def test_local_agreement_of_three():
    policy = LocalAgreement(3)
    assert policy.update(["a", "b"]) == []
    assert policy.update(["a", "b", "c"]) == []
    assert policy.update(["a", "x", "c"]) == ["a"]


def test_options_are_validated():
    with pytest.raises(OptionsError, match="hop"):
        StreamingOptions(hop_seconds=0)
    with pytest.raises(OptionsError, match="trim seconds"):
        StreamingOptions(trim_seconds=20, max_buffer_seconds=10)
    with pytest.raises(OptionsError, match="max buffer"):
        StreamingOptions(max_buffer_seconds=40)
    with pytest.raises(OptionsError, match="agreement"):
        StreamingOptions(agreement=0)


# --------------------------------------------------------------------------- processor, fake decoder


def stream(audio, **options):
    decoder = ToneDecoder()
    processor = StreamingProcessor(decoder, StreamingOptions(**options))
    updates = []
    result = run_deterministic(processor, audio, on_update=updates.append)
    return result, updates, decoder


def test_words_commit_in_order_and_phrases_end_at_pauses():
    phrases = [[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12]]
    audio, ends = script_audio(phrases)
    result, updates, _ = stream(audio, hop_seconds=0.5)
    assert words_of(result.text) == [w for w, _ in ends]
    assert [words_of(p) for p in result.phrases] == [[f"w{i}" for i in p] for p in phrases]
    # The half-heard last word ("uh") showed up as tentative but was never committed.
    assert any(u.tentative.split() and u.tentative.split()[-1].startswith("uh") for u in updates)
    assert not any(word.startswith("uh") for word in result.text.split())
    # Every word was committed before the end of the stream, not only by the final flush.
    times = {normalize_word(w.text): w.audio_time for w in result.words}
    assert all(times[w] < result.audio_seconds for w, _ in ends[:-1])


def test_words_commit_soon_after_they_are_spoken():
    audio, ends = script_audio([list(range(1, 21))])
    result, _, _ = stream(audio, hop_seconds=0.5)
    assert [normalize_word(w.text) for w in result.words] == [w for w, _ in ends]
    delays = [w.audio_time - end for w, (_, end) in zip(result.words, ends)]
    # Two agreeing hypotheses, one hop apart: a word is committed within ~2 hops of its end.
    assert max(delays) <= 1.5 + 1e-6


def test_long_speech_keeps_the_buffer_bounded():
    # 60 s of words without a phrase pause (gaps of 0.2 s: enough for a cut, not a phrase end).
    indices = list(range(150))
    audio, ends = script_audio([indices], gap_seconds=0.2)
    assert len(audio) / 16000 > 55
    result, _, decoder = stream(audio, hop_seconds=1.0, trim_seconds=8.0, max_buffer_seconds=12.0)
    assert max(decoder.calls) <= 8.0 + 1.0 + 0.1
    assert words_of(result.text) == [w for w, _ in ends]


def test_speech_without_any_pause_is_cut_at_the_hard_limit():
    # Gaps of 50 ms are shorter than any cut pause: only the hard limit can cut.
    audio, ends = script_audio([list(range(60))], gap_seconds=0.05)
    result, _, decoder = stream(audio, hop_seconds=1.0, trim_seconds=6.0, max_buffer_seconds=9.0)
    assert max(decoder.calls) <= 9.0 + 1.0 + 0.1
    committed = words_of(result.text)
    assert committed == [w for w, _ in ends]


def test_end_of_stream_flushes_the_tail():
    audio, _ = script_audio([[1, 2, 3]], pause_seconds=0.05, lead_seconds=0.1)  # no phrase pause
    result, updates, _ = stream(audio, hop_seconds=0.5)
    assert words_of(result.text) == ["w1", "w2", "w3"]
    assert updates[-1].phrase_ended


def test_silence_and_empty_audio_decode_nothing():
    result, _, decoder = stream(np.zeros(16000 * 5, np.float32), hop_seconds=0.5)
    assert result.text == "" and decoder.calls == []
    result, _, decoder = stream(np.zeros(0, np.float32))
    assert result.text == "" and result.phrases == () and decoder.calls == []


def test_prompt_carries_committed_text_across_phrases():
    audio, _ = script_audio([[1, 2], [3, 4]])
    _, _, decoder = stream(audio, hop_seconds=0.5, use_prompt=True)
    assert decoder.prompts[0] == ""
    assert words_of(decoder.prompts[-1]) == ["w1", "w2"]
    _, _, decoder = stream(audio, hop_seconds=0.5, use_prompt=False)
    assert set(decoder.prompts) == {""}


def test_deterministic_mode_is_reproducible():
    audio, _ = script_audio([[5, 6, 7, 8], [9, 10]])
    first, _, _ = stream(audio, hop_seconds=0.7)
    second, _, _ = stream(audio, hop_seconds=0.7)
    assert [(w.text, w.audio_time) for w in first.words] == [(w.text, w.audio_time) for w in second.words]
    assert first.steps == second.steps and first.decodes == second.decodes
    # The simulated clock never runs ahead of compute: commit >= audio time.
    assert all(w.commit_time >= w.audio_time for w in first.words)


def test_live_simulation_catches_up_when_decoding_is_slow(monkeypatch):
    import types

    from asr_adapt.decode import streaming

    now = [0.0]  # a fake clock: each decode "takes" 0.3 s against a hop of 0.1 s
    monkeypatch.setattr(streaming, "time", types.SimpleNamespace(perf_counter=lambda: now[0],
                                                                 thread_time=lambda: now[0]))

    class SlowDecoder(ToneDecoder):
        def __call__(self, audio, prompt=""):
            now[0] += 0.3
            return super().__call__(audio, prompt)

    audio, ends = script_audio([[1, 2, 3, 4, 5, 6], [7, 8]])
    fixed = run_deterministic(StreamingProcessor(SlowDecoder(), StreamingOptions(hop_seconds=0.1)), audio)
    live = simulate_live(StreamingProcessor(SlowDecoder(), StreamingOptions(hop_seconds=0.1)), audio)
    assert words_of(live.text) == words_of(fixed.text) == [w for w, _ in ends]
    assert live.decodes < fixed.decodes / 2        # longer steps, fewer of them
    lag = lambda result: max(w.commit_time - w.audio_time for w in result.words)
    assert lag(fixed) > 5.0                        # three times slower than real time: it falls behind
    assert lag(live) < 1.5                         # catching up keeps the lag bounded
    assert [w.cpu_commit_time for w in live.words] == [w.commit_time for w in live.words]


# --------------------------------------------------------------------------- real speech


@pytest.fixture
def one_thread():
    """Decoding on one thread: faster than two on a shared 2-core machine, and stable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_live_transcript_of_real_speech_matches_offline(bundled_model, one_thread):
    from asr_adapt.audio.io import load_audio
    from asr_adapt.data.scoring import score
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder
    from asr_adapt.models.transcriber import Transcriber

    utterances = read_samples_manifest("test")[:2]
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([piece for u in utterances for piece in (load_audio(u.audio), gap)])
    reference = " ".join(u.text for u in utterances)
    processor = StreamingProcessor(WhisperDecoder(bundled_model), StreamingOptions(hop_seconds=1.0))
    result = run_deterministic(processor, audio)
    offline = " ".join(Transcriber(bundled_model).transcribe_arrays([load_audio(u.audio) for u in utterances]))
    live_wer = score([reference], [result.text]).wer
    offline_wer = score([reference], [offline]).wer
    assert len(result.phrases) == 2                 # the pause between the utterances was seen
    assert live_wer <= offline_wer + 0.15, (result.text, offline)
    assert live_wer < 0.6
    assert SAMPLES.is_dir()


def test_a_step_interrupted_while_decoding_leaves_its_audio_to_finish():
    audio, _ = script_audio([[1, 2, 3]], pause_seconds=0.05)

    class Interrupted(ToneDecoder):
        def __call__(self, audio, prompt=""):
            if len(self.calls) == 1:
                self.calls.append(0.0)
                raise KeyboardInterrupt
            return super().__call__(audio, prompt)

    processor = StreamingProcessor(Interrupted(), StreamingOptions(hop_seconds=0.5))
    processor.insert_audio(audio[:8000])
    processor.process_iter()
    processor.insert_audio(audio[8000:])
    with pytest.raises(KeyboardInterrupt):
        processor.process_iter()
    processor.finish()
    assert words_of(processor.text) == ["w1", "w2", "w3"]


@pytest.mark.parametrize("step_first", [True, False])
def test_a_processor_far_behind_never_decodes_more_than_a_window(step_first):
    # A minute of speech arrives at once (the machine stalled): every decode must still fit.
    audio, ends = script_audio([list(range(150))], gap_seconds=0.2)
    decoder = ToneDecoder()
    processor = StreamingProcessor(decoder, StreamingOptions(trim_seconds=8.0, max_buffer_seconds=12.0))
    processor.insert_audio(audio)
    if step_first:
        processor.process_iter()
    processor.finish()
    assert max(decoder.calls) <= 12.0
    assert words_of(processor.text) == [w for w, _ in ends]


def test_whisper_decoder_greedy_loop_gives_what_generate_gives(bundled_model, one_thread):
    """The lean decoding loop must be Whisper's own greedy decoding, token for token (over
    the same, full, encoder window)."""
    import torch

    from asr_adapt.audio.io import load_audio
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    decoder = WhisperDecoder(bundled_model, encoder_window="full")
    for utterance in read_samples_manifest("test")[:3]:
        audio = load_audio(utterance.audio)
        for seconds in (1.5, 3.0):
            piece = audio[: int(seconds * 16000)]
            inputs, mask = decoder._features(piece)
            with torch.inference_mode():
                tokens = bundled_model.model.generate(inputs, attention_mask=mask, do_sample=False, num_beams=1,
                                                      max_new_tokens=decoder._token_budget(len(piece)))
            expected = bundled_model.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)[0].strip()
            assert decoder(piece) == expected


def test_whisper_decoder_forced_prefix_is_kept_and_continued(bundled_model, one_thread):
    from asr_adapt.audio.io import load_audio
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    decoder = WhisperDecoder(bundled_model)
    audio = load_audio(read_samples_manifest("test")[0].audio)
    free = decoder(audio).split()
    assert len(free) >= 4
    # Forcing the first words the model would say anyway changes nothing.
    assert decoder(audio, prefix=free[:2]).split() == free
    # A forced prefix is reproduced even when the model would not say it.
    forced = decoder(audio, prefix=["Zebra", "crossing"]).split()
    assert [normalize_word(w) for w in forced[:2]] == ["zebra", "crossing"] and len(forced) > 2


def test_processor_forces_committed_words_only_on_whole_buffer_decodes():
    audio, _ = script_audio([[1, 2, 3, 4, 5, 6]], pause_seconds=0.05)

    class Prefixed(ToneDecoder):
        forces_prefix = True

        def __init__(self):
            super().__init__()
            self.prefixes = []

        def __call__(self, audio, prompt="", prefix=()):
            self.prefixes.append(list(prefix))
            return super().__call__(audio, prompt)

    decoder = Prefixed()
    result = run_deterministic(StreamingProcessor(decoder, StreamingOptions(hop_seconds=0.5, force_committed=True)),
                               audio)
    assert [normalize_word(w) for w in result.text.split()] == [f"w{i}" for i in range(1, 7)]
    assert any(decoder.prefixes), "committed words were never passed on"
    plain = Prefixed()
    run_deterministic(StreamingProcessor(plain, StreamingOptions(hop_seconds=0.5)), audio)  # off by default
    assert not any(plain.prefixes)


def test_encoder_over_the_full_window_is_the_models_own_and_shorter_windows_are_shorter(bundled_model):
    import torch

    from asr_adapt.models.whisper.encoder_window import encode

    model = bundled_model.model
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        own = model.get_encoder()(features).last_hidden_state
        full = encode(model, features, 3000)
        # One frame more than the window sends encode() down its own path (the one short
        # windows take): over the same 3000 frames it must compute what the model computes.
        by_hand = encode(model, torch.cat([features, features[..., :1]], dim=-1), 3000)
        short = encode(model, features, 800)
    assert torch.equal(own, full)
    torch.testing.assert_close(by_hand, own, atol=1e-4, rtol=1e-4)
    assert short.shape == (1, 400, own.shape[-1])


@pytest.mark.parametrize("value", ["half", 1, 31, -3, None])
def test_encoder_window_refuses_what_it_cannot_do(value):
    from asr_adapt.core.errors import OptionsError
    from asr_adapt.models.options import check_encoder_window

    with pytest.raises(OptionsError, match="encoder window"):
        check_encoder_window(value)


def test_short_encoder_window_reads_the_buffer_plus_a_margin_and_still_transcribes(bundled_model, one_thread):
    from asr_adapt.audio.io import load_audio
    from asr_adapt.data.scoring import score
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    utterance = read_samples_manifest("test")[0]
    audio = load_audio(utterance.audio)
    decoder = WhisperDecoder(bundled_model, encoder_window=4)
    inputs, _ = decoder._features(audio)
    decoder._samples = len(audio)
    seconds = len(audio) / 16000
    assert decoder._window_frames(inputs) == 100 * max(4, int(np.ceil(seconds + 1)))
    decoder._samples = 16000  # a 1 s buffer reads the 4 s minimum
    assert decoder._window_frames(inputs) == 400
    full = WhisperDecoder(bundled_model, encoder_window="full")
    assert score([utterance.text], [decoder(audio)]).wer <= score([utterance.text], [full(audio)]).wer + 0.15


def test_auto_encoder_window_is_short_for_the_base_model_and_full_with_a_profile(bundled_model, monkeypatch):
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    decoder = WhisperDecoder(bundled_model)  # the default: auto
    assert decoder.encoder_window == "auto"
    inputs, _ = decoder._features(np.zeros(16000, np.float32))
    decoder._samples = 2 * 16000
    assert decoder._window_frames(inputs) == 400
    # An adapter trained on 30 s windows (a profile switched in while live runs) reads 30 s.
    monkeypatch.setitem(bundled_model.info, "profile", "someone")
    assert decoder._window_frames(inputs) == 3000


@pytest.mark.parametrize("settings, expected", [
    ({"training": {"short_window_share": 1.0}}, True),
    ({"training": {"short_window_share": 1.0}, "lora": {"where": "both"}}, True),
    ({"training": {"short_window_share": 1.0}, "lora": {"where": "decoder"}}, True),
    # One voice's default placement: the plain decoder reads the full window better.
    ({"training": {"short_window_share": 1.0}, "lora": {"where": "encoder"}}, False),
    ({"training": {"short_window_share": 0.5}}, False),   # saw 30 s windows too: reads best there
    ({"training": {"short_window_share": 0.0}}, False),
    ({"training": {}}, False),   # adapters made before short windows existed
    ({}, False),
])
def test_only_adapters_trained_on_short_windows_with_decoder_lora_get_them_live(settings, expected):
    from types import SimpleNamespace

    from asr_adapt.profiles.personal import reads_best_in_short_windows

    profile = SimpleNamespace(info=SimpleNamespace(settings=settings))
    assert reads_best_in_short_windows(profile) is expected


def test_auto_encoder_window_is_short_with_a_profile_trained_on_short_windows(bundled_model, monkeypatch):
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    decoder = WhisperDecoder(bundled_model, encoder_window="auto")
    inputs, _ = decoder._features(np.zeros(16000, np.float32))
    decoder._samples = 5 * 16000
    monkeypatch.setitem(bundled_model.info, "profile", "someone")
    monkeypatch.setitem(bundled_model.info, "short_windows", True)
    assert decoder._window_frames(inputs) == 600


@pytest.mark.parametrize("text, expected", [
    ("we watched the fireworks. We watched the fireworks", True),
    ("a b c d e f a b c d e f", True),
    ("I don't know, I don't know.", False),        # three words: real speech does this
    ("we watched the fireworks from the top", False),
    ("", False),
])
def test_says_twice_finds_a_phrase_said_twice_in_a_row(text, expected):
    from asr_adapt.models.repetition import says_twice

    assert says_twice(text.split()) is expected


@pytest.mark.parametrize("offset", [0.0, 0.4])
def test_short_windows_never_commit_a_phrase_twice(bundled_model, one_thread, offset):
    """Two sample sentences, joined with pauses: with a short encoder window, tiny.en said
    the first one twice in one hypothesis at these start offsets (and so did live, through
    the virtual microphone); such a hypothesis is decoded again over the full window."""
    from asr_adapt.audio.io import load_audio
    from asr_adapt.models.whisper.stream_decoder import WhisperDecoder

    utterances = read_samples_manifest("test")[:2]
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([np.zeros(int(offset * 16000), np.float32), gap]
                           + [piece for u in utterances for piece in (load_audio(u.audio), gap)])
    processor = StreamingProcessor(WhisperDecoder(bundled_model, encoder_window="auto"),
                                   StreamingOptions(hop_seconds=1.0))
    text = run_deterministic(processor, audio).text.lower()
    assert text.count("fireworks") == 1, text
    assert "whispered" in text



def test_the_live_decoder_passes_its_cache_under_the_name_transformers_expects(bundled_model):
    """``past_key_values`` is deprecated for Whisper's decoder (removed in transformers 5.40):
    live decoding must not depend on it where ``cache`` exists, nor break where it does not."""
    from asr_adapt.models.whisper.stream_decoder import _cache_keyword

    assert _cache_keyword(bundled_model.model.get_decoder()) in ("cache", "past_key_values")

    class Old:
        def forward(self, input_ids=None, encoder_hidden_states=None, past_key_values=None, use_cache=None):
            pass

    class New:
        def forward(self, input_ids=None, encoder_hidden_states=None, cache=None, use_cache=None):
            pass

    assert _cache_keyword(Old()) == "past_key_values" and _cache_keyword(New()) == "cache"
