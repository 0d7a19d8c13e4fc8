"""Hostile profile archives through ``asr-adapt profiles import``: path escapes, links, bombs,
broken compression, pickles and broken adapters, foreign base models. Each is refused in one
line before anything is written, and an existing profile of that name stays as it was."""

from __future__ import annotations

import gzip
import json
import tarfile

import numpy as np
import pytest

from fake_profiles import add_member, tiny_en_sha, write_archive
from hostile import assert_refused, run_cli, store_state

LORA = "base_model.model.model.encoder.layers.0.self_attn.q_proj.lora_A.weight"


def safetensors_bytes(tensors: dict) -> bytes:
    from safetensors.numpy import save

    return save(tensors)


def profile_json(top="carol", base_model="whisper-tiny.en", sha="tiny", adapter="adapters/v1") -> bytes:
    return json.dumps({"format_version": 1, "name": top, "kind": "speaker", "base_model": base_model,
                       "base_weights_sha256": tiny_en_sha() if sha == "tiny" else sha, "backend": "whisper",
                       "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
                       "adapter": adapter}).encode()


def good_members(top="carol", **info) -> dict[str, bytes]:
    return {f"{top}/profile.json": profile_json(top, **info),
            f"{top}/adapters/v1/adapter_config.json": json.dumps({"peft_type": "LORA", "r": 2}).encode(),
            f"{top}/adapters/v1/adapter_model.safetensors": safetensors_bytes({LORA: np.ones((2, 4), np.float32)})}


def written(data: bytes):
    def make(path):
        path.write_bytes(data)
        return path
    return make


def truncated(path):
    data = write_archive(path, good_members()).read_bytes()
    path.write_bytes(data[:200])
    return path


def header_only_bomb(path):
    """A gzip holding one tar header that declares 4 GiB, and no data: a bomb's first step."""
    info = tarfile.TarInfo("carol/enrollment/0001.flac")
    info.size = 4 << 30
    with gzip.open(path, "wb") as handle:
        handle.write(info.tobuf())
    return path


def many_members(tar):
    for index in range(10_001):
        add_member(tar, f"carol/enrollment/{index:05d}.flac")


def replace_member(name, data):
    def make(path):
        return write_archive(path, {**good_members(), name: data})
    return make


