"""``asr-adapt profiles list|show|remove|export|import`` through the real entry point."""

from __future__ import annotations

import json
import re
import sys
import tarfile

import pytest

from asr_adapt.cli import main as cli_main
from asr_adapt.profiles.profile import Profile
from conftest import sine
from fake_profiles import fake_adapter, tiny_en_sha


@pytest.fixture(autouse=True)
def only_profiles_command(monkeypatch):
    # The other sub-commands load models; these tests need none of them.
    monkeypatch.setattr(cli_main, "COMMANDS", ("profiles_cmd",))


@pytest.fixture
def alice(home) -> Profile:
    profile = Profile.create("alice", "whisper-tiny.en", tiny_en_sha())
    profile.add_enrollment_utterance(sine(3.0), "one")
    profile.add_enrollment_utterance(sine(3.0), "two")
    profile.commit_adapter(fake_adapter, {"r": 2}, {"wer": 0.25})
    return profile


def run(capsys, *argv):
    code = cli_main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("asr-adapt: error:")
    assert re.search(pattern, lines[0]), lines[0]


def test_list_without_profiles(home, capsys):
    code, out, _ = run(capsys, "profiles", "list")
    assert code == 0
    assert out == f"no profiles yet in {home}; make one with `asr-adapt enroll NAME`\n"
    assert run(capsys, "profiles")[1] == out  # list is the default action


def test_list_shows_each_profile_and_damaged_ones(alice, home, capsys):
    Profile.create("bob", "whisper-base", None)
    (home / "carol").mkdir()
    code, out, _ = run(capsys, "profiles", "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0] == (f"alice\tspeaker\twhisper-tiny.en\tadapter {alice.adapter_dir.name}\t"
                        f"updated {alice.info.updated}")
    assert lines[1].startswith("bob\tspeaker\twhisper-base\tadapter not trained\t")
    assert lines[2].startswith("carol\tDAMAGED: profile.json of 'carol' is missing")


def test_show_prints_profile_json_enrollment_and_adapter(alice, capsys):
    code, out, _ = run(capsys, "profiles", "show", "alice")
    assert code == 0
    body, enrollment, adapter = out.rsplit("\n", 3)[:3]
    assert json.loads(body) == alice.info.to_dict()
    assert enrollment == f"enrollment: 2 utterances, 0.1 min ({alice.enrollment_dir})"
    assert adapter == f"adapter: {alice.adapter_dir}"


def test_show_errors(home, capsys):
    Profile.create("bob", "whisper-base", None)
    code, _, err = run(capsys, "profiles", "show", "alice")
    assert_one_line_error(code, err, r"no profile 'alice'; existing profiles: bob$")
    code, _, err = run(capsys, "profiles", "show", "../x")
    assert_one_line_error(code, err, r"invalid profile name '\.\./x'")


def test_remove_with_yes(alice, home, capsys):
    code, out, _ = run(capsys, "profiles", "remove", "alice", "--yes")
    assert (code, out) == (0, "removed profile 'alice'\n")
    assert not (home / "alice").exists()
    code, _, err = run(capsys, "profiles", "remove", "alice", "--yes")
    assert_one_line_error(code, err, "no profile 'alice'")


def test_remove_refuses_without_yes_when_stdin_is_not_a_tty(alice, home, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    code, _, err = run(capsys, "profiles", "remove", "alice")
    assert_one_line_error(code, err, "stdin is not a terminal; add --yes$")
    assert (home / "alice").is_dir()


@pytest.mark.parametrize("answer, kept", [("y", False), ("yes", False), ("n", True), ("", True)])
def test_remove_asks_on_a_tty(alice, home, capsys, monkeypatch, answer, kept):
    class Tty:
        def isatty(self):
            return True

    prompts = []
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or answer)
    code, out, _ = run(capsys, "profiles", "remove", "alice")
    assert prompts and "remove profile 'alice'" in prompts[0]
    assert (home / "alice").is_dir() == kept
    assert code == (1 if kept else 0)
    assert out == ("profile 'alice' kept\n" if kept else "removed profile 'alice'\n")


def test_export_and_import(alice, tmp_path, capsys, monkeypatch):
    archive = tmp_path / "alice.tar.gz"
    code, out, _ = run(capsys, "profiles", "export", "alice", "-o", archive)
    assert (code, out) == (0, f"{archive}: profile 'alice' (with recordings)\n")
    code, out, _ = run(capsys, "profiles", "import", archive, "--name", "alice2")
    version = alice.adapter_dir.name
    assert code == 0
    assert out == (f"imported profile 'alice2' ({version}) into "
                   f"{alice.path.parent / 'alice2'}\n")
    assert len(Profile.open("alice2").enrollment_utterances()) == 2

    code, _, err = run(capsys, "profiles", "import", archive)
    assert_one_line_error(code, err, "profile 'alice' exists; use --force")
    code, out, _ = run(capsys, "profiles", "import", archive, "--force")
    assert code == 0 and out.startswith("imported profile 'alice'")


def test_export_without_audio_to_the_current_folder(alice, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "profiles", "export", "alice", "--no-audio")
    assert (code, out) == (0, "alice.tar.gz: profile 'alice' (without recordings)\n")
    with tarfile.open(tmp_path / "alice.tar.gz") as tar:
        assert not any("enrollment" in name for name in tar.getnames())


def test_export_and_import_errors(home, tmp_path, capsys):
    code, _, err = run(capsys, "profiles", "export", "nobody")
    assert_one_line_error(code, err, "no profile 'nobody'")
    bad = tmp_path / "bad.tar.gz"
    bad.write_text("not an archive")
    code, _, err = run(capsys, "profiles", "import", bad)
    assert_one_line_error(code, err, "not an asr-adapt profile archive")
    code, _, err = run(capsys, "profiles", "import", tmp_path / "missing.tar.gz")
    assert_one_line_error(code, err, "no such archive file")


def test_actions_need_their_arguments(home):
    with pytest.raises(SystemExit):
        cli_main.main(["profiles", "show"])
    with pytest.raises(SystemExit):
        cli_main.main(["profiles", "import"])
    with pytest.raises(SystemExit):
        cli_main.main(["profiles", "frobnicate"])
