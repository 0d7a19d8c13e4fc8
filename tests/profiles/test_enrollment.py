"""Recording takes and microphone enrollment, fed by generated audio (no hardware)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.audio.capture import LevelUpdate, record_take, record_take_detailed
from asr_adapt.audio.devices import NO_MICROPHONE, PORTAUDIO_MISSING, MicrophoneError
from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.audio.sources import ArraySource
from asr_adapt.audio.takes import (
    CLIPPED, NO_SPEECH_MESSAGE, OK, SILENT, TOO_SHORT, RecordOptions, check_take, level_meter, trim_silence,
)
from asr_adapt.core.errors import AsrAdaptError, OptionsError
from asr_adapt.profiles import enrollment, prompts
from asr_adapt.profiles.enrollment import ScriptedUI, enroll_from_microphone
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.prompts import DEFAULT_PROMPTS, HELD_OUT_PROMPTS, EnrollmentError, choose_prompts
from asr_adapt.ui.terminal_enroll import TerminalUI, terminal_ui

RNG = np.random.default_rng(7)


def noise(seconds: float, level: float = 0.001) -> np.ndarray:
    """The microphone's noise floor (about -60 dBFS)."""
    return (RNG.standard_normal(int(seconds * SAMPLE_RATE)) * level).astype(np.float32)


