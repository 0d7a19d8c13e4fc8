"""Hostile manifests, Kaldi folders, enrollment content, model folders and environment, through
manifest check/import, eval, enroll --from, transcribe --model and profiles list."""

from __future__ import annotations

import json
import shutil

import pytest

from hostile import assert_refused, long_wav, run_cli, store_state, tone, wav_bytes

FAST = ("--max-new-tokens", "4")


@pytest.fixture
def good_wav(tmp_path):
    path = tmp_path / "good.wav"
    path.write_bytes(wav_bytes(tone(1.0)))
    return path


def line(**fields) -> bytes:
    return (json.dumps(fields, ensure_ascii=False) + "\n").encode()


MANIFESTS = {
    "broken_json": (lambda wav: b'{"id": "a", "audio": ', "not valid JSON"),
    "nested_json": (lambda wav: b"[" * 100_000 + b"\n", "nested too deeply"),
    "huge_line": (lambda wav: line(id="a", audio=str(wav), text="x" * (2 << 20)), "longer than 1 MiB"),
    "duplicate_ids": (lambda wav: line(id="a", audio=str(wav), text="x") * 2, "repeats line|appears twice"),
    "not_an_object": (lambda wav: b'["a", "b"]\n', "expected a JSON object"),
    "not_utf8": (lambda wav: b'{"id": "\xff\xfe", "audio": "a.wav"}\n', "not UTF-8"),
    "empty_file": (lambda wav: b"", "no utterances|empty"),
    "missing_audio": (lambda wav: line(id="a", audio="nowhere/missing.wav", text="x"), "not found"),
    "audio_is_a_folder": (lambda wav: line(id="a", audio=str(wav.parent), text="x"), "is a folder"),
    "id_not_text": (lambda wav: line(id=5, audio=str(wav), text="x"), "id"),
    "no_id": (lambda wav: line(audio=str(wav), text="x"), "id"),
}


@pytest.mark.parametrize("command", ["check", "eval"])
@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_hostile_manifest(capsys, store, tmp_path, good_wav, tiny_whisper_dir, command, case):
    make, pattern = MANIFESTS[case]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(make(good_wav))
    argv = (["manifest", "check", manifest] if command == "check"
            else ["eval", manifest, "--model", tiny_whisper_dir, *FAST])
    assert_refused(capsys, store, argv, pattern)


def test_manifest_that_is_a_pipe(capsys, store, tmp_path):
    import os

    pipe = tmp_path / "m.jsonl"
    os.mkfifo(pipe)
    assert_refused(capsys, store, ["manifest", "check", pipe], "not a regular file")


def test_audio_path_escaping_to_a_system_file_is_read_as_what_it_is(capsys, store, tmp_path, tiny_whisper_dir):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(line(id="a", audio="../" * 30 + "etc/passwd", text="x"))
    assert_refused(capsys, store, ["eval", manifest, "--model", tiny_whisper_dir, *FAST], "not a readable audio file")


def test_unicode_manifest_is_read(capsys, store, tmp_path, good_wav):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(line(id="ü-1", audio=str(good_wav), text="naïve café 你好 مرحبا 🙂", speaker="zoë"))
    code, out, err = run_cli(capsys, "manifest", "check", manifest)
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("files,pattern", [
    ({"text": "utt2 hello there\n"}, "'utt2' is not in wav.scp"),
    ({"text": "utt1 hello\n", "utt2spk": "utt9 bob\n"}, "'utt9' is not in wav.scp"),
    ({"text": "utt1 hello\n", "segments": "seg1 utt1 0.0 1.0\n"}, "segments are not supported"),
    ({"wav.scp": "utt1 sox in.wav -t wav - |\n"}, "pipe|command|not supported|not found"),
])
def test_kaldi_folder_whose_files_disagree(capsys, store, tmp_path, good_wav, files, pattern):
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"utt1 {good_wav}\n")
    for name, text in files.items():
        (kaldi / name).write_text(text)
    assert_refused(capsys, store, ["manifest", "import", kaldi, "-o", tmp_path / "out.jsonl"], pattern)
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------ what enrollment accepts


