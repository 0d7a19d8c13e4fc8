"""An enrollment session: the speaker reads prompts aloud, one take each, saved as they go.

:func:`enroll_from_microphone` runs the loop: it opens (or resumes) the profile, offers the
prompts :func:`~asr_adapt.profiles.prompts.choose_prompts` picks, records each take with
:func:`~asr_adapt.audio.capture.record_take_detailed`, judges it with
:func:`~asr_adapt.audio.takes.check_take`, and saves each accepted take at once, so an
interrupted session loses nothing accepted.

It talks to the user only through the :class:`EnrollmentUI` it is given: the terminal one
(:class:`asr_adapt.ui.terminal_enroll.TerminalUI`) is passed in by ``asr-adapt enroll``;
:class:`ScriptedUI` gives preset answers (tests, scripted demos).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_adapt.audio.capture import LevelUpdate, record_take_detailed
from asr_adapt.audio.devices import MicrophoneError
from asr_adapt.audio.microphone import MicrophoneSource
from asr_adapt.audio.sources import AudioSource
from asr_adapt.audio.takes import RecordOptions, check_take, trim_silence
from asr_adapt.core.errors import OptionsError
from asr_adapt.models.loading import resolve_model
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.info import profiles_root, validate_profile_name
from asr_adapt.profiles.prompts import choose_prompts


# --------------------------------------------------------------------------- talking to the user


class EnrollmentUI:
    """Everything enrollment asks of the user. Subclass it; the defaults do nothing.

    ``choose`` shows ``question`` with ``keys`` (key -> label) and returns one key; Enter
    means ``default``. ``start_take`` returns an event the UI sets to stop the take early
    (Enter); ``level`` draws the meter; ``end_take`` clears it.
    """

    def __enter__(self) -> EnrollmentUI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        pass

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        raise NotImplementedError

    def start_take(self) -> threading.Event:
        return threading.Event()

    def level(self, update: LevelUpdate) -> None:
        pass

    def end_take(self) -> None:
        pass


class ScriptedUI(EnrollmentUI):
    """Preset answers instead of a keyboard (tests, scripted demos).

    Each ``choose`` takes the next answer: a key, ``""`` for Enter (the default), or an
    exception instance to raise (``KeyboardInterrupt()`` simulates Ctrl-C). Running out of
    answers raises :class:`RuntimeError`. ``stop_after_seconds`` presses Enter that far
    into every take. Everything shown is kept in ``messages``, ``prompts``, ``questions``.
    """

    def __init__(self, answers: Iterable[str | BaseException] = (),
                 stop_after_seconds: float | None = None) -> None:
        self.answers = list(answers)
        self.stop_after_seconds = stop_after_seconds
        self.messages: list[str] = []
        self.prompts: list[str] = []
        self.questions: list[str] = []
        self.levels = 0
        self._stop: threading.Event | None = None

    def message(self, text: str) -> None:
        self.messages.append(text)

    def show_prompt(self, number: int, prompt: str, recorded_seconds: float,
                    suggested_seconds: float) -> None:
        self.prompts.append(prompt)

    def choose(self, question: str, keys: dict[str, str], default: str) -> str:
        self.questions.append(question)
        if not self.answers:
            raise RuntimeError(f"ScriptedUI ran out of answers at: {question}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "":
            return default
        if answer not in keys:
            raise ValueError(f"scripted answer {answer!r} is not one of {sorted(keys)} "
                             f"for: {question}")
        return answer

    def start_take(self) -> threading.Event:
        self._stop = threading.Event()
        return self._stop

    def level(self, update: LevelUpdate) -> None:
        self.levels += 1
        if (self.stop_after_seconds is not None and self._stop is not None
                and update.seconds >= self.stop_after_seconds):
            self._stop.set()


# --------------------------------------------------------------------------- the session


def _base_model_identity(base_model: str) -> tuple[str | None, str]:
    """The weights hash and backend of ``base_model`` (loads it on the CPU: 1-4 s)."""
    loaded = resolve_model(base_model, device="cpu")
    return loaded.weights_sha256, loaded.backend


def _recorded_seconds(profile: Profile) -> tuple[int, float]:
    utterances = profile.enrollment_utterances()
    return len(utterances), float(sum(u.duration or 0.0 for u in utterances))


def _summary(profile: Profile, resume_hint: bool) -> str:
    count, seconds = _recorded_seconds(profile)
    text = (f"'{profile.name}': {count} utterance{'' if count == 1 else 's'}, "
            f"{seconds / 60:.1f} min saved")
    if resume_hint:
        text += f"; run `asr-adapt enroll {profile.name}` again to continue"
    return text


def _open_or_create(name: str, base_model: str, force: bool, ui: EnrollmentUI) -> Profile:
    """Open profile ``name`` to resume it, or create it (``force``: replace it) for ``base_model``."""
    validate_profile_name(name)
    if not force and (profiles_root() / name).is_dir():
        profile = Profile.open(name)
        count, seconds = _recorded_seconds(profile)
        if profile.info.base_model and profile.info.base_model != base_model:
            ui.message(f"note: '{name}' was made for model {profile.info.base_model}; new "
                       f"recordings are added to it (--force starts afresh with {base_model})")
        ui.message(f"resuming '{name}': {count} utterances ({seconds / 60:.1f} min) recorded")
        return profile
    ui.message(f"loading {base_model} to record which weights '{name}' is for ...")
    sha, backend = _base_model_identity(base_model)
    profile = Profile.create(name, base_model=base_model, base_weights_sha256=sha,
                             backend=backend, force=force)
    ui.message(f"created profile '{name}'")
    return profile


@dataclass
class _Session:
    """What one enrollment run knows: the profile, what is left to read, how far it got."""

    profile: Profile
    prompts: list[str]
    suggested_seconds: float
    options: RecordOptions
    accepted: int = 0
    asked_more: bool = False
    notes: list[str] = field(default_factory=list)


def check_suggested_minutes(minutes: float) -> float:
    """``minutes`` as a float; :class:`OptionsError` unless it is a number above 0."""
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
        raise OptionsError(f"suggested minutes must be a number > 0, not {minutes!r}")
    return float(minutes)


def enroll_from_microphone(name: str, base_model: str, prompts: str | Path | None = None,
                           suggested_minutes: float = 5.0, input_device: str | int | None = None,
                           force: bool = False, source: AudioSource | None = None, *,
                           ui: EnrollmentUI, options: RecordOptions | None = None) -> Profile:
    """Record prompts read aloud into profile ``name``; return the profile.

    ``ui`` is how the user is talked to: :class:`asr_adapt.ui.terminal_enroll.TerminalUI`
    in a terminal (what ``asr-adapt enroll`` passes), :class:`ScriptedUI` for preset answers.
    An existing profile resumes (prompts already recorded are skipped) unless ``force``,
    which replaces it. The microphone (or ``source``) is opened before anything is written,
    so a missing microphone leaves no trace. Each accepted take is trimmed and saved at
    once; Ctrl-C prints a one-line summary and re-raises :class:`KeyboardInterrupt`.
    """
    validate_profile_name(name)
    options = options or RecordOptions()
    suggested_seconds = check_suggested_minutes(suggested_minutes) * 60.0
    choose_prompts(prompts, (), 1)  # a missing or empty prompts file fails before anything
    owned = source is None
    if source is None:
        source = MicrophoneSource(input_device).open()
        ui.message(f"microphone: {source.name}")
    try:
        with ui:
            profile = _open_or_create(name, base_model, force, ui)
            recorded = [u.text for u in profile.enrollment_utterances() if u.text]
            session = _Session(profile=profile, prompts=choose_prompts(prompts, recorded),
                               suggested_seconds=suggested_seconds, options=options)
            try:
                _run_session(session, source, ui)
            except KeyboardInterrupt:
                ui.end_take()
                ui.message("")
                ui.message(_summary(profile, resume_hint=True))
                raise
            except MicrophoneError:
                ui.end_take()
                ui.message(_summary(profile, resume_hint=True))
                raise
    finally:
        if owned:
            source.close()
    return profile


def _run_session(session: _Session, source: AudioSource, ui: EnrollmentUI) -> None:
    """Offer the prompts one by one until they run out, the user quits, or declines more."""
    profile = session.profile
    if not session.prompts:
        ui.message("every prompt of the prompts file is recorded; give more with --prompts FILE")
        ui.message(_summary(profile, resume_hint=False))
        return
    ui.message(f"{len(session.prompts)} prompts to go; read each one aloud after pressing Enter. "
               "Recording stops by itself when you stop speaking (or press Enter).")
    count, seconds = _recorded_seconds(profile)
    for prompt in session.prompts:
        if seconds >= session.suggested_seconds and not session.asked_more:
            session.asked_more = True
            more = ui.choose(f"{seconds / 60:.1f} min recorded: the suggested "
                             f"{session.suggested_seconds / 60:g} min are reached. Record more?",
                             {"y": "more", "n": "stop"}, default="n")
            if more != "y":
                ui.message(_summary(profile, resume_hint=False))
                return
        count += 1
        ui.show_prompt(count, prompt, seconds, session.suggested_seconds)
        action = ui.choose("ready?", {"r": "record", "s": "skip", "q": "quit"}, default="r")
        while action == "r":
            action, audio = _one_take(session, source, ui)
            if action == "k":
                utterance = profile.add_enrollment_utterance(audio, prompt)
                session.accepted += 1
                seconds += float(utterance.duration or 0.0)
                ui.message(f"saved {utterance.id} ({utterance.duration:.1f} s); "
                           f"{seconds / 60:.1f} of {session.suggested_seconds / 60:.1f} min")
        if action == "s":
            count -= 1
            continue
        if action == "q":
            ui.message(_summary(profile, resume_hint=True))
            return
    ui.message("no more prompts in the prompts file")
    ui.message(_summary(profile, resume_hint=seconds < session.suggested_seconds))


def _one_take(session: _Session, source: AudioSource, ui: EnrollmentUI
              ) -> tuple[str, np.ndarray | None]:
    """Record and judge one take; return the user's choice (k, r, s, q) and the audio."""
    source.discard_pending()
    stop = ui.start_take()
    try:
        take = record_take_detailed(source, session.options, on_level=ui.level, stop_event=stop)
    finally:
        ui.end_take()
    verdict = check_take(take.audio, session.options)
    if take.overflows:
        ui.message(f"warning: the input overflowed {take.overflows} time(s): parts of this take "
                   "are missing; consider re-recording")
    if take.stop_reason == "max_length" and verdict.ok:
        ui.message(f"note: stopped at the {session.options.max_seconds_per_prompt:g} s limit")
    if not verdict.ok:
        ui.message(f"rejected: {verdict.message}")
        return ui.choose("record again?", {"r": "re-record", "s": "skip", "q": "quit"},
                         default="r"), None
    ui.message(verdict.message)
    choice = ui.choose("keep this take?", {"k": "keep", "r": "re-record", "s": "skip",
                                           "q": "quit"}, default="k")
    return choice, trim_silence(take.audio, session.options) if choice == "k" else None


__all__ = [
    "EnrollmentUI",
    "ScriptedUI",
    "check_suggested_minutes",
    "enroll_from_microphone",
]
