"""Profiles: names, creation, enrollment, atomic adapter commits, export/import, removal."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fake_profiles import add_member, fake_adapter, tiny_en_sha, write_archive
from asr_adapt.profiles import adapters, store
from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.data.manifest import Utterance
from asr_adapt.profiles.archive import export_profile, import_profile
from asr_adapt.profiles.info import ProfileError, ProfileInfo, profiles_root, validate_profile_name
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import list_profiles, remove_profile
from conftest import REPO, sine


@pytest.fixture
def alice(home) -> Profile:
    return Profile.create("alice", "whisper-tiny.en", tiny_en_sha())


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


# --------------------------------------------------------------------------- names, root


@pytest.mark.parametrize("name", ["alice", "A1", "bob.smith", "x_y-z", "9", "a" * 64])
def test_good_names_pass(name):
    assert validate_profile_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", ".", ".hidden", "x\x07", "",
                                  "a" * 65, "a..b", "-x", "_x", "a b", "café", "x\n"])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(ProfileError) as caught:
        validate_profile_name(name)
    message = str(caught.value)
    assert repr(name) in message
    assert "letters, digits" in message
    assert "\n" not in message


def test_root_follows_asr_adapt_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path))
    assert profiles_root() == tmp_path / "profiles"
    monkeypatch.delenv("ASR_ADAPT_HOME")
    import platformdirs

    assert profiles_root() == Path(platformdirs.user_data_dir("asr-adapt")).absolute() / "profiles"


# --------------------------------------------------------------------------- create, open


def test_create_writes_the_layout_and_profile_json(alice, home):
    assert alice.path == home / "alice"
    for folder in ("enrollment", "adapters", "reports"):
        assert (alice.path / folder).is_dir()
    assert not alice.unlabeled_dir.exists()  # created when something needs it
    data = json.loads((alice.path / "profile.json").read_text())
    assert data["format_version"] == 1 and data["name"] == "alice" and data["kind"] == "speaker"
    assert data["base_model"] == "whisper-tiny.en" and data["base_weights_sha256"] == tiny_en_sha()
    assert data["backend"] == "whisper" and data["adapter"] is None
    assert data["created"].endswith("Z") and data["settings"] == {} and data["history"] == []
    assert alice.adapter_dir is None
    opened = Profile.open("alice")
    assert opened.info == alice.info
    assert leftovers(home) == []


def test_create_refuses_an_existing_profile_unless_forced(alice, home):
    alice.add_enrollment_utterance(sine(0.5), "hello")
    with pytest.raises(ProfileError, match=r"^profile 'alice' exists; use --force to replace it$"):
        Profile.create("alice", "whisper-base", None)
    assert len(Profile.open("alice").enrollment_utterances()) == 1
    replaced = Profile.create("alice", "whisper-base", None, kind="group", force=True)
    assert replaced.info.base_model == "whisper-base" and replaced.info.kind == "group"
    assert Profile.open("alice").enrollment_utterances() == []
    assert leftovers(home) == []


def test_force_replace_without_atomic_exchange(alice, home, monkeypatch):
    monkeypatch.setattr(store, "rename_exchange", lambda a, b: False)
    Profile.create("alice", "whisper-base", None, force=True)
    assert Profile.open("alice").info.base_model == "whisper-base"
    assert leftovers(home) == []


def test_create_checks_kind_and_model(home):
    with pytest.raises(ProfileError, match="'speaker' or 'group'"):
        Profile.create("x", "whisper-tiny.en", None, kind="family")
    with pytest.raises(ProfileError, match="base model"):
        Profile.create("x", " ", None)


def test_open_missing_says_how_to_make_one(home):
    with pytest.raises(ProfileError, match=r"no profiles yet .*`asr-adapt enroll bob`"):
        Profile.open("bob")
    Profile.create("carol", "whisper-tiny.en", None)
    Profile.create("alice", "whisper-tiny.en", None)
    with pytest.raises(ProfileError, match=r"^no profile 'bob'; existing profiles: alice, carol$"):
        Profile.open("bob")
    with pytest.raises(ProfileError, match="invalid profile name"):
        Profile.open("../alice")


def test_open_a_damaged_profile_says_so(alice):
    (alice.path / "profile.json").write_text("{not json")
    with pytest.raises(ProfileError, match=r"profile.json of 'alice' is damaged: not valid JSON"):
        Profile.open("alice")
    (alice.path / "profile.json").unlink()
    with pytest.raises(ProfileError, match="profile.json of 'alice' is missing"):
        Profile.open("alice")


def test_interrupted_replace_is_finished_on_next_open(alice, home, dead_pid):
    # A run killed between "move the old profile aside" and "move the new one in".
    new = home / f".alice.new-{dead_pid}-00ff"
    (new / "adapters").mkdir(parents=True)
    info = ProfileInfo.from_dict({**alice.info.to_dict(), "base_model": "whisper-base"})
    (new / "profile.json").write_text(json.dumps(info.to_dict()))
    os.rename(alice.path, home / f".alice.old-{dead_pid}-00ff")
    assert Profile.open("alice").info.base_model == "whisper-base"
    assert leftovers(home) == []


def test_interrupted_replace_before_commit_restores_the_old_one(alice, home, dead_pid):
    (home / f".alice.new-{dead_pid}-00ff" / "enrollment").mkdir(parents=True)  # no profile.json
    os.rename(alice.path, home / f".alice.old-{dead_pid}-00ff")
    assert Profile.open("alice").info == alice.info
    assert leftovers(home) == []


def test_interrupted_removal_never_comes_back(alice, home, dead_pid):
    os.rename(alice.path, home / f".alice.trash-{dead_pid}-00ff")
    with pytest.raises(ProfileError, match="no profile 'alice'"):
        Profile.open("alice")
    assert list_profiles() == [] and leftovers(home) == []


def test_staging_of_a_live_process_is_left_alone(alice, home):
    live = home / f".bob.new-{os.getppid()}-00ff"
    live.mkdir()
    assert list_profiles()[0].name == "alice"
    assert live.is_dir()


# --------------------------------------------------------------------------- ProfileInfo


def test_profile_info_round_trips(alice):
    assert ProfileInfo.from_dict(alice.info.to_dict()) == alice.info
    assert "damaged" not in alice.info.to_dict()


@pytest.mark.parametrize("change, problem", [
    ({"format_version": "1"}, "format_version"),
    ({"kind": "crowd"}, "'kind'"),
    ({"name": ""}, "'name'"),
    ({"settings": []}, "'settings'"),
    ({"history": [1]}, "'history'"),
    ({"adapter": "/etc"}, "'adapter'"),
    ({"adapter": "adapters/../../x"}, "'adapter'"),
])
def test_profile_info_refuses_garbage(alice, change, problem):
    data = {**alice.info.to_dict(), **change}
    with pytest.raises(ProfileError, match=f"profile.json of x is damaged: .*{problem}"):
        ProfileInfo.from_dict(data, "x")
    without = alice.info.to_dict()
    del without["base_model"]
    with pytest.raises(ProfileError, match="'base_model' is missing"):
        ProfileInfo.from_dict(without, "x")
    with pytest.raises(ProfileError, match="expected a JSON object"):
        ProfileInfo.from_dict([], "x")


def test_profile_info_from_a_newer_version_asks_for_an_upgrade(alice):
    with pytest.raises(ProfileError, match="newer than this asr-adapt reads.*upgrade"):
        ProfileInfo.from_dict({**alice.info.to_dict(), "format_version": 2}, "x")


def test_save_and_record_metrics(alice):
    alice.info.settings["note"] = "x"
    alice.record_metrics({"wer": np.float32(0.25)})
    info = Profile.open("alice").info
    assert info.metrics == {"wer": 0.25} and info.settings == {"note": "x"}


# --------------------------------------------------------------------------- enrollment


def test_enrollment_appends_and_resumes_numbering(alice):
    assert alice.enrollment_utterances() == []
    first = alice.add_enrollment_utterance(sine(1.0), "Hello  there.")
    second = alice.add_enrollment_utterance(sine(0.5), "Second one.")
    assert (first.id, second.id) == ("0001", "0002")
    reopened = Profile.open("alice")
    third = reopened.add_enrollment_utterance(sine(0.25), "third")
    assert third.id == "0003" and third.speaker == "alice"
    utterances = reopened.enrollment_utterances()
    assert [(u.id, u.text, u.duration) for u in utterances] == [
        ("0001", "Hello there.", 1.0), ("0002", "Second one.", 0.5), ("0003", "third", 0.25)]
    info = sf.info(str(utterances[0].audio))
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    data, _ = sf.read(str(utterances[0].audio), dtype="float32")
    assert np.abs(data - sine(1.0)).max() < 1e-3
    lines = reopened.enrollment_manifest.read_text().splitlines()
    assert json.loads(lines[0])["audio"] == "0001.flac"


def test_enrollment_with_own_ids_and_checks(alice):
    assert alice.add_enrollment_utterance(sine(0.2), "a", utterance_id="intro").id == "intro"
    with pytest.raises(ProfileError, match="already has an enrollment utterance 'intro'"):
        alice.add_enrollment_utterance(sine(0.2), "a", utterance_id="intro")
    with pytest.raises(ProfileError, match="invalid utterance id"):
        alice.add_enrollment_utterance(sine(0.2), "a", utterance_id="../x")
    with pytest.raises(ProfileError, match="transcript"):
        alice.add_enrollment_utterance(sine(0.2), "  ")
    with pytest.raises(AsrAdaptError, match="no audio"):
        alice.add_enrollment_utterance(np.zeros(0, np.float32), "a")
    with pytest.raises(ValueError, match="mono"):
        alice.add_enrollment_utterance(sine(0.2, channels=2), "a")
    assert alice.add_enrollment_utterance(sine(0.2), "next").id == "0001"


@pytest.mark.parametrize("interrupt", [OSError(errno.ENOSPC, "No space left on device"),
                                       KeyboardInterrupt()])
def test_interrupted_recording_leaves_no_manifest_line(alice, monkeypatch, interrupt):
    alice.add_enrollment_utterance(sine(0.5), "kept")
    before = alice.enrollment_manifest.read_bytes()
    real_write = sf.write

    def write_half_then_fail(handle, *args, **kwargs):
        handle.write(b"fLaC\x00\x00")
        raise interrupt

    monkeypatch.setattr(sf, "write", write_half_then_fail)
    expected = ProfileError if isinstance(interrupt, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        alice.add_enrollment_utterance(sine(0.5), "lost")
    if expected is ProfileError:
        assert str(caught.value) == ("saving recording 0002 of 'alice' failed (No space left "
                                     "on device); earlier recordings are intact")
    assert alice.enrollment_manifest.read_bytes() == before
    assert sorted(p.name for p in alice.enrollment_dir.iterdir()) == ["0001.flac",
                                                                      "manifest.jsonl"]
    monkeypatch.setattr(sf, "write", real_write)
    assert alice.add_enrollment_utterance(sine(0.5), "again").id == "0002"


def test_a_line_cut_short_by_a_crash_is_dropped(alice):
    alice.add_enrollment_utterance(sine(0.5), "kept")
    with open(alice.enrollment_manifest, "a") as handle:
        handle.write('{"id": "0002", "audio": "00')
    assert [u.id for u in alice.enrollment_utterances()] == ["0001"]
    assert alice.add_enrollment_utterance(sine(0.5), "next").id == "0002"
    assert len(alice.enrollment_utterances()) == 2


def test_leftover_temporary_recording_is_cleaned(alice, dead_pid):
    stale = alice.enrollment_dir / f".0001.tmp-{dead_pid}.flac"
    stale.write_bytes(b"half")
    Profile.open("alice")
    assert not stale.exists()


def test_import_enrollment_converts_to_16k_mono_flac(alice, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    sf.write(str(source / "a.wav"), sine(1.0, rate=44100, channels=2), 44100)
    sf.write(str(source / "b.flac"), sine(0.5), 16000)
    alice.add_enrollment_utterance(sine(0.3), "existing")
    utterances = [
        Utterance(id="talk/a", audio=source / "a.wav", text="Hello.", speaker="unknown",
                  domain="phone", extra={"age": 31}),
        Utterance(id="talk/b", audio=source / "b.flac", text=None, speaker="unknown"),
    ]
    assert alice.import_enrollment(utterances) == 2
    got = Profile.open("alice").enrollment_utterances()
    assert [u.id for u in got] == ["0001", "0002", "0003"]
    a = got[1]
    assert (a.text, a.speaker, a.domain, a.extra) == ("Hello.", "alice", "phone",
                                                      {"age": 31, "source_id": "talk/a"})
    assert a.audio == alice.enrollment_dir / "0002.flac"
    info = sf.info(str(a.audio))
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert abs(a.duration - 1.0) < 1e-3 and got[2].text is None
    assert Profile.open("alice").info.kind == "speaker"
    assert alice.import_enrollment([]) == 0


def test_import_enrollment_of_several_speakers_makes_a_group(alice, tmp_path):
    sf.write(str(tmp_path / "x.wav"), sine(0.5), 16000)
    utterances = [Utterance(id=s, audio=tmp_path / "x.wav", text="hi", speaker=s)
                  for s in ("bob", "carol")]
    assert alice.import_enrollment(utterances) == 2
    assert Profile.open("alice").info.kind == "group"


def test_failed_import_enrollment_adds_nothing(alice, tmp_path):
    alice.add_enrollment_utterance(sine(0.3), "existing")
    before = alice.enrollment_manifest.read_bytes()
    sf.write(str(tmp_path / "ok.wav"), sine(0.5), 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    utterances = [Utterance(id="ok", audio=tmp_path / "ok.wav", text="a"),
                  Utterance(id="bad", audio=tmp_path / "bad.wav", text="b")]
    with pytest.raises(AsrAdaptError, match="bad.wav: not a readable audio file"):
        alice.import_enrollment(utterances)
    assert alice.enrollment_manifest.read_bytes() == before
    assert sorted(p.name for p in alice.enrollment_dir.iterdir()) == ["0001.flac",
                                                                      "manifest.jsonl"]


# --------------------------------------------------------------------------- adapters


def test_commit_adapter_records_history_and_keeps_two(alice):
    first = alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    assert first == alice.adapters_dir / first.name and first.is_dir()
    assert alice.info.adapter == f"adapters/{first.name}"
    second = alice.commit_adapter(lambda d: fake_adapter(d, value=1.0), {"r": 4}, {"wer": 0.2})
    third = alice.commit_adapter(lambda d: fake_adapter(d, value=2.0), {"r": 8}, {"wer": 0.1})
    assert len({first.name, second.name, third.name}) == 3
    reopened = Profile.open("alice")
    assert reopened.adapter_dir == third
    assert reopened.previous_adapter_dir == second
    assert reopened.info.settings == {"r": 8} and reopened.info.metrics == {"wer": 0.1}
    assert [h["version"] for h in reopened.info.history] == [first.name, second.name, third.name]
    assert [h["metrics"] for h in reopened.info.history] == [{"wer": 0.3}, {"wer": 0.2},
                                                             {"wer": 0.1}]
    assert sorted(p.name for p in alice.adapters_dir.iterdir()) == sorted([second.name,
                                                                          third.name])
    reopened.record_metrics({"wer_after": 0.05})
    assert Profile.open("alice").info.history[-1]["metrics"] == {"wer": 0.1, "wer_after": 0.05}


def previous_state(profile: Profile) -> tuple[bytes, dict]:
    return (profile.path / "profile.json").read_bytes(), tree_digest(profile.adapters_dir)


def test_disk_full_during_commit_leaves_everything_as_it_was(alice):
    alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    before = previous_state(alice)

    def disk_full(folder):
        (folder / "adapter_config.json").write_text("{}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ProfileError) as caught:
        alice.commit_adapter(disk_full, {"r": 4}, {})
    assert str(caught.value) == ("saving the adapter of 'alice' failed (No space left on device);"
                                 " the previous adapter is intact")
    assert previous_state(alice) == before
    assert Profile.open("alice").info == alice.info


def test_disk_full_writing_profile_json_removes_the_new_adapter(alice, monkeypatch):
    alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    before = previous_state(alice)

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(adapters, "write_text_atomic", full)
    with pytest.raises(ProfileError, match=r"No space left on device\); the previous adapter"):
        alice.commit_adapter(fake_adapter, {"r": 4}, {})
    assert previous_state(alice) == before


@pytest.mark.parametrize("crash", [RuntimeError("trainer bug"), KeyboardInterrupt()])
def test_a_write_that_crashes_halfway_is_rolled_back(alice, crash):
    alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    before = previous_state(alice)

    def crash_after_one_file(folder):
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        raise crash

    expected = ProfileError if isinstance(crash, Exception) else KeyboardInterrupt
    with pytest.raises(expected, match="RuntimeError: trainer bug" if expected is ProfileError
                       else None):
        alice.commit_adapter(crash_after_one_file, {}, {})
    assert previous_state(alice) == before


def test_a_write_that_forgets_the_weights_is_refused(alice):
    with pytest.raises(ProfileError, match="wrote no adapter_model.safetensors"):
        alice.commit_adapter(lambda d: (d / "adapter_config.json").write_text("{}"), {}, {})
    assert list(alice.adapters_dir.iterdir()) == [] and alice.info.adapter is None


def test_killed_commit_keeps_the_old_adapter_and_is_cleaned_up(alice, home, tmp_path):
    old = alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    before = previous_state(alice)
    marker = tmp_path / "writing"
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from asr_adapt.profiles.profile import Profile

        def write(folder):
            (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
            Path(sys.argv[1]).write_text(str(folder))
            time.sleep(120)

        Profile.open("alice").commit_adapter(write, {"r": 4}, {})
    """)
    env = {**os.environ, "ASR_ADAPT_HOME": str(home.parent), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the child never reached its write function"
    finally:
        proc.kill()
        proc.wait()
    partial = Path(marker.read_text())
    assert partial.is_dir() and partial.name.endswith(f".partial-{proc.pid}")
    assert previous_state(alice)[0] == before[0]
    reopened = Profile.open("alice")
    assert reopened.adapter_dir == old
    assert not partial.exists()
    assert previous_state(reopened) == before


def test_partial_adapter_of_a_live_process_is_kept(alice):
    live = alice.adapters_dir / f"20260101T000000Z.partial-{os.getppid()}"
    live.mkdir()
    Profile.open("alice")
    assert live.is_dir()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_real_peft_lora_adapter_round_trips(alice):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=64, num_mel_bins=8, d_model=8, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
        decoder_ffn_dim=16, max_source_positions=16, max_target_positions=16,
        decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=0)

    def base():
        torch.manual_seed(0)
        return WhisperForConditionalGeneration(config)

    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)  # random B, so that a wrong load shows
    trained = get_peft_model(base(), lora)
    folder = alice.commit_adapter(trained.save_pretrained, {"r": 2}, {"wer": 0.1})
    loaded = PeftModel.from_pretrained(base(), Profile.open("alice").adapter_dir)
    expected = {k: v for k, v in trained.state_dict().items() if "lora_" in k}
    got = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert expected and expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert not any(".partial-" in p.name for p in folder.parent.iterdir())