def take_folder(tmp_path, bad_audio=None, bad_text=None):
    folder = tmp_path / "takes"
    folder.mkdir()
    for index, text in enumerate(("hello there", "good morning", "see you soon", "thank you")):
        (folder / f"t{index}.wav").write_bytes(wav_bytes(tone(1.0)))
        (folder / f"t{index}.txt").write_text(text)
    if bad_audio is not None:
        bad_audio(folder / "t0.wav")
    if bad_text is not None:
        (folder / "t0.txt").write_text(bad_text)
    return folder


@pytest.mark.parametrize("case,bad_audio,bad_text,pattern", [
    ("two_hour_utterance", lambda p: long_wav(p, 2.0), None, "longer than an enrollment take"),
    ("forty_second_utterance", lambda p: p.write_bytes(wav_bytes(tone(40.0))), None, "longer than an enrollment take"),
    ("50_ms_utterance", lambda p: p.write_bytes(wav_bytes(tone(0.05))), None, "too short"),
    ("one_sample", lambda p: p.write_bytes(wav_bytes(tone(1.0)[:1])), None, "too short"),
    ("huge_transcript", None, "word " * 40_000, "transcript of 1?9{4,5}\\d? characters"),
])
def test_enroll_refuses_what_adapt_would_refuse_later(capsys, store, tmp_path, case, bad_audio, bad_text, pattern):
    """Before issue 20 ``enroll --no-train`` accepted these, and ``adapt`` refused them later."""
    folder = take_folder(tmp_path, bad_audio, bad_text)
    assert_refused(capsys, store, ["enroll", "bob", "--from", folder, "--no-train"], pattern)
    assert not (store / "bob").exists()


# ------------------------------------------------------------------ model folders


def custom_code_model(tiny_whisper_dir, tmp_path, model_type):
    """A model folder whose config asks for its own Python code (``auto_map``); the code, if
    ever run, leaves a marker file."""
    folder = tmp_path / f"custom-{model_type}"
    shutil.copytree(tiny_whisper_dir, folder)
    marker = tmp_path / "code-ran"
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import WhisperConfig as EvilConfig\n")
    return folder, marker


@pytest.mark.parametrize("model_type", ["whisper", "evil"])
def test_a_model_folder_never_runs_its_own_code(capsys, store, tmp_path, good_wav, tiny_whisper_dir, model_type,
                                                monkeypatch):
    """Before issue 20 transformers asked "run the custom code? [y/N]" and ran it on "y"."""
    folder, marker = custom_code_model(tiny_whisper_dir, tmp_path, model_type)
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("asked whether to run the model's code"))
    before = store_state(store)
    code, out, err = run_cli(capsys, "transcribe", good_wav, "--model", folder, *FAST)
    assert not marker.exists()
    assert "Traceback" not in err
    if model_type == "whisper":  # a known family: loaded with the library's own classes
        assert code == 0, err
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert store_state(store) == before


@pytest.mark.parametrize("case,make,pattern", [
    ("empty_folder", lambda d: d.mkdir(), "not a model folder"),
    ("garbage_config", lambda d: (d.mkdir(), (d / "config.json").write_text("{]")), "config"),
    ("config_without_weights", lambda d: (d.mkdir(), (d / "config.json").write_text(
        json.dumps({"model_type": "whisper"}))), "weights|processor|cannot load"),
    ("a_file", lambda d: d.write_text("x"), "must be a folder"),
])
def test_broken_model_folders(capsys, store, tmp_path, good_wav, case, make, pattern):
    folder = tmp_path / "model"
    make(folder)
    assert_refused(capsys, store, ["transcribe", good_wav, "--model", folder, *FAST], pattern)


