"""The public API: load a model, enroll a speaker, adapt, transcribe, compare, open a profile.

Each function is one call into the layers below, with the defaults the CLI uses, so that a
program gets what ``asr-adapt`` gives a person::

    import asr_adapt

    profile = asr_adapt.enroll("alice", "recordings/alice")   # wav + txt pairs, a manifest or a Kaldi dir
    report = asr_adapt.adapt_profile(profile)                  # trains the LoRA adapter, stores it
    print(asr_adapt.transcribe(["meeting.wav"], profile="alice")[0].text)

Everything here is re-exported by :mod:`asr_adapt` (imported lazily there, so that
``import asr_adapt`` stays fast and does not load torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.options import DomainOptions, TrainOptions
from asr_adapt.data.manifest import Utterance
from asr_adapt.data.importers import load_any
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.bundled import DEFAULT_MODEL
from asr_adapt.models.loading import resolve_model
from asr_adapt.models.options import TranscribeOptions
from asr_adapt.models.transcriber import Transcriber, Transcript
from asr_adapt.profiles import adaptation
from asr_adapt.profiles.adaptation import AdaptReport
from asr_adapt.profiles.engines import load_profile_on
from asr_adapt.profiles.personal import check_adapter_scale, require_adapter
from asr_adapt.profiles.from_recordings import create_profile, load_enrollment
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.stacking import use_base_profile
from asr_adapt.report.compare import Comparison
from asr_adapt.report.profile_compare import compare_profile

def load_model(name: str | None = None, device: str = "auto", dtype: str = "auto", engine: str | None = None) -> LoadedModel:
    """Load a model: a bundled name (default ``whisper-tiny.en``, offline), a local
    transformers or CTranslate2 folder, or a hub id (needs a network the first time).
    ``engine``: "torch" (decodes and trains) or "ct2" (CTranslate2, Whisper, decoding only)."""
    return resolve_model(name, device=device, dtype=dtype, engine=engine)


def open_profile(name: str) -> Profile:
    """Open the stored profile ``name`` (ProfileError, one line, when there is none)."""
    return Profile.open(name)


def enroll(name: str, recordings: str | Path, model: str = DEFAULT_MODEL, force: bool = False,
           base_profile: str | None = None) -> Profile:
    """Create profile ``name`` on ``model`` from existing recordings, without training.

    ``recordings`` is a folder of audio files with same-named ``.txt`` transcripts, a JSONL
    manifest, or a Kaldi data folder; the audio is checked and copied into the profile. An
    existing profile is only replaced with ``force``. Several speakers make a group profile.
    ``base_profile`` names a group profile on the same model whose adapter this profile's
    training starts from (recorded in the profile; refused when its model differs).
    """
    utterances = load_enrollment(recordings)
    return create_profile(name, model, utterances, force=force, base_profile=base_profile)


def adapt_profile(profile: Profile | str, lora: LoraSettings | None = None, options: TrainOptions | None = None,
                  domain: DomainOptions | None = None, unlabeled: Sequence[str | Path] = (),
                  device: str = "auto", progress: bool = False, base_profile: str | None = None) -> AdaptReport:
    """Train the profile's LoRA adapter on its enrollment and store it in the profile.

    ``lora`` and ``options`` default to the measured defaults (see docs/adaptation.md);
    ``domain`` with ``unlabeled`` audio adds domain confusion. ``base_profile`` (a group
    profile on the same model) is recorded in the profile and the adapter starts from the
    group's (the profile's recorded one is used when not given). The report says whether an
    adapter was kept (a held-out slice judges enrollments of 50 utterances or more; smaller
    ones train a fixed schedule).
    """
    profile = Profile.open(profile) if isinstance(profile, str) else profile
    if base_profile is not None:
        use_base_profile(profile, base_profile)
    return adaptation.adapt_profile(profile, lora=lora, options=options, device=device, progress=progress,
                                    domain=domain, unlabeled=unlabeled)


def transcribe(audio: Sequence[str | Path], profile: Profile | str | None = None, model: str | None = None,
               options: TranscribeOptions | None = None, device: str = "auto",
               adapter_scale: float | None = None, engine: str | None = None) -> list[Transcript]:
    """Transcribe audio files, with a profile's adapter (its deltas times ``adapter_scale``,
    default 1) or with a plain ``model``, on ``engine`` ("torch" or "ct2")."""
    if profile is not None:
        name = profile.name if isinstance(profile, Profile) else profile
        loaded, _ = load_profile_on(name, engine=engine, model=model, device=device, adapter_scale=adapter_scale)
    else:
        loaded = resolve_model(model, device=device, engine=engine)
    return list(Transcriber(loaded, options).transcribe_files(audio))


def compare(profile: Profile | str, test: str | Path | Sequence[Utterance],
            options: TranscribeOptions | None = None, device: str = "auto",
            adapter_scale: float | None = None, engine: str | None = None) -> Comparison:
    """WER of the profile's base model and of its adapter on held-out ``test`` utterances
    (a folder, manifest or Kaldi dir with transcripts, or Utterance objects), on ``engine``."""
    check_adapter_scale(adapter_scale)
    name = profile.name if isinstance(profile, Profile) else profile
    require_adapter(Profile.open(name))  # never adapted: refused before the model loads
    utterances = load_any(test, require_text=True) if isinstance(test, (str, Path)) else list(test)
    return compare_profile(name, utterances, options=options, device=device, adapter_scale=adapter_scale,
                           engine=engine)


__all__ = [
    "AdaptReport", "Comparison", "DomainOptions", "LoadedModel", "LoraSettings", "Profile", "TrainOptions",
    "TranscribeOptions", "Transcript", "adapt_profile", "compare", "enroll", "load_model", "open_profile", "transcribe",
]
