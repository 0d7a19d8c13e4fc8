"""One profile, four runtimes, the same words: for a real adapted profile of the sample speaker on
the bundled whisper-tiny.en, greedy transcripts of the held-out sample files from the merged export
in a plain transformers pipeline, the ct2 export in faster-whisper, and ``--engine ct2`` agree with
``asr-adapt transcribe --profile``.

With float32 weights they are the same transcripts (or within 1 WER point). int8 weights change a
few words of a tiny model either way (measured on 30 files: from 4 points better to 1 point
worse, depending on the profile), so there the check is that quantization costs the profile at
most 1 WER point. faster-whisper pads a short file's features itself (zeros after its log-mel,
where transformers and asr-adapt read the log-mel of silence to 30 s), which alone changes a
few words of a tiny model; it is given the audio padded to Whisper's 30 s window here, so that
what is compared is the exported model, not that choice.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from conftest import read_samples_manifest

pytestmark = pytest.mark.slow

#: Files decoded by the slower runtimes (transformers' pipeline) and to show the adapter matters.
FEW = 12
GREEDY = ("--beam-size", "1")


def cli(*argv) -> tuple[int, str, str]:
    from asr_adapt.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Profile ``voice``: 20 enrollment utterances of the sample speaker, adapted on a short fixed
    schedule (enough for the adapter to change the transcripts), and the test files."""
    import asr_adapt
    from asr_adapt.data.manifest import write_manifest

    folder = tmp_path_factory.mktemp("agreement")
    enrollment = write_manifest(read_samples_manifest("enroll")[:20], folder / "enroll.jsonl")
    test = read_samples_manifest("test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASR_ADAPT_HOME", str(folder / "home"))
        profile = asr_adapt.enroll("voice", enrollment)
        report = asr_adapt.adapt_profile(profile, options=asr_adapt.TrainOptions(selection="fixed", fixed_epochs=3))
        assert report.saved, report.warnings
        yield {"folder": folder, "files": [str(u.audio) for u in test], "references": [u.text for u in test]}


def transcripts(stdout: str, files: list[str]) -> list[str]:
    texts = dict(line.split("\t", 1) for line in stdout.splitlines())
    return [texts[f] for f in files]


@pytest.fixture(scope="module")
def by_torch(sample):
    """``asr-adapt transcribe --profile voice``, greedy: what the others must agree with."""
    code, out, err = cli("transcribe", "--profile", "voice", *GREEDY, *sample["files"])
    assert code == 0, err
    texts = transcripts(out, sample["files"])
    code, out, err = cli("transcribe", *GREEDY, *sample["files"][:FEW])
    assert code == 0, err
    assert transcripts(out, sample["files"][:FEW]) != texts[:FEW]  # the adapter changes what is heard
    return texts


def wer(references: list[str], texts: list[str]) -> float:
    from asr_adapt.data.scoring import score

    return score(references, texts).wer


def assert_same(texts: list[str], expected: list[str], references: list[str]) -> None:
    """The same transcripts, or a WER within 1 point of theirs."""
    if texts != expected:
        ours, theirs = wer(references[:len(texts)], texts), wer(references[:len(texts)], expected[:len(texts)])
        assert abs(ours - theirs) <= 0.01, (ours, theirs, [(a, b) for a, b in zip(texts, expected) if a != b])


def assert_accuracy_kept(texts: list[str], expected: list[str], references: list[str]) -> None:
    """int8 weights cost the profile at most 1 WER point."""
    ours, theirs = wer(references, texts), wer(references, expected)
    assert ours <= theirs + 0.01, (ours, theirs, [(a, b) for a, b in zip(texts, expected) if a != b])


def test_the_merged_export_in_a_transformers_pipeline(sample, by_torch):
    from transformers import pipeline

    from asr_adapt.audio.io import load_audio

    out = sample["folder"] / "voice-merged"
    code, _, err = cli("profiles", "export", "voice", "--format", "merged", "-o", out)
    assert code == 0, err
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    texts = [asr({"raw": load_audio(f), "sampling_rate": 16000}, generate_kwargs={"num_beams": 1})["text"].strip()
             for f in sample["files"][:FEW]]
    assert_same(texts, by_torch, sample["references"])


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_the_ct2_export_in_faster_whisper(sample, by_torch, quantization):
    faster_whisper = pytest.importorskip("faster_whisper")
    import numpy as np

    from asr_adapt.audio.io import load_audio

    out = sample["folder"] / f"voice-ct2-{quantization}"
    code, _, err = cli("profiles", "export", "voice", "--format", "ct2", "--quantization", quantization, "-o", out)
    assert code == 0, err
    model = faster_whisper.WhisperModel(str(out), device="cpu", compute_type=quantization)
    texts = []
    for path in sample["files"]:
        audio = load_audio(path)
        segments, _ = model.transcribe(np.pad(audio, (0, 30 * 16000 - len(audio))), beam_size=1, language="en",
                                       temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
                                       vad_filter=False)
        texts.append(" ".join(s.text.strip() for s in segments))
    check = assert_same if quantization == "float32" else assert_accuracy_kept
    check(texts, by_torch, sample["references"])


@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_engine_ct2(sample, by_torch, dtype):
    pytest.importorskip("ctranslate2")
    code, out, err = cli("transcribe", "--profile", "voice", "--engine", "ct2", "--dtype", dtype, *GREEDY,
                         *sample["files"])
    assert code == 0, err
    check = assert_same if dtype == "float32" else assert_accuracy_kept  # auto: int8 on the CPU
    check(transcripts(out, sample["files"]), by_torch, sample["references"])