# --------------------------------------------------------------------------- list, remove


def test_list_profiles_flags_damaged_ones(home):
    Profile.create("carol", "whisper-tiny.en", None)
    Profile.create("bob", "whisper-base", None)
    (Profile.create("dave", "whisper-tiny.en", None).path / "profile.json").write_text("[1, 2")
    (home / "eve").mkdir()  # a folder without profile.json
    (home / "not a profile").mkdir()  # not a valid name: not listed
    (home / "stray.txt").write_text("x")
    infos = list_profiles()
    assert [i.name for i in infos] == ["bob", "carol", "dave", "eve"]
    assert [bool(i.damaged) for i in infos] == [False, False, True, True]
    assert "not valid JSON" in infos[2].damaged and "missing" in infos[3].damaged
    assert infos[0].base_model == "whisper-base"


def test_list_profiles_when_there_are_none(home):
    assert list_profiles() == []


def test_remove_profile(alice, home):
    alice.add_enrollment_utterance(sine(0.2), "bye")
    alice.commit_adapter(fake_adapter, {}, {})
    remove_profile("alice")
    assert not (home / "alice").exists() and leftovers(home) == []
    with pytest.raises(ProfileError, match="no profile 'alice'"):
        remove_profile("alice")
    (home / "broken").mkdir()
    remove_profile("broken")  # damaged profiles can be removed too
    assert list(home.iterdir()) == []