def speech(seconds: float, amplitude: float = 0.2) -> np.ndarray:
    """A voiced stand-in: a 150 Hz buzz with harmonics in 4 Hz 'syllables', over the floor."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in (1, 2, 3))
    envelope = 0.4 + 0.6 * np.abs(np.sin(2 * np.pi * 2 * t))
    return (amplitude * 0.6 * buzz * envelope).astype(np.float32) + noise(seconds)


def join(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)


def seconds(audio: np.ndarray) -> float:
    return len(audio) / SAMPLE_RATE


FAST = RecordOptions(no_speech_timeout_seconds=2.0)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("changes, match", [
    ({"max_seconds_per_prompt": 0}, "max_seconds_per_prompt must be a number > 0"),
    ({"end_silence_seconds": -1}, "end_silence_seconds"),
    ({"max_seconds_per_prompt": 1.0}, "must exceed end_silence_seconds"),
    ({"silence_rms": 2.0}, "silence_rms must be below 1"),
    ({"silence_rms_floor": 0.1, "silence_rms_ceiling": 0.01}, "silence_rms_floor <="),
    ({"clip_level": 1.5}, "clip_level"),
    ({"max_clipped_fraction": 1.0}, "max_clipped_fraction"),
    ({"lead_in_seconds": 0.0}, "lead_in_seconds must be"),
    ({"min_speech_seconds": float("nan")}, "min_speech_seconds"),
    ({"no_speech_timeout_seconds": 0}, "no_speech_timeout_seconds"),
])
def test_record_options_are_validated(changes, match):
    with pytest.raises(OptionsError, match=match):
        RecordOptions(**changes)


def test_record_options_defaults():
    options = RecordOptions()
    assert (options.max_seconds_per_prompt, options.end_silence_seconds,
            options.min_speech_seconds, options.clip_level, options.max_clipped_fraction) == \
        (20.0, 1.2, 0.6, 0.99, 0.001)
    assert RecordOptions(silence_rms=0.01, lead_in_seconds=0).silence_rms == 0.01


# --------------------------------------------------------------------------- level meter, verdicts


def test_level_meter():
    silent = level_meter(np.zeros(800, dtype=np.float32))
    assert silent == "[" + "-" * 24 + "]   -inf dBFS"
    quiet = level_meter(noise(0.05, level=0.001), width=10)
    assert quiet.startswith("[----------]") and "-60" in quiet
    t = np.arange(800) / SAMPLE_RATE
    loud = level_meter((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), width=20)
    assert loud.startswith("[" + "#" * 17 + "---]") and loud.endswith("-9.0 dBFS")
    assert level_meter(np.ones(800, dtype=np.float32)).endswith("0.0 dBFS CLIP")
    assert level_meter(np.empty(0, dtype=np.float32)).endswith("-inf dBFS")


def test_check_take_silent():
    for audio in (noise(3.0), np.zeros(SAMPLE_RATE, dtype=np.float32),
                  np.empty(0, dtype=np.float32), noise(3.0, level=0.0003) + speech(3.0, 0.001)):
        verdict = check_take(audio)
        assert verdict.kind == SILENT and not verdict.ok
        assert verdict.message == NO_SPEECH_MESSAGE


def test_check_take_clipped():
    audio = join(noise(0.5), np.clip(speech(2.0, amplitude=1.5), -1, 1), noise(1.0))
    verdict = check_take(audio)
    assert verdict.kind == CLIPPED
    assert verdict.message.startswith("too loud: ")
    assert verdict.message.endswith("% of samples clipped - move back or lower the input gain")
    percent = float(verdict.message.split("too loud: ")[1].split("%")[0])
    assert percent == pytest.approx(100 * verdict.clipped_fraction, rel=0.05)
    # a few clipped samples are tolerated
    few = join(noise(0.5), speech(2.0), noise(1.0))
    few[20000:20010] = 1.0
    assert check_take(few).kind == OK


def test_check_take_too_short_and_ok():
    short = check_take(join(noise(1.0), speech(0.3), noise(1.5)))
    assert short.kind == TOO_SHORT
    assert short.message.startswith("too short: only 0.")
    assert "read the whole sentence" in short.message
    ok = check_take(join(noise(0.5), speech(2.0), noise(1.2)))
    assert ok.ok and ok.kind == OK
    assert ok.speech_seconds == pytest.approx(2.0, abs=0.15)
    assert ok.duration == pytest.approx(3.7, abs=0.01)
    assert -25 < ok.peak_dbfs < -10


def test_check_take_with_fixed_threshold():
    options = RecordOptions(silence_rms=0.5, lead_in_seconds=0)
    assert check_take(join(noise(0.5), speech(2.0)), options).kind == SILENT


def test_trim_silence_keeps_padding():
    audio = join(noise(1.0), speech(2.0), noise(2.0))
    trimmed = trim_silence(audio)
    assert seconds(trimmed) == pytest.approx(2.0 + 2 * 0.25, abs=0.07)
    (start,) = np.flatnonzero(audio == trimmed[0])  # noise samples are unique floats
    np.testing.assert_array_equal(audio[start:start + len(trimmed)], trimmed)
    assert start == pytest.approx(0.75 * SAMPLE_RATE, abs=0.04 * SAMPLE_RATE)
    assert seconds(trim_silence(audio, padding_seconds=0)) == pytest.approx(2.0, abs=0.05)
    only_noise = noise(1.0)
    np.testing.assert_array_equal(trim_silence(only_noise), only_noise)


# --------------------------------------------------------------------------- record_take


def test_record_take_stops_at_end_of_speech():
    source = ArraySource(join(noise(0.5), speech(2.0), noise(3.0), speech(1.5), noise(3.0)))
    updates: list[LevelUpdate] = []
    take = record_take_detailed(source, RecordOptions(), on_level=updates.append)
    assert take.stop_reason == "end_of_speech"
    assert take.seconds == pytest.approx(0.5 + 2.0 + 1.2, abs=0.1)
    assert take.speech_seconds == pytest.approx(2.0, abs=0.1)
    assert updates and updates[-1].speech_heard and not updates[0].speech_heard
    assert updates[-1].seconds == pytest.approx(take.seconds)
    assert "dBFS" in level_meter(updates[-1].block)
    # the rest of the stream is the next take
    second = record_take(source, RecordOptions())
    assert seconds(second) == pytest.approx(1.8 + 1.5 + 1.2, abs=0.1)
    assert check_take(second).ok


def test_record_take_does_not_stop_at_a_short_pause():
    source = ArraySource(join(noise(0.4), speech(1.0), noise(0.8), speech(1.0), noise(3.0)))
    assert seconds(record_take(source)) == pytest.approx(0.4 + 1.0 + 0.8 + 1.0 + 1.2, abs=0.1)


def test_record_take_needs_enough_speech_before_ending():
    # a cough, a pause longer than end_silence_seconds, then the sentence
    audio = join(noise(0.5), speech(0.2), noise(2.0), speech(2.0), noise(3.0))
    assert seconds(record_take(ArraySource(audio))) == pytest.approx(0.5 + 0.2 + 2 + 2 + 1.2,
                                                                    abs=0.1)


def test_record_take_max_length():
    take = record_take_detailed(ArraySource(speech(30.0)), RecordOptions(max_seconds_per_prompt=5))
    assert take.stop_reason == "max_length" and take.seconds == 5.0


def test_record_take_no_speech_timeout():
    take = record_take_detailed(ArraySource(noise(30.0)), FAST)
    assert take.stop_reason == "no_speech"
    assert take.seconds == pytest.approx(2.0, abs=0.06)
    assert check_take(take.audio).kind == SILENT


def test_record_take_stop_event():
    stop = threading.Event()

    def press_enter(update: LevelUpdate) -> None:
        if update.seconds >= 1.0:
            stop.set()

    take = record_take_detailed(ArraySource(speech(10.0)), on_level=press_enter, stop_event=stop)
    assert take.stop_reason == "stopped"
    assert take.seconds == pytest.approx(1.0, abs=0.06)


def test_record_take_source_ended():
    take = record_take_detailed(ArraySource(join(noise(0.5), speech(1.0))))
    assert take.stop_reason == "source_ended" and take.seconds == pytest.approx(1.5)


def test_record_take_realtime_source():
    source = ArraySource(join(noise(0.3), speech(0.8), noise(2.0)), realtime=True, speed=4.0)
    options = RecordOptions(end_silence_seconds=0.6)
    start = time.monotonic()
    audio = record_take(source, options)
    assert seconds(audio) == pytest.approx(0.3 + 0.8 + 0.6, abs=0.1)
    assert time.monotonic() - start >= seconds(audio) / 4 - 0.1


class LosingSource(ArraySource):
    """Delivers ``good_blocks`` blocks, then the device disappears."""

    def __init__(self, audio: np.ndarray, good_blocks: int) -> None:
        super().__init__(audio)
        self.good_blocks = good_blocks

    def read(self, timeout=None):
        if self.good_blocks <= 0:
            raise MicrophoneError("the microphone 'fake' stopped delivering audio (unplugged?)")
        self.good_blocks -= 1
        return super().read(timeout)


def test_record_take_lost_device_keeps_partial_audio():
    with pytest.raises(MicrophoneError) as caught:
        record_take(LosingSource(speech(5.0), good_blocks=10))
    assert len(caught.value.partial_audio) == 10 * 800


# --------------------------------------------------------------------------- prompts


def test_default_prompts_skip_the_held_out_test_sentences():
    lines = DEFAULT_PROMPTS.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 344
    prompts = choose_prompts(None, [])
    assert len(prompts) == 344 - HELD_OUT_PROMPTS - 12
    assert prompts[0] == lines[0] and prompts[-1] == lines[313]
    assert not set(prompts) & set(lines[314:])
    assert not set(prompts) & set(lines[289:301])  # samples/generic, the forgetting guard
    # the held-out lines are the sentences of samples/test
    test_texts = {line.split('"text": "')[1].split('"')[0]
                  for line in (DEFAULT_PROMPTS.parent / "test" / "manifest.jsonl")
                  .read_text(encoding="utf-8").splitlines()} \
        if (DEFAULT_PROMPTS.parent / "test" / "manifest.jsonl").is_file() else set()
    assert not test_texts & set(prompts)
    # the same file given explicitly is still the shipped one
    assert choose_prompts(str(DEFAULT_PROMPTS), [], 3) == lines[:3]


def test_choose_prompts_resumes(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("First one.\n\n# a comment\nSecond  one.\nThird one.\nfirst ONE.\nFourth.\n",
                    encoding="utf-8")
    assert choose_prompts(path, []) == ["First one.", "Second one.", "Third one.", "Fourth."]
    assert choose_prompts(path, ["first one.", "Third   one."], 2) == ["Second one.", "Fourth."]
    assert choose_prompts(path, ["First one.", "Second one.", "Third one.", "Fourth."]) == []
    lines = DEFAULT_PROMPTS.read_text(encoding="utf-8").splitlines()
    assert choose_prompts(None, lines[:72], 2) == lines[72:74]
    assert choose_prompts(None, lines[:314], 5) == []


def test_choose_prompts_missing_files(tmp_path, monkeypatch):
    with pytest.raises(EnrollmentError, match="no such prompts file"):
        choose_prompts(tmp_path / "nope.txt", [])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(EnrollmentError, match="holds no prompts"):
        choose_prompts(empty, [])
    monkeypatch.setattr(prompts, "DEFAULT_PROMPTS", tmp_path / "samples" / "prompts.txt")
    with pytest.raises(EnrollmentError) as caught:
        choose_prompts(None, [])
    assert "default prompts file" in str(caught.value) and "--prompts FILE" in str(caught.value)


# --------------------------------------------------------------------------- enrollment


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))
    calls = []

    def identity(base_model):  # instead of loading the model (1-4 s)
        calls.append(base_model)
        return "ab" * 32, "whisper"

    monkeypatch.setattr(enrollment, "_base_model_identity", identity)
    monkeypatch.model_calls = calls
    return tmp_path / "home" / "profiles"


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"Sentence number {i}.\n" for i in range(1, 11)), encoding="utf-8")
    return path


def takes(*lengths: float) -> ArraySource:
    """One take per length: lead-in noise, speech of that length, a long pause; a length of
    0 is a take without speech, exactly as long as FAST's no-speech timeout (2 s)."""
    parts = []
    for length in lengths:
        parts += [noise(0.5), speech(length), noise(2.0)] if length else [noise(2.0)]
    return ArraySource(join(*parts))


