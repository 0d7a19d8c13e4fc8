"""Profiles written before the package moved into layers still load, and decode as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asr_adapt.audio.io import load_audio
from asr_adapt.models.transcriber import Transcriber
from asr_adapt.profiles.personal import load_profile_model
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import list_profiles

from conftest import read_samples_manifest

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_profile"


@pytest.fixture
def legacy_home(tmp_path, monkeypatch) -> Path:
    """A copy of the old release's profile folder as the user's asr-adapt home."""
    shutil.copytree(LEGACY / "profiles", tmp_path / "profiles")
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path))
    return tmp_path


def test_a_profile_from_the_flat_release_opens_with_its_settings_and_enrollment(legacy_home):
    profile = Profile.open("legacy-speaker")
    info = profile.info
    assert info.format_version == 1 and info.damaged is None
    assert (info.base_model, info.kind, info.backend) == ("whisper-tiny.en", "speaker", "whisper")
    assert info.settings["lora"]["rank"] == 2 and info.settings["lora"]["where"] == "encoder"
    assert info.metrics["heldout_wer_after"] < info.metrics["heldout_wer_before"]
    assert len(profile.enrollment_utterances()) == 12
    assert [p.name for p in list_profiles()] == ["legacy-speaker"]


@pytest.mark.slow
def test_a_profile_from_the_flat_release_transcribes_as_it_did(legacy_home):
    expected = json.loads((LEGACY / "expected.json").read_text())
    by_name = {Path(u.audio).name: u for u in read_samples_manifest("test")}
    audios = [load_audio(by_name[name].audio) for name in expected["files"]]
    loaded, profile = load_profile_model("legacy-speaker", device="cpu")
    assert loaded.info.get("profile") == "legacy-speaker"
    assert Transcriber(loaded).transcribe_arrays(audios) == expected["texts"]