CASES = {
    "dotdot_member": (lambda p: write_archive(p, good_members(), lambda t: add_member(t, "carol/../../evil", b"x")),
                      "leaves the archive"),
    "absolute_member": (lambda p: write_archive(p, good_members(), lambda t: add_member(t, "/tmp/evil", b"x")), "absolute path"),
    "symlink_out": (lambda p: write_archive(p, good_members(), lambda t: add_member(
        t, "carol/enrollment/0001.flac", type=tarfile.SYMTYPE, linkname="/etc/passwd")), "is a link"),
    "hardlink_out": (lambda p: write_archive(p, good_members(), lambda t: add_member(
        t, "carol/enrollment/0001.flac", type=tarfile.LNKTYPE, linkname="/etc/passwd")), "is a link"),
    "device": (lambda p: write_archive(p, good_members(), lambda t: add_member(
        t, "carol/enrollment/0001.flac", type=tarfile.CHRTYPE, devmajor=1, devminor=3)), "device or special"),
    "many_members": (lambda p: write_archive(p, good_members(), many_members), "more than 10,000 members"),
    "huge_declared_size": (header_only_bomb, "more than 1 GiB"),
    "deep_nesting": (lambda p: write_archive(p, good_members(), lambda t: add_member(t, "carol/" + "d/" * 200 + "f", b"x")),
                     "nested too deeply"),
    "long_member_name": (lambda p: write_archive(p, good_members(), lambda t: add_member(t, "carol/" + "n" * 5000, b"x")),
                         "named too long"),
    "garbage_not_gzip": (written(b"\x1f\x8b\x08" + bytes(range(256)) * 10), "not a readable"),
    "plain_text": (written(b"hello"), "not a readable"),
    "truncated_gzip": (truncated, "not a readable|profile.json|lacks"),
    "empty_archive": (lambda p: write_archive(p, {}), "expected one top-level folder, found 0"),
    "stray_script": (lambda p: write_archive(p, {**good_members(), "carol/run.py": b"import os"}),
                     "not part of a profile"),
    "pickle_beside_adapter": (replace_member("carol/adapters/v1/adapter_model.bin", b"\x80\x04cos\nsystem\n."),
                              "not part of a profile"),
    "pickle_instead_of_adapter": (lambda p: write_archive(p, {
        k if not k.endswith(".safetensors") else k.replace("adapter_model.safetensors", "adapter_model.bin"):
        v for k, v in good_members().items()}), "not part of a profile"),
    "garbage_safetensors": (replace_member("carol/adapters/v1/adapter_model.safetensors", b"\x00" * 64),
                            "not a readable safetensors"),
    "truncated_safetensors": (replace_member("carol/adapters/v1/adapter_model.safetensors", safetensors_bytes(
        {LORA: np.ones((64, 64), np.float32)})[:400]), "not a readable safetensors"),
    "empty_safetensors": (replace_member("carol/adapters/v1/adapter_model.safetensors", safetensors_bytes({})),
                          "holds no weights"),
    "nan_weights": (replace_member("carol/adapters/v1/adapter_model.safetensors", safetensors_bytes(
        {LORA: np.full((2, 4), np.nan, np.float32)})), "NaN or infinite"),
    "not_lora_weights": (replace_member("carol/adapters/v1/adapter_model.safetensors", safetensors_bytes(
        {"model.encoder.layers.0.fc1.weight": np.ones((2, 4), np.float32)})), "not a LoRA weight"),
    "not_lora_config": (replace_member("carol/adapters/v1/adapter_config.json", b'{"peft_type": "IA3"}'),
                        "not a LoRA adapter"),
    "nested_config": (replace_member("carol/adapters/v1/adapter_config.json", b"[" * 100_000),
                      "not valid JSON"),
    "garbage_profile_json": (replace_member("carol/profile.json", b"\xff\xfe{"), "not valid JSON"),
    "nested_profile_json": (replace_member("carol/profile.json", b"[" * 100_000), "nested too deeply|not valid"),
    "huge_profile_json": (replace_member("carol/profile.json", b" " * (2 << 20) + b"{}"), "larger than 1 MiB"),
    "hub_base_model": (lambda p: write_archive(p, good_members(base_model="attacker/model", sha=None)),
                       "not a model bundled.*--allow-model"),
    "path_base_model": (lambda p: write_archive(p, good_members(base_model="/tmp/evil-model", sha=None)),
                        "not a model bundled.*--allow-model"),
    "other_weights": (lambda p: write_archive(p, good_members(sha="0" * 64)), "other weights of whisper-tiny.en"),
    "manifest_points_out": (replace_member("carol/enrollment/manifest.jsonl",
                                           b'{"id": "a", "audio": "/etc/hostname", "text": "x"}\n'), "enrollment"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_refused(capsys, store, tmp_path, case):
    make, pattern = CASES[case]
    archive = make(tmp_path / "carol.tar.gz")
    assert_refused(capsys, store, ["profiles", "import", archive], pattern)
    assert not (store / "carol").exists()


@pytest.mark.parametrize("case", ["truncated_safetensors", "pickle_beside_adapter", "hub_base_model"])
def test_forced_import_of_a_hostile_archive_keeps_the_existing_profile(capsys, store, tmp_path, case):
    make, pattern = CASES[case]
    archive = make(tmp_path / "carol.tar.gz")
    assert_refused(capsys, store, ["profiles", "import", archive, "--name", "alice", "--force"], pattern)


def test_a_good_archive_is_accepted_and_a_foreign_model_only_when_allowed(capsys, store, tmp_path):
    good = write_archive(tmp_path / "good.tar.gz", good_members())
    code, _, err = run_cli(capsys, "profiles", "import", good)
    assert code == 0, err
    foreign = write_archive(tmp_path / "foreign.tar.gz", good_members("dave", base_model="/srv/models/mine", sha=None))
    assert_refused(capsys, store, ["profiles", "import", foreign], "--allow-model")
    before = store_state(store)
    code, _, err = run_cli(capsys, "profiles", "import", foreign, "--allow-model")
    assert code == 0, err
    assert store_state(store) != before and (store / "dave" / "profile.json").is_file()