def enroll(prompts_file, source, answers, **kwargs):
    ui = ScriptedUI(answers)
    kwargs.setdefault("options", FAST)
    profile = enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file,
                                     source=source, ui=ui, **kwargs)
    return profile, ui


def test_enroll_saves_accepted_takes_and_rejects_silence(home, prompts_file, monkeypatch):
    # prompt 1: record, keep; prompt 2: record (silent: rejected), re-record, keep; quit
    profile, ui = enroll(prompts_file, takes(2.0, 0, 1.5), ["", "", "", "r", "", "q"])
    assert isinstance(profile, Profile) and profile.path == home / "alice"
    assert monkeypatch.model_calls == ["whisper-tiny.en"]
    assert profile.info.base_weights_sha256 == "ab" * 32
    utterances = profile.enrollment_utterances()
    assert [u.id for u in utterances] == ["0001", "0002"]
    assert [u.text for u in utterances] == ["Sentence number 1.", "Sentence number 2."]
    assert ui.prompts == ["Sentence number 1.", "Sentence number 2.", "Sentence number 3."]
    assert f"rejected: {NO_SPEECH_MESSAGE}" in ui.messages
    for utterance, length in zip(utterances, (2.0, 1.5)):
        audio, rate = sf.read(utterance.audio, dtype="float32")
        assert rate == SAMPLE_RATE
        assert seconds(audio) == pytest.approx(length + 0.5, abs=0.1)  # trimmed, padded
        assert utterance.duration == pytest.approx(seconds(audio), abs=0.01)
    assert ui.messages[-1] == ("'alice': 2 utterances, 0.1 min saved; run `asr-adapt enroll "
                               "alice` again to continue")