# --------------------------------------------------------------------------- export, import


@pytest.fixture
def trained(alice) -> Profile:
    alice.add_enrollment_utterance(sine(0.5), "one")
    alice.add_enrollment_utterance(sine(0.25), "two")
    alice.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.3})
    alice.commit_adapter(lambda d: fake_adapter(d, value=1.0), {"r": 2}, {"wer": 0.2})
    return alice


def test_export_import_round_trip_with_audio(trained, tmp_path):
    archive = export_profile("alice", tmp_path / "out" / "alice.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(m.uname == "" and m.uid == 0 for m in tar.getmembers())
    version = trained.adapter_dir.name
    assert {n.split("/")[0] for n in names} == {"alice"}
    assert "alice/profile.json" in names and "alice/enrollment/0002.flac" in names
    assert f"alice/adapters/{version}/adapter_model.safetensors" in names
    assert not any(f"adapters/{trained.previous_adapter_dir.name}/" in n for n in names)
    assert [p.name for p in archive.parent.iterdir()] == ["alice.tar.gz"]

    copy = import_profile(archive, name="alice2")
    assert copy.name == "alice2" and copy.info.name == "alice2"
    assert copy.info.adapter == trained.info.adapter and copy.info.history == trained.info.history
    assert tree_digest(copy.adapter_dir) == tree_digest(trained.adapter_dir)
    assert [(u.id, u.text) for u in copy.enrollment_utterances()] == [("0001", "one"),
                                                                     ("0002", "two")]
    assert copy.add_enrollment_utterance(sine(0.1), "three").speaker == "alice"

    remove_profile("alice")
    back = import_profile(archive)
    assert back.name == "alice" and len(back.enrollment_utterances()) == 2
    assert leftovers(profiles_root()) == []


def test_export_without_audio(trained, tmp_path):
    archive = export_profile("alice", tmp_path, include_audio=False)
    assert archive == tmp_path / "alice.tar.gz"
    with tarfile.open(archive) as tar:
        assert not any("enrollment" in n for n in tar.getnames())
    copy = import_profile(archive, name="bob")
    assert copy.enrollment_utterances() == [] and copy.adapter_dir.is_dir()
    assert copy.enrollment_dir.is_dir() and copy.reports_dir.is_dir()


def test_import_refuses_an_existing_name_unless_forced(trained, tmp_path):
    archive = export_profile("alice", tmp_path / "a.tar.gz")
    Profile.create("bob", "whisper-base", None)
    with pytest.raises(ProfileError, match="^profile 'alice' exists; use --force"):
        import_profile(archive)
    with pytest.raises(ProfileError, match="^profile 'bob' exists"):
        import_profile(archive, name="bob")
    assert Profile.open("bob").info.base_model == "whisper-base"
    replaced = import_profile(archive, name="bob", force=True)
    assert replaced.info.base_model == "whisper-tiny.en" and replaced.name == "bob"
    with pytest.raises(ProfileError, match="invalid profile name"):
        import_profile(archive, name="../x")
    assert leftovers(profiles_root()) == []


def lora_files(folder: str, peft_type: str = "LORA") -> dict[str, bytes]:
    from safetensors.numpy import save

    return {f"{folder}/adapter_config.json": json.dumps({"peft_type": peft_type}).encode(),
            f"{folder}/adapter_model.safetensors": save({"base_model.model.layer.lora_A.weight": np.zeros(2, np.float32)})}


def profile_json(adapter: str | None = "adapters/v1") -> bytes:
    return json.dumps({"format_version": 1, "name": "x", "kind": "speaker",
                       "base_model": "whisper-tiny.en", "backend": "whisper",
                       "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
                       "adapter": adapter}).encode()


def good_files(top: str = "x") -> dict[str, bytes]:
    return {f"{top}/profile.json": profile_json(), **lora_files(f"{top}/adapters/v1")}


def test_a_hand_made_archive_is_accepted(home, tmp_path):
    profile = import_profile(write_archive(tmp_path / "ok.tar.gz", good_files()))
    assert profile.name == "x" and profile.adapter_dir == home / "x" / "adapters" / "v1"


def _symlink(tar):
    add_member(tar, "x/link", type=tarfile.SYMTYPE, linkname="/etc/passwd")


def _hardlink(tar):
    add_member(tar, "x/hard", type=tarfile.LNKTYPE, linkname="x/profile.json")


def _device(tar):
    add_member(tar, "x/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)


@pytest.mark.parametrize("files, extra, problem", [
    (good_files(), lambda tar: add_member(tar, "x/../../evil", b"x"), "leaves the archive"),
    (good_files(), lambda tar: add_member(tar, "/tmp/evil", b"x"), "absolute path"),
    (good_files(), _symlink, "is a link"),
    (good_files(), _hardlink, "is a link"),
    (good_files(), _device, "device or special file"),
    ({**good_files("x"), **good_files("y")}, None, "expected one top-level folder, found 2"),
    ({**good_files(), "stray.txt": b"x"}, None, "outside a profile folder"),
    (lora_files("x/adapters/v1"), None, "no profile.json"),
    ({**good_files(), "x/profile.json": b"{]"}, None, "not valid JSON"),
    ({"x/profile.json": profile_json()}, None, "lacks adapter_config.json and "
                                               "adapter_model.safetensors"),
    ({"x/profile.json": profile_json(), **lora_files("x/adapters/v1", "IA3")}, None,
     "not a LoRA adapter"),
    ({**good_files(), "x/adapters/v1/adapter_model.safetensors": b"junk"}, None,
     "not a readable safetensors file"),
    ({**good_files(), "x/enrollment/manifest.jsonl": b'{"id": "a", "audio": "/etc/hostname"}\n'},
     None, "enrollment"),
])
def test_import_refuses_unsafe_or_foreign_archives(home, tmp_path, files, extra, problem):
    archive = write_archive(tmp_path / "bad.tar.gz", files, extra)
    with pytest.raises(ProfileError) as caught:
        import_profile(archive)
    message = str(caught.value)
    assert message.startswith(f"{archive}: not an asr-adapt profile archive") and problem in message
    assert "\n" not in message
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
    assert not home.exists() or list(home.iterdir()) == []


@pytest.mark.parametrize("content", [b"plain text", b"", b"\x1f\x8b\x08\x00garbage"])
def test_import_refuses_what_is_not_a_tar_gz(home, tmp_path, content):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ProfileError, match=r"not an asr-adapt profile archive \(not a readable"):
        import_profile(archive)
    with pytest.raises(ProfileError, match="no such archive file"):
        import_profile(tmp_path / "missing.tar.gz")


def test_import_refuses_an_uncompressed_tar(home, tmp_path):
    archive = tmp_path / "x.tar"
    with tarfile.open(archive, "w") as tar:
        add_member(tar, "x/profile.json", profile_json(None))
    with pytest.raises(ProfileError, match="not a readable .tar.gz"):
        import_profile(archive)


def test_import_of_a_badly_named_folder_asks_for_a_name(home, tmp_path):
    archive = write_archive(tmp_path / "a.tar.gz", good_files("My Voice"))
    with pytest.raises(ProfileError, match="invalid profile name 'My Voice'.*--name"):
        import_profile(archive)
    assert import_profile(archive, name="me").name == "me"


def test_unlabeled_audio_is_kept_apart_from_enrollment(alice):
    assert alice.unlabeled_utterances() == []
    alice.add_enrollment_utterance(sine(0.5), "labeled")
    kept = alice.add_unlabeled_audio(sine(2.0), source="live")
    again = Profile.open("alice").add_unlabeled_audio(sine(1.0))
    assert kept.id != again.id
    unlabeled = Profile.open("alice").unlabeled_utterances()
    assert [(u.text, u.duration, u.speaker) for u in unlabeled] == [(None, 2.0, "alice"), (None, 1.0, "alice")]
    assert [u.text for u in alice.enrollment_utterances()] == ["labeled"]
    data, rate = sf.read(str(unlabeled[0].audio), dtype="float32")
    assert rate == 16000 and np.abs(data - sine(2.0)).max() < 1e-3
    assert json.loads(alice.unlabeled_manifest.read_text().splitlines()[0])["source"] == "live"


def test_unlabeled_audio_rejects_bad_input_and_survives_a_cut_line(alice):
    with pytest.raises(ValueError):
        alice.add_unlabeled_audio(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(AsrAdaptError, match="no audio"):
        alice.add_unlabeled_audio(np.zeros(0, dtype=np.float32))
    alice.add_unlabeled_audio(sine(0.5))
    with open(alice.unlabeled_manifest, "a") as handle:
        handle.write('{"id": "cut')          # a crash mid-line
    assert len(alice.unlabeled_utterances()) == 1
    alice.add_unlabeled_audio(sine(0.25))
    assert [u.duration for u in alice.unlabeled_utterances()] == [0.5, 0.25]
