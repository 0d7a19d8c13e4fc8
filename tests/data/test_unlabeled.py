"""Collecting unlabeled audio: folders, manifests without text, kept audio, cutting, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from asr_adapt.core.errors import AsrAdaptError, OptionsError
from asr_adapt.data.manifest import Utterance
from asr_adapt.data.unlabeled import UnlabeledError, UnlabeledOptions, collect_unlabeled, cut_recording
from conftest import sine


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of tone separated by near-silent pauses, like speech with breaths."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(seconds * 16000), np.float32)
    for start in np.arange(0, seconds - 1.5, 2.0):
        begin = int(start * 16000)
        audio[begin:begin + 24000] = sine(1.5, freq=float(rng.integers(150, 400)))
    return audio + rng.normal(0, 1e-4, len(audio)).astype(np.float32)


def test_folder_without_transcripts_and_long_recordings_are_cut(tmp_path):
    sf.write(tmp_path / "a.wav", _speechy(4), 16000)
    sf.write(tmp_path / "long.flac", _speechy(70, seed=1), 16000)
    (tmp_path / "a.txt").write_text("ignored here")  # a transcript beside is fine
    found = collect_unlabeled([tmp_path])
    assert found.files == 2 and not found.skipped
    assert all(p.seconds <= 15.0 + 1e-6 for p in found.pieces)
    long_pieces = [p for p in found.pieces if p.source.endswith("long.flac")]
    assert len(long_pieces) >= 5 and sum(p.seconds for p in long_pieces) > 60
    assert found.summary()["pieces"] == len(found.pieces)


def test_manifest_without_text_and_single_file(tmp_path):
    sf.write(tmp_path / "x.wav", _speechy(5), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "x", "audio": "x.wav", "text": None}) + "\n")
    assert collect_unlabeled([tmp_path / "m.jsonl"]).files == 1
    assert collect_unlabeled([tmp_path / "x.wav"]).files == 1


@pytest.mark.parametrize("make,pattern", [
    (lambda p: sf.write(p, np.zeros(32000, np.float32), 16000), r"quiet\.wav: silent .*remove it"),
    (lambda p: sf.write(p, sine(0.2), 16000), r"quiet\.wav: only 0\.20 s of audio"),
    (lambda p: p.write_bytes(b""), r"quiet\.wav: (not a readable|holds no audio)"),
])
def test_bad_user_files_are_one_line_errors_naming_the_file(tmp_path, make, pattern):
    sf.write(tmp_path / "good.wav", _speechy(4), 16000)
    make(tmp_path / "quiet.wav")
    with pytest.raises(AsrAdaptError, match=pattern) as caught:
        collect_unlabeled([tmp_path / "good.wav", tmp_path / "quiet.wav"])
    assert "\n" not in str(caught.value)


def test_kept_audio_problems_are_skipped_not_fatal(tmp_path):
    sf.write(tmp_path / "ok.flac", _speechy(4), 16000)
    sf.write(tmp_path / "silent.flac", np.zeros(16000, np.float32), 16000)
    kept = [Utterance(id="ok", audio=tmp_path / "ok.flac"), Utterance(id="s", audio=tmp_path / "silent.flac")]
    found = collect_unlabeled([], kept)
    assert found.files == 1 and len(found.skipped) == 1 and "silent" in found.skipped[0]


def test_missing_source_and_cap(tmp_path):
    with pytest.raises(UnlabeledError, match="no such file or folder"):
        collect_unlabeled([tmp_path / "nope"])
    for i in range(6):
        sf.write(tmp_path / f"{i}.wav", _speechy(6, seed=i), 16000)
    capped = collect_unlabeled([tmp_path], options=UnlabeledOptions(max_minutes=0.25))
    assert 0 < capped.seconds <= 15.0
    assert len({p.source for p in capped.pieces}) > 1  # spread, not just the first file


def test_cut_drops_silent_stretches():
    audio = np.concatenate([_speechy(20), np.zeros(20 * 16000, np.float32)])
    pieces = cut_recording(audio, UnlabeledOptions(max_piece_seconds=10))
    assert pieces and all(start < 25 * 16000 for start, _ in pieces)


def test_options_are_validated():
    for bad in (dict(min_seconds=0), dict(max_piece_seconds=40), dict(max_minutes=0)):
        with pytest.raises(OptionsError):
            UnlabeledOptions(**bad)