def test_enroll_resumes_numbering_and_prompts(home, prompts_file, monkeypatch):
    enroll(prompts_file, takes(1.5, 1.5), ["", "", "", "", "q"])
    profile, ui = enroll(prompts_file, takes(1.5), ["", "", "q"])
    assert monkeypatch.model_calls == ["whisper-tiny.en"]  # an existing profile is not re-created
    utterances = profile.enrollment_utterances()
    assert [u.id for u in utterances] == ["0001", "0002", "0003"]
    assert utterances[2].text == "Sentence number 3."
    assert ui.prompts[0] == "Sentence number 3."
    assert any(m.startswith("resuming 'alice': 2 utterances") for m in ui.messages)


def test_enroll_skip_and_reject_choices(home, prompts_file):
    # prompt 1 skipped before recording; prompt 2: silent, then skipped; prompt 3: kept,
    # then prompt 4: recorded, re-recorded, kept
    profile, _ = enroll(prompts_file, takes(0, 1.5, 1.0, 1.2),
                         ["s", "", "s", "", "", "", "r", "", "q"])
    texts = [u.text for u in profile.enrollment_utterances()]
    assert texts == ["Sentence number 3.", "Sentence number 4."]
    second, _ = enroll(prompts_file, takes(1.5), ["", "", "q"])
    assert second.enrollment_utterances()[-1].text == "Sentence number 1."


def test_enroll_rejects_clipped_and_short_takes(home, prompts_file):
    clipped = join(noise(0.5), np.clip(speech(2.0, amplitude=2.0), -1, 1), noise(2.0))
    short = join(noise(0.5), speech(0.3), noise(3.0))
    profile, ui = enroll(prompts_file, ArraySource(join(clipped, short)), ["", "r", "q"])
    assert profile.enrollment_utterances() == []
    rejected = [m for m in ui.messages if m.startswith("rejected: ")]
    assert rejected[0].startswith("rejected: too loud: ")
    assert rejected[1].startswith("rejected: too short: ")


