"""Profile names that are paths, reserved, empty, very long or hold control characters,
through every command that takes one: refused in one line, nothing created or touched."""

from __future__ import annotations

import pytest

from hostile import assert_refused

BAD_NAMES = {
    "parent": ("../x", "path separator|'\\.\\.'"),
    "absolute": ("/etc", "path separator"),
    "nested": ("a/b", "path separator"),
    "backslash": ("a\\b", "path separator"),
    "dotdot": ("a..b", "'\\.\\.'"),
    "hidden": (".hidden", "does not start with a letter or digit"),
    "empty": ("", "is empty"),
    "very_long": ("a" * 300, "300 characters"),
    "newline": ("bob\nrm", "control character"),
    "escape": ("bob\x1b[31m", "control character"),
    "reserved_con": ("con", "device name on Windows"),
    "reserved_nul_ext": ("NUL.txt", "device name on Windows"),
    "reserved_com1": ("COM1", "device name on Windows"),
    "trailing_dot": ("bob.", "ends with '.'"),
    "unicode": ("bøb", "character other than"),
    "space": ("bob smith", "character other than"),
}


def commands(name, enrollment_folder, tmp_path):
    return {
        "enroll": ["enroll", name, "--from", enrollment_folder, "--no-train"],
        "adapt": ["adapt", name],
        "show": ["profiles", "show", name],
        "remove": ["profiles", "remove", name, "--yes"],
        "export": ["profiles", "export", name, "-o", tmp_path / "out.tar.gz"],
        "transcribe": ["transcribe", enrollment_folder / "take0.wav", "--profile", name],
    }


@pytest.mark.parametrize("command", ["enroll", "adapt", "show", "remove", "export", "transcribe"])
@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_bad_profile_names_are_refused_everywhere(capsys, store, enrollment_folder, tmp_path, command, case):
    name, pattern = BAD_NAMES[case]
    argv = commands(name, enrollment_folder, tmp_path)[command]
    assert_refused(capsys, store, argv, f"invalid profile name.*({pattern})")
    assert not (tmp_path / "out.tar.gz").exists()


def test_import_under_a_bad_name(capsys, store, tmp_path):
    from asr_adapt.profiles.archive import export_profile

    archive = export_profile("alice", tmp_path / "alice.tar.gz")
    for name, pattern in (BAD_NAMES["parent"], BAD_NAMES["reserved_con"], BAD_NAMES["escape"]):
        assert_refused(capsys, store, ["profiles", "import", archive, "--name", name, "--allow-model"],
                       f"invalid profile name.*({pattern})")
