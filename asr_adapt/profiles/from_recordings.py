"""A profile from existing recordings: read and check them, create the profile on its model.

What ``asr-adapt enroll NAME --from DIR`` and :func:`asr_adapt.enroll` share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from asr_adapt.adapt.options import TrainingError, TrainOptions
from asr_adapt.data.importers import load_any
from asr_adapt.data.manifest import Utterance
from asr_adapt.models.loading import resolve_model
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.recordings import check_enrollment_files
from asr_adapt.profiles.stacking import open_base_profile

#: Fewer utterances than this are not enough to adapt to (TrainOptions' minimum; about 15 s
#: of speech, best with a group profile to start from; a minute or more works better).
MIN_ENROLLMENT_UTTERANCES = TrainOptions().min_utterances


def load_enrollment(source: str | Path) -> list[Utterance]:
    """The transcribed utterances of ``source`` (a folder of audio + .txt, a Kaldi data dir or a
    JSONL manifest); TrainingError when there are too few to enroll."""
    utterances = load_any(source, require_text=True)
    if len(utterances) < MIN_ENROLLMENT_UTTERANCES:
        raise TrainingError(f"{source} holds {len(utterances)} utterances; enrollment needs at least "
                            f"{MIN_ENROLLMENT_UTTERANCES} (a minute of speech or more works best)")
    check_enrollment_files(utterances)
    return utterances


def create_profile(name: str, model: str, utterances: Sequence[Utterance], force: bool = False,
                   base_profile: str | None = None) -> Profile:
    """Create profile ``name`` on ``model`` holding ``utterances`` as its enrollment (a group
    when several speakers).

    The recordings are checked and copied while the new profile is still staged: a bad file
    (or Ctrl-C, or a full disk) leaves no profile behind, and with ``force`` the existing
    one untouched.

    The model is loaded on the CPU only to record which weights the profile is for, and to
    refuse text its vocabulary cannot spell now rather than after the import.
    ``base_profile`` names a group profile on the same weights whose adapter this profile's
    training starts from (:mod:`asr_adapt.profiles.stacking`); checked before anything is
    created."""
    loaded = resolve_model(model, device="cpu")
    if base_profile is not None:
        open_base_profile(base_profile, model, loaded.weights_sha256, name)
    loaded.engine.check_transcripts(loaded, [(u.id, u.text) for u in utterances if u.text])
    speakers = {u.speaker for u in utterances}
    return Profile.create(name, base_model=model, base_weights_sha256=loaded.weights_sha256,
                          backend=loaded.backend, kind="group" if len(speakers) > 1 else "speaker", force=force,
                          base_profile=base_profile, fill=lambda profile: profile.import_enrollment(list(utterances)))


__all__ = ["MIN_ENROLLMENT_UTTERANCES", "create_profile", "load_enrollment"]