def test_ctrl_c_keeps_accepted_takes(home, prompts_file):
    ui = ScriptedUI(["", "", "", "", KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file,
                               source=takes(1.5, 1.5, 1.5), ui=ui, options=FAST)
    profile = Profile.open("alice")
    assert [u.text for u in profile.enrollment_utterances()] == ["Sentence number 1.",
                                                                 "Sentence number 2."]
    assert ui.messages[-1].startswith("'alice': 2 utterances, ")
    assert ui.messages[-1].endswith("min saved; run `asr-adapt enroll alice` again to continue")


class InterruptingUI(ScriptedUI):
    """Ctrl-C in the middle of the second take."""

    def __init__(self, answers):
        super().__init__(answers)
        self.takes = 0
        self.ended = 0

    def start_take(self):
        self.takes += 1
        return super().start_take()

    def level(self, update):
        if self.takes == 2 and update.seconds > 1.0:
            raise KeyboardInterrupt

    def end_take(self):
        self.ended += 1


def test_ctrl_c_during_a_take(home, prompts_file):
    ui = InterruptingUI(["", "", ""])
    with pytest.raises(KeyboardInterrupt):
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file,
                               source=takes(1.5, 1.5), ui=ui, options=FAST)
    assert len(Profile.open("alice").enrollment_utterances()) == 1
    assert ui.ended >= 2  # the meter line is cleared


def test_enroll_stops_at_suggested_minutes(home, prompts_file):
    # 0.05 min = 3 s: after the second take (2 s each), enrollment asks whether to go on
    profile, ui = enroll(prompts_file, takes(1.5, 1.5, 1.5), ["", "", "", "", ""],
                         suggested_minutes=0.05)
    assert len(profile.enrollment_utterances()) == 2
    assert "suggested" in ui.questions[-1] and "Record more?" in ui.questions[-1]
    # resuming a complete enrollment asks at once; 'y' goes on
    profile, ui = enroll(prompts_file, takes(1.5), ["y", "", "", "q"], suggested_minutes=0.05)
    assert len(profile.enrollment_utterances()) == 3


def test_enroll_all_prompts_recorded(home, tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("One.\nTwo.\n", encoding="utf-8")
    profile, ui = enroll(path, takes(1.5, 1.5), ["", "", "", ""])
    assert len(profile.enrollment_utterances()) == 2
    assert "no more prompts in the prompts file" in ui.messages
    profile, ui = enroll(path, takes(1.5), [])
    assert any("every prompt of the prompts file is recorded" in m for m in ui.messages)


def test_force_starts_afresh(home, prompts_file, monkeypatch):
    enroll(prompts_file, takes(1.5, 1.5), ["", "", "", "", "q"])
    profile, _ = enroll(prompts_file, takes(1.5), ["", "", "q"], force=True)
    assert monkeypatch.model_calls == ["whisper-tiny.en", "whisper-tiny.en"]
    assert [(u.id, u.text) for u in profile.enrollment_utterances()] == \
        [("0001", "Sentence number 1.")]


def test_lost_microphone_during_enrollment(home, prompts_file):
    audio = join(noise(0.5), speech(1.5), noise(2.0), speech(5.0))
    source = LosingSource(audio, good_blocks=90)  # 4.5 s: the second take is cut
    ui = ScriptedUI(["", "", ""])
    with pytest.raises(MicrophoneError, match="stopped delivering audio"):
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file, source=source,
                               ui=ui, options=FAST)
    assert len(Profile.open("alice").enrollment_utterances()) == 1
    assert ui.messages[-1].startswith("'alice': 1 utterance, ")


def test_no_microphone_creates_nothing(home, prompts_file, monkeypatch):
    from fake_sounddevice import fake_sounddevice, patch_sounddevice

    patch_sounddevice(monkeypatch, lambda: fake_sounddevice(devices=[], default_input=-1))
    with pytest.raises(MicrophoneError) as caught:
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file, ui=ScriptedUI())
    assert str(caught.value) == NO_MICROPHONE
    assert not (home / "alice").exists()
    assert monkeypatch.model_calls == []


