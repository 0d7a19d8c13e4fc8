"""Profile: one folder per speaker (or group) holding enrollment audio and LoRA adapters.

Layout, under :func:`~asr_adapt.profiles.info.profiles_root` (``$ASR_ADAPT_HOME/profiles``
or the platform's user data folder)::

    <root>/<name>/profile.json          the commit point: written atomically, and last
    <root>/<name>/enrollment/manifest.jsonl + enrollment/<id>.flac   (16 kHz mono)
    <root>/<name>/unlabeled/manifest.jsonl + unlabeled/<id>.flac     kept audio without text
    <root>/<name>/adapters/<version>/   PEFT save_pretrained output
    <root>/<name>/reports/              compare reports and the like

:class:`Profile` is the handle on one such folder. The work is done by its neighbours:
:mod:`~asr_adapt.profiles.info` (names, ``profile.json``), :mod:`~asr_adapt.profiles.store`
(crash-safe staging of whole profiles, listing, removal), :mod:`~asr_adapt.profiles.recordings`
(FLAC files and manifests) and :mod:`~asr_adapt.profiles.adapters` (adapter versions).
Export and import (one archive per profile) are in :mod:`asr_adapt.profiles.archive`.

Every problem a user can fix is raised as :class:`~asr_adapt.profiles.info.ProfileError`
with a one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, load_audio
from asr_adapt.core import faults
from asr_adapt.core.files import write_text_atomic
from asr_adapt.data.manifest import MANIFEST_NAME, UNKNOWN_SPEAKER, Utterance, write_manifest
from asr_adapt.profiles import adapters, recordings
from asr_adapt.profiles.locks import lock_if_free, profile_lock
from asr_adapt.profiles.info import (
    KINDS, PROFILE_FILE, ProfileError, ProfileInfo, dumps_info, is_safe_name, iso_stamp,
    profiles_root, read_info, utc_now, validate_profile_name,
)
from asr_adapt.profiles.store import (
    create_folder, existing_folder, is_leftover, make_root, oserror_text, random_tag, recover,
    remove_path,
)
log = logging.getLogger(__name__)


class Profile:
    """One profile folder and its ``profile.json``.

    Get one with :meth:`create` or :meth:`open`; ``info`` changes are written by
    :meth:`save` (and by the methods that change the profile).
    """

    def __init__(self, path: Path, info: ProfileInfo) -> None:
        self.path = Path(path)
        self.info = info

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, path={str(self.path)!r})"

    # ----------------------------------------------------------------- places

    @property
    def name(self) -> str:
        """The profile's name (its folder name)."""
        return self.info.name

    @property
    def enrollment_dir(self) -> Path:
        """Folder of enrollment recordings (``<id>.flac``) and their manifest."""
        return self.path / "enrollment"

    @property
    def enrollment_manifest(self) -> Path:
        """The enrollment manifest (may not exist yet)."""
        return self.enrollment_dir / MANIFEST_NAME

    @property
    def unlabeled_dir(self) -> Path:
        """Folder reserved for unlabeled audio (not created until something uses it)."""
        return self.path / "unlabeled"

    @property
    def unlabeled_manifest(self) -> Path:
        """The manifest of the profile's unlabeled audio (may not exist yet)."""
        return self.unlabeled_dir / MANIFEST_NAME

    @property
    def adapters_dir(self) -> Path:
        """Folder holding one sub-folder per committed adapter version."""
        return self.path / "adapters"

    @property
    def adapter_dir(self) -> Path | None:
        """The current adapter folder (PEFT format), or ``None`` before any training."""
        return self.path / self.info.adapter if self.info.adapter else None

    @property
    def kept_nothing(self) -> str | None:
        """Why the last adaptation kept no adapter, when the profile has none (None: it has
        one, or was never adapted). Such a profile reads with its base model as it is."""
        if self.adapter_dir is not None:
            return None
        reason = self.info.metrics.get("kept_nothing")
        return reason if isinstance(reason, str) and reason else None

    @property
    def previous_adapter_dir(self) -> Path | None:
        """The adapter before the current one, kept for rollback, if it still exists."""
        versions = [entry.get("version") for entry in self.info.history]
        current = self.info.adapter.split("/")[1] if self.info.adapter else None
        older = [v for v in versions if isinstance(v, str) and v != current and is_safe_name(v)]
        if not older:
            return None
        folder = self.adapters_dir / older[-1]
        return folder if folder.is_dir() else None

    @property
    def reports_dir(self) -> Path:
        """Folder for compare reports and the like."""
        return self.path / "reports"

    # ----------------------------------------------------------------- create / open

    @classmethod
    def create(cls, name: str, base_model: str, base_weights_sha256: str | None,
               backend: str = "whisper", kind: str = "speaker", force: bool = False,
               base_profile: str | None = None, fill: Callable[[Profile], Any] | None = None) -> Profile:
        """Create profile ``name`` and return it.

        An existing profile is an error unless ``force``; with ``force`` it is replaced
        only once the new one is complete (built beside it and swapped in by rename).
        ``fill(profile)`` adds content (e.g. :meth:`import_enrollment`) to the new profile
        while it is still staged: if it raises, nothing is created or replaced.
        ``base_profile`` names the group profile whose adapter this one's training starts
        from (checked by the caller).
        """
        validate_profile_name(name)
        if kind not in KINDS:
            raise ProfileError(f"profile kind must be 'speaker' or 'group', not {kind!r}")
        if not isinstance(base_model, str) or not base_model.strip():
            raise ProfileError("a profile needs the name of its base model; give --model")
        root = profiles_root()
        make_root(root)
        recover(root, only=name)
        if (root / name).exists() and not force:
            raise ProfileError(f"profile '{name}' exists; use --force to replace it")
        stamp = iso_stamp(utc_now())
        info = ProfileInfo(name=name, kind=kind, base_model=base_model,
                           base_weights_sha256=base_weights_sha256, backend=backend,
                           created=stamp, updated=stamp, base_profile=base_profile)
        staged = None if fill is None else (lambda folder: fill(cls(folder, info)))
        with profile_lock(name, "replace it"):  # never swapped out under a run adapting it
            return cls(create_folder(root, info, force, staged), info)

    @classmethod
    def open(cls, name: str) -> Profile:
        """Open the existing profile ``name``; clean up what killed runs left inside it."""
        folder = existing_folder(name)
        info = read_info(folder, f"'{name}'")
        info.name = name  # the folder name wins (a profile folder may have been renamed)
        profile = cls(folder, info)
        profile._clean_leftovers()
        return profile

    def _clean_leftovers(self) -> None:
        """Remove partial adapters and half-written recordings of dead processes."""
        for folder, pattern in ((self.adapters_dir, adapters.PARTIAL),
                                (self.enrollment_dir, recordings.TEMP_RECORDING),
                                (self.unlabeled_dir, recordings.TEMP_RECORDING)):
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match and is_leftover(entry, int(match["pid"])):
                    log.info("removing leftover %s", entry)
                    remove_path(entry)
        self._remove_orphan_adapters()

    def _remove_orphan_adapters(self) -> None:
        """Remove adapter versions that ``profile.json`` never named: a run killed between
        renaming its adapter into place and committing ``profile.json``. Only while no
        other run holds the profile (one may be between those two steps right now)."""
        named = {str(entry.get("version")) for entry in self.info.history}
        if self.info.adapter:
            named.add(self.info.adapter.split("/")[-1])
        try:
            orphans = [entry for entry in self.adapters_dir.iterdir()
                       if adapters.VERSION.fullmatch(entry.name) and entry.name not in named]
        except OSError:
            return
        if not orphans:
            return
        with lock_if_free(self.name) as free:
            for entry in orphans if free else ():
                log.info("removing adapter %s that no profile.json named (an interrupted run)", entry)
                remove_path(entry)

    # ----------------------------------------------------------------- saving

    def save(self) -> None:
        """Write ``profile.json`` atomically (``updated`` set to now)."""
        self.info.updated = iso_stamp(utc_now())
        text = dumps_info(self.info)
        try:
            write_text_atomic(self.path / PROFILE_FILE, text)
        except OSError as error:
            raise ProfileError(f"saving profile.json of '{self.name}' failed "
                               f"({oserror_text(error)}); the previous one is intact") from error

    def record_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` (WERs and the like) into the profile and save it.

        They also go into the history entry of the current adapter.
        """
        self.info.metrics.update(metrics)
        current = self.info.adapter.split("/")[1] if self.info.adapter else None
        if current and self.info.history and self.info.history[-1].get("version") == current:
            entry = self.info.history[-1]
            entry["metrics"] = {**(entry.get("metrics") or {}), **metrics}
        self.save()

    # ----------------------------------------------------------------- enrollment

    def enrollment_utterances(self) -> list[Utterance]:
        """The enrollment utterances, oldest first (an empty list before any)."""
        return recordings.read_recordings(self.enrollment_manifest)

    def add_enrollment_utterance(self, audio: np.ndarray, text: str,
                                 utterance_id: str | None = None,
                                 speaker: str | None = None) -> Utterance:
        """Store one recording (16 kHz mono float) and its transcript; return it.

        The FLAC is written (under a temporary name, then renamed) before its manifest line
        is appended and fsynced, so an interrupted run loses at most this utterance. Ids
        run ``0001``, ``0002``, ... after the highest existing one. ``speaker`` defaults to
        the speaker of the existing utterances when they share one, else the profile's name.
        """
        audio = recordings.check_enrollment_take(audio, text, "the recording")
        existing = self.enrollment_utterances()
        if utterance_id is None:
            utterance_id = recordings.next_ids(existing, 1)[0]
        else:
            recordings.check_utterance_id(utterance_id)
            if any(u.id == utterance_id for u in existing):
                raise ProfileError(f"profile '{self.name}' already has an enrollment utterance "
                                   f"{utterance_id!r}; choose another id")
        if speaker is None:
            speakers = {u.speaker for u in existing}
            # one speaker so far (an imported or renamed profile keeps its label), else the name
            speaker = speakers.pop() if len(speakers) == 1 else self.name
        utterance = Utterance(id=utterance_id, audio=self.enrollment_dir / f"{utterance_id}.flac",
                              text=" ".join(text.split()), speaker=speaker,
                              duration=len(audio) / SAMPLE_RATE)
        record = {"id": utterance.id, "audio": f"{utterance_id}.flac", "text": utterance.text,
                  "speaker": utterance.speaker, "duration": round(utterance.duration, 3)}
        try:
            recordings.save_recording(self.enrollment_dir, self.enrollment_manifest, record, audio)
        except OSError as error:
            raise ProfileError(f"saving recording {utterance_id} of '{self.name}' failed "
                               f"({oserror_text(error)}); earlier recordings are intact") from error
        return utterance

    def import_enrollment(self, utterances: list[Utterance]) -> int:
        """Copy utterances into the enrollment, as 16 kHz mono FLAC; return how many.

        They are added after the existing ones, under new ids (the original id is kept as
        ``source_id``); text, speaker, domain and extra fields are kept. A speaker of
        ``"unknown"`` becomes the profile's name. The manifest is rewritten atomically once
        every file is in place, so a failure adds nothing. A profile whose enrollment then
        holds several speakers becomes a ``group`` profile.
        """
        utterances = list(utterances)
        if not utterances:
            return 0
        existing = self.enrollment_utterances()
        ids = recordings.next_ids(existing, len(utterances))
        added: list[Utterance] = []
        written: list[Path] = []
        try:
            recordings.check_enrollment_files(utterances)  # headers first: a 2-hour file is not read
            for new_id, source in zip(ids, utterances):
                audio = recordings.check_enrollment_take(load_audio(source.audio), source.text,
                                                         where=str(source.audio), require_text=False)
                path = recordings.write_flac(self.enrollment_dir, new_id, audio)
                written.append(path)
                faults.reached("enroll-take")
                speaker = self.name if source.speaker == UNKNOWN_SPEAKER else source.speaker
                extra = {key: value for key, value in source.extra.items()}
                extra.setdefault("source_id", source.id)
                added.append(Utterance(id=new_id, audio=path, text=source.text, speaker=speaker,
                                       domain=source.domain, duration=len(audio) / SAMPLE_RATE,
                                       extra=extra))
            write_manifest(existing + added, self.enrollment_manifest)
        except BaseException as error:
            for path in written:
                remove_path(path)
            if isinstance(error, OSError):
                raise ProfileError(f"importing recordings into '{self.name}' failed "
                                   f"({oserror_text(error)}); its enrollment is unchanged") from error
            raise
        if len({u.speaker for u in existing + added}) > 1 and self.info.kind != "group":
            self.info.kind = "group"
            self.save()
        return len(added)

    # ----------------------------------------------------------------- unlabeled audio

    def unlabeled_utterances(self) -> list[Utterance]:
        """Unlabeled audio kept for this profile (``text`` is None), oldest first."""
        return recordings.read_recordings(self.unlabeled_manifest)

    def add_unlabeled_audio(self, audio: np.ndarray, source: str | None = None) -> Utterance:
        """Keep a recording (16 kHz mono float) as unlabeled audio of this profile.

        Used by ``live --keep-audio`` and read back by domain-confusion adaptation. The FLAC
        is written and renamed into place before its manifest line is appended, as for
        enrollment, so an interrupted run loses at most this recording. ``source`` (e.g.
        ``"live"``) is stored in the manifest line.
        """
        audio = recordings.check_audio(audio)
        existing = self.unlabeled_utterances()
        utterance_id = f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{random_tag()}"
        speakers = {u.speaker for u in existing} | {u.speaker for u in self.enrollment_utterances()}
        speaker = speakers.pop() if len(speakers) == 1 else self.name
        utterance = Utterance(id=utterance_id, audio=self.unlabeled_dir / f"{utterance_id}.flac",
                              text=None, speaker=speaker, duration=len(audio) / SAMPLE_RATE)
        record = {"id": utterance.id, "audio": f"{utterance_id}.flac", "text": None,
                  "speaker": speaker, "duration": round(utterance.duration, 3)}
        if source:
            record["source"] = source
        try:
            recordings.save_recording(self.unlabeled_dir, self.unlabeled_manifest, record, audio)
        except OSError as error:
            raise ProfileError(f"keeping audio for '{self.name}' failed ({oserror_text(error)}); "
                               f"earlier audio is intact") from error
        return utterance

    # ----------------------------------------------------------------- adapters

    def commit_adapter(self, write: Callable[[Path], None], settings: dict[str, Any],
                       metrics: dict[str, Any]) -> Path:
        """Save a new adapter atomically and make it the profile's current one.

        ``write(folder)`` must fill ``folder`` with a PEFT adapter (``model.save_pretrained
        (folder)``). The folder is checked, renamed to ``adapters/<version>``, and only
        then named in ``profile.json`` (with ``settings``, ``metrics`` and a history entry).
        Older adapters but the previous one are deleted afterwards. If anything fails, the
        new files are removed, ``profile.json`` and the previous adapter are untouched, and
        :class:`ProfileError` is raised (``KeyboardInterrupt`` is re-raised as it is).
        Returns the new adapter folder.
        """
        folder, self.info = adapters.commit_adapter(self.path, self.info, write, settings, metrics)
        return folder


__all__ = ["Profile"]
