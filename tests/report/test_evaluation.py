"""Scoring: normalization, WER/CER arithmetic, empty references, reports."""

from __future__ import annotations

import json

import pytest

from asr_adapt.core.errors import OptionsError
from asr_adapt.data.scoring import EvalReport, normalizer, score
from asr_adapt.report.eval_report import load_report, report_markdown, save_report


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize("a, b", [
    ("TWO SIX FOUR EIGHT", "2648"),
    ("Two, six, four, eight.", "2648."),
    ("ZERO THREE FIVE ONE", "zero three five one"),
    ("Hello, World!", "hello world"),
    ("I'm fine", "I am fine"),
    ("WE CALL IT BEAR", "We call it bear."),
])
def test_normalization_equivalences(a, b):
    normalize = normalizer()
    assert normalize(a) == normalize(b)


def test_normalizer_is_cached():
    assert normalizer() is normalizer()


def test_british_spellings_compare_equal_to_american():
    # OpenAI's spelling table comes from the whisper-normalizer package.
    assert normalizer()("The colour of the theatre") == normalizer()("the color of the theater")


# --------------------------------------------------------------------------- arithmetic


def test_one_substitution_one_deletion_over_four_words_is_half():
    report = score(["the cat sat down"], ["the hat sat"])
    assert report.wer == pytest.approx(0.5)
    assert (report.substitutions, report.deletions, report.insertions, report.hits) == (1, 1, 0, 2)
    assert report.reference_words == 4
    assert report.utterances[0].alignment == "the [cat->hat] sat [-down]"


def test_insertion_and_alignment_string():
    report = score(["the cat sat mat"], ["the hat sat on mat"])
    u = report.utterances[0]
    assert (u.substitutions, u.deletions, u.insertions) == (1, 0, 1)
    assert u.wer == pytest.approx(0.5)
    assert u.alignment == "the [cat->hat] sat [+on] mat"


def test_scoring_uses_normalized_text():
    report = score(["TWO SIX FOUR EIGHT", "Hello, World!"], ["2648.", "hello world"])
    assert report.wer == 0.0 and report.cer == 0.0
    assert report.utterances[0].normalized_reference == "2648"
    assert report.utterances[0].reference == "TWO SIX FOUR EIGHT"  # original kept


def test_cer_counts_characters():
    report = score(["abcd"], ["abxd"])
    assert report.cer == pytest.approx(0.25)
    assert report.reference_chars == 4


def test_perfect_and_totally_wrong():
    assert score(["hello there"], ["hello there"]).wer == 0.0
    report = score(["hello there"], [""])
    assert report.wer == 1.0 and report.deletions == 2
    assert report.utterances[0].alignment == "[-hello] [-there]"


def test_wer_is_pooled_over_words():
    # Utterance WERs are 100% (1 word) and 0% (9 words): the mean would be 50%,
    # pooled over words it is 1/10.
    report = score(["one", "a b c d e f g h i"], ["two", "a b c d e f g h i"])
    assert report.wer == pytest.approx(0.1)


# --------------------------------------------------------------------------- empty references


def test_empty_reference_counts_insertions_but_no_reference_words():
    report = score(["the cat", "", "uh"], ["the cat", "hello there", "um"])
    assert report.n_empty_references == 2  # "uh" normalizes to nothing
    assert report.reference_words == 2
    assert report.insertions == 2
    assert report.wer == pytest.approx(1.0)  # 2 errors / 2 reference words
    empty = report.utterances[1]
    assert empty.wer is None and empty.errors == 2
    assert empty.alignment == "[+hello] [+there]"
    assert report.utterances[2].errors == 0  # empty against empty: nothing wrong
    assert report.cer == pytest.approx(len("hello there") / len("the cat"))


def test_only_empty_references_give_undefined_rates():
    report = score([""], [""])
    assert report.wer is None and report.cer is None
    assert "n/a" in report_markdown(report)
    json.loads(report.to_json())  # still valid JSON (null, not NaN)


# --------------------------------------------------------------------------- per speaker