def test_missing_portaudio_creates_nothing(home, prompts_file, monkeypatch):
    from fake_sounddevice import patch_sounddevice

    def missing():
        raise MicrophoneError(PORTAUDIO_MISSING)

    patch_sounddevice(monkeypatch, missing)
    with pytest.raises(MicrophoneError, match="the PortAudio library is missing"):
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file, ui=ScriptedUI())
    assert not (home / "alice").exists()


def test_enroll_needs_a_terminal(home, prompts_file, monkeypatch, capsys):
    from cli_runner import assert_one_line_error, run_cli

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(EnrollmentError) as caught:
        terminal_ui()
    assert str(caught.value) == ("interactive enrollment needs a terminal; use --from DIR to "
                                 "enroll from recordings")
    assert isinstance(caught.value, AsrAdaptError)
    # `asr-adapt enroll` builds the terminal UI before enrolling: nothing is written
    code, _, err = run_cli(capsys, "enroll", "alice", "--prompts", prompts_file, "--no-train")
    assert_one_line_error(code, err, "interactive enrollment needs a terminal")
    assert not (home / "alice").exists()


def test_enroll_needs_a_ui(home, prompts_file):
    with pytest.raises(TypeError, match="ui"):
        enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file)  # type: ignore[call-arg]
    assert not (home / "alice").exists()


def test_enroll_bad_arguments_fail_early(home, tmp_path):
    with pytest.raises(EnrollmentError, match="no such prompts file"):
        enroll(tmp_path / "missing.txt", takes(1.5), [])
    with pytest.raises(OptionsError, match="suggested minutes"):
        enroll(None, takes(1.5), [], suggested_minutes=0)
    with pytest.raises(AsrAdaptError, match="invalid profile name"):
        enroll_from_microphone("../x", "whisper-tiny.en", source=takes(1.5), ui=ScriptedUI())
    assert not home.exists() or not any(home.iterdir())


def test_scripted_ui_stop_after_seconds(home, prompts_file):
    ui = ScriptedUI(["", "", "q"], stop_after_seconds=1.5)
    source = ArraySource(join(noise(0.5), speech(8.0)))
    profile = enroll_from_microphone("alice", "whisper-tiny.en", prompts=prompts_file,
                                     source=source, ui=ui, options=FAST)
    (utterance,) = profile.enrollment_utterances()
    assert utterance.duration == pytest.approx(1.5 - 0.25, abs=0.1)  # lead-in trimmed to 0.25 s


# --------------------------------------------------------------------------- the terminal UI


def type_later(fd: int, keys: bytes, delay: float = 0.2) -> None:
    timer = threading.Timer(delay, os.write, args=(fd, keys))
    timer.daemon = True
    timer.start()


def ask(ui, master: int, *args, **kwargs) -> str:
    """``ui.choose`` on a thread, so that a lost key fails the test instead of hanging it."""
    answer: list[str] = []
    worker = threading.Thread(target=lambda: answer.append(ui.choose(*args, **kwargs)),
                              daemon=True)
    worker.start()
    worker.join(5.0)
    if worker.is_alive():
        os.write(master, b"\n")
        worker.join(1.0)
        pytest.fail("TerminalUI.choose did not get the key")
    return answer[0]


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_terminal_ui_keys_and_meter():
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r")
    out = io.StringIO()
    try:
        with TerminalUI(stdin=stdin, stream=out) as ui:
            os.write(master, b"q")  # typed before the question: flushed, not an answer
            type_later(master, b"\n")
            assert ask(ui, master, "keep?", {"k": "keep", "q": "quit"}, default="k") == "k"
            type_later(master, b"xQ")
            assert ask(ui, master, "keep?", {"k": "keep", "q": "quit"}, default="k") == "q"
            type_later(master, b"\x04")
            assert ask(ui, master, "again?", {"r": "re-record", "s": "skip"}, default="r") == "r"
            stop = ui.start_take()
            ui.level(LevelUpdate(np.full(800, 0.1, dtype=np.float32), 0.05, False, 20.0))
            assert not stop.wait(0.1)
            os.write(master, b"\n")
            assert stop.wait(2.0)
            ui.end_take()
            ui.show_prompt(1, "Read [this] aloud.", 30.0, 300.0)
            ui.message("done")
        text = out.getvalue()
        assert "keep?" in text and "[Enter] keep" in text
        assert "Read [this] aloud." in text and "0.5 of 5.0 min recorded" in text
    finally:
        stdin.close()
        os.close(master)
