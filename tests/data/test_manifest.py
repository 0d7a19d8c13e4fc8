"""Manifests: reading and validation, writing, importers, dispatch, summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.core.errors import AudioError, ManifestError
from asr_adapt.data.manifest import (
    ManifestSummary, Utterance, read_manifest, summarize, write_manifest, write_text_atomic,
)
from asr_adapt.data.importers import import_folder, import_kaldi, load_any

SHARED_MANIFEST = (Path(__file__).resolve().parents[2].parent
                   / "shared/data/speechocean762/train/manifest.jsonl")


def make_audio(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """Write a short sine tone (any suffix soundfile knows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def write_lines(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(**fields) -> str:
    return json.dumps(fields)


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    make_audio(tmp_path / "a.wav")
    make_audio(tmp_path / "sub" / "b.flac", seconds=1.0)
    return tmp_path


# --------------------------------------------------------------------------- reading


def test_read_resolves_relative_audio_against_manifest_folder(audio_dir, tmp_path, monkeypatch):
    manifest = write_lines(audio_dir / "m.jsonl",
                           record(id="a", audio="a.wav", text="Hello."),
                           "",  # blank lines are ignored
                           record(id="b", audio="sub/b.flac", speaker="sam", domain="phone",
                                  duration=1.0))
    monkeypatch.chdir(tmp_path.parent)  # the working folder must not matter
    utterances = read_manifest(manifest)
    assert [u.id for u in utterances] == ["a", "b"]
    assert utterances[0].audio == audio_dir / "a.wav"
    assert utterances[0].audio.is_absolute()
    assert utterances[0].text == "Hello."
    assert utterances[0].speaker == "unknown"
    assert utterances[1].speaker == "sam" and utterances[1].domain == "phone"
    assert utterances[1].duration == 1.0


def test_absolute_audio_path_is_kept(audio_dir, tmp_path):
    manifest = write_lines(tmp_path / "elsewhere" / "m.jsonl",
                           record(id="a", audio=str(audio_dir / "a.wav")))
    assert read_manifest(manifest)[0].audio == audio_dir / "a.wav"


def test_text_null_or_absent_means_unlabeled(audio_dir):
    manifest = write_lines(audio_dir / "m.jsonl", record(id="a", audio="a.wav", text=None),
                           record(id="b", audio="sub/b.flac"))
    utterances = read_manifest(manifest)
    assert all(u.text is None and not u.labeled for u in utterances)


def test_extra_fields_are_kept(audio_dir):
    manifest = write_lines(audio_dir / "m.jsonl",
                           record(id="a", audio="a.wav", text="x", age=6, gender="m"))
    assert read_manifest(manifest)[0].extra == {"age": 6, "gender": "m"}


def test_byte_order_mark_is_tolerated(audio_dir):
    manifest = audio_dir / "m.jsonl"
    manifest.write_text("\ufeff" + record(id="a", audio="a.wav") + "\n", encoding="utf-8")
    assert read_manifest(manifest)[0].id == "a"


def test_check_audio_false_skips_existence(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", record(id="a", audio="gone.wav"))
    assert read_manifest(manifest, check_audio=False)[0].audio == tmp_path / "gone.wav"


@pytest.mark.parametrize("line, expected", [
    ("{not json", "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object {...}, found a list"),
    ('"text"', "line 2: expected a JSON object {...}, found a string"),
    (record(audio="a.wav"), "line 2: field 'id' is missing"),
    (record(id="", audio="a.wav"), "line 2: field 'id' is empty"),
    (record(id="  ", audio="a.wav"), "line 2: field 'id' is empty"),
    (record(id=None, audio="a.wav"), "line 2: field 'id' is null"),
    (record(id=7, audio="a.wav"), "line 2: field 'id' must be a string, found a number 7"),
    (record(id="b"), "line 2: field 'audio' is missing"),
    (record(id="b", audio=""), "line 2: field 'audio' is empty"),
    (record(id="b", audio=["a.wav"]), "line 2: field 'audio' must be a string, found a list"),
    (record(id="b", audio="a.wav", text=3), "line 2: field 'text' must be a string"),
    (record(id="b", audio="a.wav", speaker=1), "line 2: field 'speaker' must be a string"),
    (record(id="b", audio="a.wav", speaker=""), "line 2: field 'speaker' is empty"),
    (record(id="b", audio="a.wav", domain=True), "line 2: field 'domain' must be a string, "
                                                  "found a boolean"),
    (record(id="b", audio="a.wav", duration="2s"), "line 2: field 'duration' must be a number"),
    (record(id="b", audio="a.wav", duration=True), "line 2: field 'duration' must be a number"),
    (record(id="b", audio="a.wav", duration=-1), "line 2: field 'duration' must be a "
                                                  "non-negative number"),
    ('{"id": "b", "audio": "a.wav", "duration": NaN}', "line 2: field 'duration' must be a "
                                                       "non-negative number"),
    (record(id="a", audio="a.wav"), "line 2: id 'a' repeats line 1"),
])
def test_validation_errors_name_file_line_and_field(audio_dir, line, expected):
    manifest = write_lines(audio_dir / "m.jsonl", record(id="a", audio="a.wav"), line)
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    message = str(caught.value)
    assert message.startswith(f"{manifest} line 2: ")
    assert expected in message
    assert "\n" not in message


def test_missing_audio_names_line_and_where_it_looked(audio_dir):
    manifest = write_lines(audio_dir / "m.jsonl", record(id="a", audio="a.wav"),
                           "", record(id="x", audio="x.flac"))
    with pytest.raises(ManifestError, match=r"line 3: audio 'x.flac' not found") as caught:
        read_manifest(manifest)
    assert f"looked for {audio_dir / 'x.flac'}" in str(caught.value)
    assert "relative paths start from the manifest's folder" in str(caught.value)


def test_audio_that_is_a_folder_is_refused(audio_dir):
    manifest = write_lines(audio_dir / "m.jsonl", record(id="a", audio="sub"))
    with pytest.raises(ManifestError, match="line 1: audio 'sub' is a folder"):
        read_manifest(manifest)


def test_require_text_names_the_line(audio_dir):
    manifest = write_lines(audio_dir / "m.jsonl", record(id="a", audio="a.wav", text="hi"),
                           record(id="b", audio="sub/b.flac"),
                           record(id="c", audio="a.wav", text=" "))
    assert len(read_manifest(manifest)) == 3
    with pytest.raises(ManifestError, match=r"line 2: field 'text' is missing.*'b'"):
        read_manifest(manifest, require_text=True)
    write_lines(manifest, record(id="c", audio="a.wav", text=" "))
    with pytest.raises(ManifestError, match=r"line 1: field 'text' is empty"):
        read_manifest(manifest, require_text=True)


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="nope.jsonl: no such manifest file"):
        read_manifest(tmp_path / "nope.jsonl")


def test_folder_given_as_manifest(tmp_path):
    with pytest.raises(ManifestError, match="is a folder, not a manifest file"):
        read_manifest(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_unreadable_manifest(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", record(id="a", audio="a.wav"))
    manifest.chmod(0)
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(manifest)


def test_non_utf8_manifest_names_the_line(audio_dir):
    manifest = audio_dir / "m.jsonl"
    manifest.write_bytes(record(id="a", audio="a.wav").encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(ManifestError, match="line 2: not UTF-8"):
        read_manifest(manifest)


def test_empty_manifest_is_an_error(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", "", "   ")
    with pytest.raises(ManifestError, match="holds no utterances"):
        read_manifest(manifest)


# --------------------------------------------------------------------------- writing


def test_round_trip_keeps_every_field(audio_dir):
    original = [
        Utterance(id="a", audio=audio_dir / "a.wav", text="Hello, world.", speaker="sam",
                  domain="phone", duration=0.5, extra={"age": 6, "gender": "m"}),
        Utterance(id="b", audio=audio_dir / "sub" / "b.flac", text=None),
        Utterance(id="ü", audio=audio_dir / "a.wav", text="naïve café"),
    ]
    path = write_manifest(original, audio_dir / "m.jsonl")
    assert read_manifest(path) == original


def test_audio_inside_folder_is_written_relative_else_absolute(audio_dir, tmp_path):
    outside = make_audio(tmp_path.parent / f"{tmp_path.name}-outside.wav")
    utterances = [Utterance(id="a", audio=audio_dir / "sub" / "b.flac"),
                  Utterance(id="b", audio=outside)]
    path = write_manifest(utterances, audio_dir / "m.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["audio"] == "sub/b.flac"
    assert records[1]["audio"] == outside.as_posix()
    assert records[0]["text"] is None  # unlabeled is written explicitly
    assert "domain" not in records[0] and "duration" not in records[0]
    # The folder moves as a whole: relative paths still resolve.
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    audio_dir.rename(moved)
    try:
        assert read_manifest(moved / "m.jsonl")[0].audio == moved / "sub" / "b.flac"
    finally:
        moved.rename(audio_dir)
        outside.unlink()


def test_write_is_atomic_and_leaves_no_temp_file(audio_dir):
    path = audio_dir / "out" / "m.jsonl"  # parent folders are created
    write_manifest([Utterance(id="a", audio=audio_dir / "a.wav")], path)
    write_manifest([Utterance(id="b", audio=audio_dir / "a.wav")], path)
    assert [p.name for p in path.parent.iterdir()] == ["m.jsonl"]
    assert read_manifest(path)[0].id == "b"


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_write_refuses_empty_and_duplicates(tmp_path):
    with pytest.raises(ManifestError, match="no utterances to write"):
        write_manifest([], tmp_path / "m.jsonl")
    twice = [Utterance(id="a", audio=tmp_path / "a.wav")] * 2
    with pytest.raises(ManifestError, match="id 'a' appears twice"):
        write_manifest(twice, tmp_path / "m.jsonl")


def test_extra_may_not_shadow_core_fields(tmp_path):
    with pytest.raises(ValueError, match="core fields"):
        Utterance(id="a", audio=tmp_path / "a.wav", extra={"text": "x"})


def test_utterances_are_hashable(tmp_path):
    u = Utterance(id="a", audio=tmp_path / "a.wav", extra={"age": 3})
    assert len({u, u}) == 1


# --------------------------------------------------------------------------- folder import


def test_import_folder_with_and_without_transcripts(tmp_path):
    root = tmp_path / "recordings"
    make_audio(root / "top.wav", seconds=0.25)
    make_audio(root / "alice" / "one.flac", seconds=0.5)
    (root / "alice" / "one.txt").write_text("  Hello\nthere. \n", encoding="utf-8")
    make_audio(root / "alice" / "two.ogg", seconds=0.75)
    make_audio(root / "group" / "bob" / "three.WAV", seconds=1.0)
    (root / "group" / "bob" / "three.txt").write_text("Bye.", encoding="utf-8")
    (root / "notes.md").write_text("ignored")
    (root / ".hidden.wav").write_bytes(b"not audio")  # hidden files are skipped
    utterances = {u.id: u for u in import_folder(root)}
    assert sorted(utterances) == ["alice/one", "alice/two", "group/bob/three", "top"]
    one = utterances["alice/one"]
    assert one.text == "Hello there." and one.speaker == "alice"
    assert one.audio == root / "alice" / "one.flac"
    assert one.duration == pytest.approx(0.5)
    assert utterances["alice/two"].text is None
    assert utterances["group/bob/three"].speaker == "bob"
    assert utterances["top"].speaker == "unknown"


def test_import_folder_refuses_empty_transcript(tmp_path):
    make_audio(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("\n")
    with pytest.raises(ManifestError, match=r"a.txt: transcript is empty"):
        import_folder(tmp_path)


def test_import_folder_refuses_two_files_with_one_name(tmp_path):
    make_audio(tmp_path / "a.wav")
    make_audio(tmp_path / "a.flac")
    with pytest.raises(ManifestError, match="share the name 'a'"):
        import_folder(tmp_path)


def test_import_folder_without_audio(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ManifestError, match="no audio files"):
        import_folder(tmp_path)
    with pytest.raises(ManifestError, match="no such folder"):
        import_folder(tmp_path / "missing")


def test_import_folder_reports_unreadable_audio(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="bad.wav"):
        import_folder(tmp_path)


# --------------------------------------------------------------------------- Kaldi import


@pytest.fixture
def kaldi_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data" / "train"
    make_audio(tmp_path / "wav" / "u1.wav", seconds=0.5)
    make_audio(tmp_path / "wav" / "u2.wav", seconds=1.0)
    make_audio(tmp_path / "wav" / "u3 spaced.wav", seconds=0.25)
    write_lines(data / "wav.scp", f"u1 {tmp_path / 'wav' / 'u1.wav'}",
                "u2\t../../wav/u2.wav", f"u3 {tmp_path / 'wav' / 'u3 spaced.wav'}")
    write_lines(data / "text", "u1 HELLO THERE", "u2 GOOD  BYE")
    write_lines(data / "utt2spk", "u1 spk1", "u2 spk2", "u3 spk1")
    return data


def test_import_kaldi(kaldi_dir, tmp_path):
    utterances = {u.id: u for u in import_kaldi(kaldi_dir)}
    assert sorted(utterances) == ["u1", "u2", "u3"]
    assert utterances["u1"].text == "HELLO THERE" and utterances["u1"].speaker == "spk1"
    assert utterances["u2"].audio == tmp_path / "wav" / "u2.wav"  # relative to the data dir
    assert utterances["u2"].duration == pytest.approx(1.0)
    assert utterances["u3"].text is None  # no line in text: unlabeled
    assert utterances["u3"].audio.name == "u3 spaced.wav"


def test_import_kaldi_without_utt2spk_or_text(kaldi_dir):
    (kaldi_dir / "utt2spk").unlink()
    (kaldi_dir / "text").unlink()
    utterances = import_kaldi(kaldi_dir)
    assert {u.speaker for u in utterances} == {"unknown"}
    assert all(u.text is None for u in utterances)


def test_import_kaldi_relative_to_working_folder(kaldi_dir, tmp_path, monkeypatch):
    write_lines(kaldi_dir / "wav.scp", "u1 wav/u1.wav")
    (kaldi_dir / "text").unlink()
    (kaldi_dir / "utt2spk").unlink()
    monkeypatch.chdir(tmp_path)  # Kaldi scripts run from the recipe folder
    assert import_kaldi(kaldi_dir)[0].audio == tmp_path / "wav" / "u1.wav"


def test_import_kaldi_refuses_pipes(kaldi_dir):
    write_lines(kaldi_dir / "wav.scp", "u1 ../../wav/u1.wav", "u2 sox in.sph -t wav - |")
    with pytest.raises(ManifestError, match=r"wav.scp line 2: 'sox in.sph -t wav - \|' is a "
                                            r"command pipe"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_refuses_archives(kaldi_dir):
    write_lines(kaldi_dir / "wav.scp", "u1 data/wav.ark:1234")
    with pytest.raises(ManifestError, match="wav.scp line 1: .* points into a Kaldi archive"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_refuses_segments(kaldi_dir):
    write_lines(kaldi_dir / "segments", "u1 rec1 0.0 1.5")
    with pytest.raises(ManifestError, match="segments are not supported"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_missing_audio(kaldi_dir):
    write_lines(kaldi_dir / "wav.scp", "u1 nowhere.wav")
    with pytest.raises(ManifestError, match=r"wav.scp line 1: audio 'nowhere.wav' not found"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_consistency_errors(kaldi_dir):
    write_lines(kaldi_dir / "text", "u1 HI", "u9 WHO")
    with pytest.raises(ManifestError, match=r"text line 2: utterance 'u9' is not in wav.scp"):
        import_kaldi(kaldi_dir)
    write_lines(kaldi_dir / "text", "u1 HI", "u1 AGAIN")
    with pytest.raises(ManifestError, match=r"text line 2: 'u1' repeats line 1"):
        import_kaldi(kaldi_dir)
    write_lines(kaldi_dir / "text", "u1 HI")
    write_lines(kaldi_dir / "utt2spk", "u1 spk1")
    with pytest.raises(ManifestError, match=r"utt2spk: no line for utterance 'u2'"):
        import_kaldi(kaldi_dir)
    write_lines(kaldi_dir / "utt2spk", "u1")
    with pytest.raises(ManifestError, match=r"utt2spk line 1: 'u1' has no value"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_needs_wav_scp(tmp_path):
    with pytest.raises(ManifestError, match="no wav.scp"):
        import_kaldi(tmp_path)


# --------------------------------------------------------------------------- dispatch


def test_load_any_dispatches(tmp_path, kaldi_dir):
    folder = tmp_path / "folder"
    make_audio(folder / "a.wav")
    assert load_any(folder)[0].id == "a"  # plain folder: import_folder
    assert {u.id for u in load_any(kaldi_dir)} == {"u1", "u2", "u3"}  # wav.scp: Kaldi
    write_lines(folder / "manifest.jsonl", record(id="from-manifest", audio="a.wav", text="x"))
    assert load_any(folder)[0].id == "from-manifest"  # manifest.jsonl wins over the audio
    assert load_any(folder / "manifest.jsonl")[0].id == "from-manifest"


def test_load_any_require_text_for_imports(tmp_path):
    make_audio(tmp_path / "a.wav")
    with pytest.raises(ManifestError, match="1 utterances have no transcript.*'a'"):
        load_any(tmp_path, require_text=True)


def test_load_any_refuses_other_things(tmp_path):
    with pytest.raises(ManifestError, match="no such file or folder"):
        load_any(tmp_path / "missing")
    other = make_audio(tmp_path / "a.wav")
    with pytest.raises(ManifestError, match=r"not a manifest \(.jsonl\), a Kaldi data dir"):
        load_any(other)


# --------------------------------------------------------------------------- summaries


def test_summarize(tmp_path):
    utterances = [Utterance(id="a", audio=tmp_path, text="x", speaker="s1", duration=30.0),
                  Utterance(id="b", audio=tmp_path, text=None, speaker="s2", duration=60.0),
                  Utterance(id="c", audio=tmp_path, text="y", speaker="s1")]
    summary = summarize(utterances)
    assert summary == ManifestSummary(count=3, seconds=90.0, speakers=2, labeled=2,
                                      unknown_durations=1)
    assert str(summary) == ("3 utterances, 1.5 min, 2 speakers, 2 labeled "
                            "(duration unknown for 1)")


# --------------------------------------------------------------------------- real data


@pytest.mark.shared
def test_reads_speechocean762_manifest():
    if not SHARED_MANIFEST.is_file():
        pytest.skip(f"shared data not present ({SHARED_MANIFEST})")
    utterances = read_manifest(SHARED_MANIFEST)
    assert len(utterances) > 1000
    first = utterances[0]
    assert first.audio.is_file() and first.audio.suffix == ".flac"
    assert first.text and first.text.isupper()
    assert set(first.extra) == {"age", "gender"}
    assert first.duration and first.duration > 0
    summary = summarize(utterances)
    assert summary.speakers == 125 and summary.labeled == summary.count
