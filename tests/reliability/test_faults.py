"""Faults: ``kill -9`` at chosen points of enroll, adapt and profiles import; two runs adapting
one profile at once; a disk that fills while recording, adapting and exporting.

The kills are real: the command runs as its own process with ``ASR_ADAPT_KILL_AT`` set
(asr_adapt.core.faults), sends itself SIGKILL at that point, and the test then looks at what
is left: the previous state still loads and transcribes, nothing half-made is visible, and
the next run works.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from hostile import assert_refused, run_cli, store_state

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 needs a POSIX system")
FAST = ("--max-new-tokens", "4")


def run_killed(argv, home, point, timeout=300):
    """Run ``asr-adapt ARGV`` in a new process that kills itself at ``point``; its exit status."""
    env = {**os.environ, "ASR_ADAPT_HOME": str(home.parent), "ASR_ADAPT_KILL_AT": point, "HF_HUB_OFFLINE": "1"}
    code = ("import sys; from asr_adapt.cli.main import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stderr


def visible(root):
    """What a user sees in the store: every path without a hidden (dot) component."""
    return {key for key in store_state(root) if not any(part.startswith(".") for part in key.split("/"))}


@pytest.mark.parametrize("point", ["adapt-step", "adapter-written", "adapter-renamed"])
def test_adapt_killed_keeps_the_previous_adapter(capsys, store, tmp_path, point):
    before = store_state(store)
    adapter_before = (store / "alice" / "profile.json").read_text()
    code, err = run_killed(["adapt", "alice", "--rank", "2", "--epochs", "1"], store, point)
    assert code == -signal.SIGKILL, err
    assert (store / "alice" / "profile.json").read_text() == adapter_before
    # What the user sees is what was there; anything left over is hidden and goes on next open.
    code, out, err = run_cli(capsys, "transcribe", store / "alice" / "enrollment" / "0001.flac",
                             "--profile", "alice", *FAST)
    assert code == 0, err
    assert visible(store) == {key for key in before}
    assert store_state(store) == before, "leftovers were not cleaned when the profile was next opened"
    code, out, err = run_cli(capsys, "adapt", "alice", "--rank", "2", "--epochs", "1")
    assert code in (0, 1) and "Traceback" not in err, err  # the next run trains (and keeps or refuses its result)


@pytest.mark.parametrize("force", [False, True])
def test_enroll_killed_midway_creates_and_replaces_nothing(capsys, store, enrollment_folder, force):
    before = store_state(store)
    name = "alice" if force else "bob"
    argv = ["enroll", name, "--from", enrollment_folder, "--no-train"] + (["--force"] if force else [])
    code, err = run_killed(argv, store, "enroll-take:2")
    assert code == -signal.SIGKILL, err
    assert visible(store) == set(before)
    code, _, err = run_cli(capsys, "profiles", "list")
    assert code == 0 and store_state(store) == before  # the staged copy is gone once the store is looked at
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err  # the retry is not blocked by what the killed run left


def test_import_killed_midway_keeps_the_existing_profile(capsys, store, tmp_path):
    from asr_adapt.profiles.archive import export_profile

    archive = export_profile("alice", tmp_path / "alice.tar.gz")
    before = store_state(store)
    argv = ["profiles", "import", archive, "--force", "--allow-model"]
    code, err = run_killed(argv, store, "import-extracted")
    assert code == -signal.SIGKILL, err
    assert visible(store) == set(before)
    code, _, err = run_cli(capsys, "profiles", "show", "alice")
    assert code == 0, err
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err


def test_two_runs_adapting_one_profile(capsys, store, tmp_path):
    """The second is refused at once, in one line, while the first holds the profile."""
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, pathlib; from asr_adapt.profiles.locks import profile_lock\n"
        f"with profile_lock('alice', 'adapt'):\n    pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")],
        env={**os.environ, "ASR_ADAPT_HOME": str(store.parent)})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists()
        assert_refused(capsys, store, ["adapt", "alice", "--rank", "2", "--epochs", "1"],
                       "being changed by another asr-adapt run; wait for it to finish, then adapt again")
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder: the next run goes ahead.
    code, _, err = run_cli(capsys, "adapt", "alice", "--rank", "2", "--epochs", "1")
    assert code in (0, 1) and "being changed" not in err, err


# ------------------------------------------------------------------ a disk that fills


@pytest.fixture
def full_disk_for(monkeypatch):
    """``full_disk_for(module)``: files that ``module`` opens for writing land on /dev/full
    (the kernel's own "No space left on device"), so the error is the real one."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    import builtins

    def install(module):
        real_open = builtins.open

        def full_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+"):
                return real_open("/dev/full", "wb", *args, **kwargs)
            return real_open(file, mode, *args, **kwargs)
        monkeypatch.setattr(module, "open", full_open, raising=False)
    return install


def test_disk_full_while_recording_says_so_in_one_line(capfd, store, full_disk_for):
    """Before issue 20 libsndfile's callbacks printed "Exception ignored ... OSError: [Errno 28]"
    before the message."""
    from asr_adapt.profiles import recordings
    from asr_adapt.profiles.info import ProfileError
    from asr_adapt.profiles.profile import Profile
    from hostile import tone

    before = store_state(store)
    full_disk_for(recordings)
    profile = Profile.open("alice")
    with pytest.raises(ProfileError, match="No space left on device.*earlier recordings are intact"):
        profile.add_enrollment_utterance(tone(1.0), "one more")
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "Traceback" not in captured.err, captured.err
    assert store_state(store) == before


def test_disk_full_while_enrolling_from_recordings(capfd, store, enrollment_folder, full_disk_for):
    from asr_adapt.profiles import recordings as recordings_module

    full_disk_for(recordings_module)
    before = store_state(store)
    code = __import__("asr_adapt.cli.main", fromlist=["main"]).main(
        ["enroll", "alice", "--force", "--from", str(enrollment_folder), "--no-train"])
    captured = capfd.readouterr()
    assert code == 2 and "No space left on device" in captured.err
    assert "Exception ignored" not in captured.err and "Traceback" not in captured.err, captured.err
    assert store_state(store) == before


def test_disk_full_while_exporting(capsys, store, tmp_path, monkeypatch):
    from asr_adapt.profiles import archive

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(archive.os, "fsync", full)
    target = tmp_path / "alice.tar.gz"
    target.write_bytes(b"the previous export")
    assert_refused(capsys, store, ["profiles", "export", "alice", "-o", target], "No space left on device")
    monkeypatch.setattr(archive.os, "fsync", real_fsync)
    assert target.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.tar.gz", "home", "recordings"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["alice.tar.gz", "home"]
