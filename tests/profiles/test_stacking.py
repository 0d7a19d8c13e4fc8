"""Group to personal: --base-profile is checked, recorded, and the adapter starts from the group's."""

from __future__ import annotations

import pytest
import soundfile as sf
from safetensors.torch import load_file

import asr_adapt
from asr_adapt.data.manifest import Utterance, write_manifest
from asr_adapt.profiles.info import ProfileError
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.stacking import open_base_profile, use_base_profile
from cli_runner import assert_one_line_error, run_cli
from conftest import sine
from fake_profiles import make_profile


def _manifest(tmp_path, count=6, speaker="alice"):
    utterances = []
    for i in range(count):
        path = tmp_path / f"{speaker}{i}.wav"
        sf.write(path, sine(1.0 + 0.1 * i, freq=180 + 40 * i), 16000)
        utterances.append(Utterance(id=f"{speaker}{i}", audio=path, text=f"WORD NUMBER {i}", speaker=speaker))
    return write_manifest(utterances, tmp_path / f"{speaker}.jsonl")


def test_a_base_profile_must_exist_fit_the_model_and_hold_an_adapter(home, tiny_whisper_dir):
    make_profile("team", tiny_whisper_dir)
    make_profile("empty", tiny_whisper_dir, with_adapter=False)
    model = str(tiny_whisper_dir)
    assert open_base_profile("team", model, None, "alice").name == "team"
    with pytest.raises(ProfileError, match="cannot start from itself"):
        open_base_profile("team", model, None, "team")
    with pytest.raises(ProfileError, match="no profile named 'nobody'|'nobody'"):
        open_base_profile("nobody", model, None, "alice")
    with pytest.raises(ProfileError, match=r"was made on '.*', not 'whisper-base'; .*--model"):
        open_base_profile("team", "whisper-base", None, "alice")
    with pytest.raises(ProfileError, match="no adapter to start from; adapt it first: asr-adapt adapt empty"):
        open_base_profile("empty", model, None, "alice")
    with pytest.raises(ProfileError, match="invalid|name"):
        open_base_profile("../team", model, None, "alice")


def test_other_weights_of_the_same_model_name_are_refused(home, tiny_whisper_dir):
    team = make_profile("team", tiny_whisper_dir)
    team.info.base_weights_sha256 = "a" * 64
    team.save()
    with pytest.raises(ProfileError, match="other weights"):
        open_base_profile("team", str(tiny_whisper_dir), "b" * 64, "alice")


def test_enroll_records_the_base_profile_and_refuses_another_model_before_writing(capsys, home, tmp_path,
                                                                                  tiny_whisper_dir):
    make_profile("team", tiny_whisper_dir)
    manifest = _manifest(tmp_path)
    code, _, err = run_cli(capsys, "enroll", "alice", "--from", manifest, "--base-profile", "team", "--no-train")
    # The bundled model is the default: the group's tiny model differs.
    assert_one_line_error(code, err, "base profile 'team' was made on")
    assert not (home / "alice").exists()
    code, _, err = run_cli(capsys, "enroll", "alice", "--from", manifest, "--model", tiny_whisper_dir,
                           "--base-profile", "team", "--no-train")
    assert code == 0, err
    assert Profile.open("alice").info.base_profile == "team"
    code, out, _ = run_cli(capsys, "profiles", "show", "alice")
    assert code == 0 and '"base_profile": "team"' in out


def test_adapting_starts_from_the_group_adapter_and_records_it(capsys, home, tmp_path, tiny_whisper_dir):
    team = make_profile("team", tiny_whisper_dir)  # rank 2, encoder and decoder
    group = load_file(str(team.adapter_dir / "adapter_model.safetensors"))
    manifest = _manifest(tmp_path)
    run_cli(capsys, "enroll", "alice", "--from", manifest, "--model", tiny_whisper_dir, "--base-profile", "team",
            "--no-train")
    code, _, err = run_cli(capsys, "adapt", "alice", "--epochs", "1", "--pack-seconds", "0")
    assert code == 0, err
    alice = Profile.open("alice")
    assert alice.info.settings["base_profile"] == {"name": "team", "adapter_version": team.adapter_dir.name}
    assert alice.info.metrics["keep_share"] == 0.5  # halved toward the base model, the group's part too
    mine = load_file(str(alice.adapter_dir / "adapter_model.safetensors"))
    # One speaker alone would get an encoder-only rank-16 adapter: this is the group's layout.
    assert set(mine) == set(group) and all(mine[k].shape == group[k].shape for k in group)
    assert any("decoder" in k for k in mine)
    code, out, _ = run_cli(capsys, "profiles", "show", "alice")
    assert f"started from group profile: team (adapter {team.adapter_dir.name})" in out
    # --no-base-profile: from scratch again (the default placement for one voice).
    code, _, err = run_cli(capsys, "adapt", "alice", "--epochs", "1", "--pack-seconds", "0", "--no-base-profile")
    assert code == 0, err
    alice = Profile.open("alice")
    assert alice.info.base_profile is None and "base_profile" not in alice.info.settings
    fresh = load_file(str(alice.adapter_dir / "adapter_model.safetensors"))
    assert not any("decoder" in k for k in fresh)


def test_the_public_api_takes_a_base_profile(home, tmp_path, tiny_whisper_dir):
    make_profile("team", tiny_whisper_dir)
    make_profile("other", tiny_whisper_dir)
    profile = asr_adapt.enroll("alice", _manifest(tmp_path), model=str(tiny_whisper_dir), base_profile="team")
    assert profile.info.base_profile == "team" and Profile.open("alice").info.base_profile == "team"
    with pytest.raises(ProfileError, match="no adapter to start from|cannot start from itself"):
        use_base_profile(Profile.open("alice"), "alice")
    assert Profile.open("alice").info.base_profile == "team"  # a refused change changes nothing
    use_base_profile(Profile.open("alice"), "other")
    assert Profile.open("alice").info.base_profile == "other"


def test_a_bad_base_profile_stops_a_microphone_enrollment_before_anything(capsys, home, tmp_path, tiny_whisper_dir):
    make_profile("empty", tiny_whisper_dir, with_adapter=False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one two three\n")
    for group, pattern in (("nobody", "nobody"), ("empty", "no adapter to start from")):
        code, _, err = run_cli(capsys, "enroll", "alice", "--prompts", prompts, "--base-profile", group,
                               "--model", tiny_whisper_dir, "--no-train")
        assert_one_line_error(code, err, pattern)
        assert not (home / "alice").exists()