@pytest.mark.parametrize("case,make,pattern", [
    ("missing", lambda d: None, "no such model folder"),
    ("a_file", lambda d: d.write_text("x"), "must be a folder"),
    ("garbage_config", lambda d: (d.mkdir(), (d / "config.json").write_text("[" * 100_000)), "config"),
    ("unknown_family", lambda d: (d.mkdir(), (d / "config.json").write_text(json.dumps({"model_type": "bert"}))),
     "bert|not a speech|not supported|model type"),
    ("unknown_name", None, "unknown model 'whisper-huge'"),
])
def test_models_prepare_refuses(capsys, store, tmp_path, case, make, pattern):
    folder = tmp_path / "model"
    if make is not None:
        make(folder)
    target = "whisper-huge" if case == "unknown_name" else folder
    assert_refused(capsys, store, ["models", "prepare", "--model", target], pattern)


def test_cache_that_is_a_file(capsys, store, tmp_path, good_wav, monkeypatch):
    """Before issue 20: a traceback (NotADirectoryError) while converting the bundled model."""
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    monkeypatch.setenv("ASR_ADAPT_CACHE", str(blocker))
    assert_refused(capsys, store, ["transcribe", good_wav, *FAST], "ASR_ADAPT_CACHE.*is a file")
    monkeypatch.setenv("ASR_ADAPT_CACHE", str(blocker / "below"))
    assert_refused(capsys, store, ["transcribe", good_wav, *FAST], "ASR_ADAPT_CACHE.*is a file")


def test_home_that_is_a_file(capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "home-file"
    blocker.write_text("x")
    monkeypatch.setenv("ASR_ADAPT_HOME", str(blocker))
    for argv in (["profiles", "list"], ["profiles", "show", "alice"]):
        code, _, err = run_cli(capsys, *argv)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert code == 2 and "ASR_ADAPT_HOME" in err and "is a file" in err, err
    code, _, err = run_cli(capsys, "enroll", "bob", "--from", tmp_path, "--no-train")
    assert code == 2 and "Traceback" not in err
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------ a damaged profile store


def _truncate_adapter(profile_dir):
    [weights] = profile_dir.glob("adapters/*/adapter_model.safetensors")
    weights.write_bytes(weights.read_bytes()[:300])


def _empty_adapter(profile_dir):
    [weights] = profile_dir.glob("adapters/*/adapter_model.safetensors")
    weights.write_bytes(b"")


def _garbage_config(profile_dir):
    [config] = profile_dir.glob("adapters/*/adapter_config.json")
    config.write_text("{]")


def _no_adapter_folder(profile_dir):
    [folder] = profile_dir.glob("adapters/*")
    shutil.rmtree(folder)


def _garbage_profile_json(profile_dir):
    (profile_dir / "profile.json").write_text('{"format_version": 1, "name": ')


def _garbage_enrollment(profile_dir):
    (profile_dir / "enrollment" / "manifest.jsonl").write_text("[[[[\n")


@pytest.mark.parametrize("damage,pattern", [
    (_truncate_adapter, "adapter of profile 'alice' cannot be loaded"),
    (_empty_adapter, "adapter of profile 'alice' cannot be loaded"),
    (_garbage_config, "adapter of profile 'alice' cannot be loaded"),
    (_no_adapter_folder, "adapter|missing"),
    (_garbage_profile_json, "profile.json of 'alice' is damaged"),
])
def test_a_damaged_profile_is_named_not_a_traceback(capsys, store, good_wav, damage, pattern):
    """Before issue 20 a truncated adapter in use ended in a traceback."""
    damage(store / "alice")
    assert_refused(capsys, store, ["transcribe", good_wav, "--profile", "alice", *FAST], pattern)


@pytest.mark.parametrize("damage,pattern", [
    (_garbage_profile_json, "profile.json of 'alice' is damaged"),
    (_garbage_enrollment, "manifest|JSON|enrollment"),
])
def test_adapting_a_damaged_profile(capsys, store, damage, pattern):
    damage(store / "alice")
    assert_refused(capsys, store, ["adapt", "alice", "--rank", "2", "--epochs", "1"], pattern)