def test_per_speaker_pools_words():
    report = score(["a b c d", "e", "f g"], ["a b c x", "z", "f g"],
                   ids=["u1", "u2", "u3"], speakers=["s1", "s1", "s2"])
    s1 = report.per_speaker["s1"]
    assert (s1.n_utterances, s1.reference_words, s1.errors) == (2, 5, 2)
    assert s1.wer == pytest.approx(2 / 5)  # not (25% + 100%) / 2
    assert report.per_speaker["s2"].wer == 0.0
    assert [u.id for u in report.utterances] == ["u1", "u2", "u3"]


def test_defaults_for_ids_and_speakers():
    report = score(["a", "b"], ["a", "b"])
    assert [u.id for u in report.utterances] == ["1", "2"]
    assert list(report.per_speaker) == ["unknown"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(references=["a"], hypotheses=["a", "b"]), "2 hypotheses for 1 references"),
    (dict(references=["a"], hypotheses=["a"], speakers=[]), "0 speakers for 1 references"),
    (dict(references=["a", "b"], hypotheses=["a", "b"], ids=["x", "x"]), "ids must be unique"),
    (dict(references=[], hypotheses=[]), "nothing to score"),
    (dict(references=[None], hypotheses=["a"]), "reference 0 is NoneType"),
])
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        score(**kwargs)


# --------------------------------------------------------------------------- reports


def sample_report() -> EvalReport:
    return score(["the cat sat down", "hello world", "good | bye"],
                 ["the hat sat", "hello world", "good bye"],
                 ids=["u1", "u2", "u3"], speakers=["ann", "bob", "bob"],
                 meta={"model": "tiny.en", "adapter": None})


def test_meta_records_how_it_was_made():
    meta = sample_report().meta
    assert meta["model"] == "tiny.en"
    assert meta["normalizer"].startswith("whisper-english")
    assert meta["scorer"].startswith("jiwer ")
    custom = score(["a"], ["a"], normalize=str.lower, meta={"normalizer": "lower"})
    assert custom.meta["normalizer"] == "lower"


def test_json_round_trip(tmp_path):
    report = sample_report()
    data = json.loads(report.to_json())
    assert data["wer"] == pytest.approx(report.wer)
    assert data["per_speaker"]["ann"]["errors"] == 2
    assert EvalReport.from_dict(data) == report


def test_markdown_holds_the_numbers():
    report = sample_report()
    text = report_markdown(report)
    assert f"{100 * report.wer:.2f}" in text  # 2 errors / 8 words = 25.00
    assert "25.00" in text
    assert "| ann | 1 | 4 | 2 | 50.00 |" in text
    assert "| bob | 2 | 4 | 0 | 0.00 |" in text
    assert "the [cat->hat] sat [-down]" in text
    assert "good \\| bye" in text  # pipes in text do not break the table
    assert "**model**: tiny.en" in text


def test_markdown_sorts_worst_first_and_limits_rows():
    report = sample_report()
    text = report_markdown(report, max_utterances=1)
    assert "(1 of 3)" in text
    table = text.split("## Utterances")[1]
    assert "| u1 |" in table and "| u2 |" not in table
    full = report_markdown(report, max_utterances=None)
    assert full.index("| u1 |") < full.index("| u2 |")


def test_save_report_to_folder_and_file(tmp_path):
    report = sample_report()
    written = save_report(report, tmp_path / "out")
    assert [p.name for p in written] == ["report.json", "report.md"]
    assert load_report(written[0]) == report
    written = save_report(report, tmp_path / "before.json", formats=("json", "md"))
    assert [p.name for p in written] == ["before.json", "before.md"]
    assert "## Per speaker" in written[1].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.json", "before.md", "out"]


def test_save_report_rejects_unknown_format(tmp_path):
    with pytest.raises(OptionsError, match="report format 'pdf' is not supported"):
        save_report(sample_report(), tmp_path, formats=("pdf",))


def test_load_report_errors(tmp_path):
    with pytest.raises(OptionsError, match="no such report file"):
        load_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(OptionsError, match="not a report"):
        load_report(tmp_path / "bad.json")
