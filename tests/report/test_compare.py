"""Before/after comparison of two reports: counts, math, markdown, chart and files (no model)."""

from __future__ import annotations

import json

import pytest

from fake_reports import CASES, WORDS, make_report
from asr_adapt.report.compare import CompareError, compare_reports, relative_reduction
from asr_adapt.report.compare_files import save_comparison
from asr_adapt.report.plot import plot_comparison
from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.report.eval_report import load_report
from asr_adapt.data.scoring import score

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: id -> (speaker, reference, hypothesis before, hypothesis after); word errors noted.


@pytest.fixture
def comparison():
    return compare_reports(make_report(2, meta={"model": "base"}),
                           make_report(3, meta={"model": "base+me"}),
                           meta={"profile": "me", "options": {"beam_size": 1}})


def test_overall_numbers_and_relative_reduction(comparison):
    assert comparison.n_utterances == 6 and comparison.reference_words == WORDS
    assert comparison.wer_before == pytest.approx(5 / WORDS)
    assert comparison.wer_after == pytest.approx(4 / WORDS)
    assert comparison.wer_change == pytest.approx(-1 / WORDS)
    assert comparison.wer_relative_reduction == pytest.approx(0.2)
    assert comparison.cer_relative_reduction == pytest.approx(
        (comparison.cer_before - comparison.cer_after) / comparison.cer_before)


def test_relative_reduction_edge_cases():
    assert relative_reduction(0.5, 0.25) == pytest.approx(0.5)
    assert relative_reduction(0.2, 0.3) == pytest.approx(-0.5)
    assert relative_reduction(0.0, 0.1) is None
    assert relative_reduction(None, 0.1) is None


def test_counts_fixed_broken_unchanged(comparison):
    assert (comparison.fixed, comparison.broken, comparison.unchanged) == (3, 2, 1)


def test_per_speaker(comparison):
    alice, bob, carol = (comparison.per_speaker[s] for s in ("alice", "bob", "carol"))
    assert list(comparison.per_speaker) == ["alice", "bob", "carol"]
    assert (alice.n_utterances, alice.reference_words, alice.errors_before, alice.errors_after) == (2, 8, 3, 0)
    assert alice.wer_before == pytest.approx(3 / 8) and alice.wer_after == 0
    assert alice.relative_reduction == pytest.approx(1.0)
    assert bob.wer_before == pytest.approx(2 / 9) and bob.wer_after == pytest.approx(4 / 9)
    assert bob.relative_reduction == pytest.approx(-1.0)
    assert carol.wer_before == 0 and carol.relative_reduction is None


def test_worst_regressions_and_best_fixes_in_order(comparison):
    assert [(u.id, u.errors_before, u.errors_after) for u in comparison.worst_regressions] == [
        ("u3", 0, 2), ("u5", 0, 1)]
    assert [u.id for u in comparison.best_fixes] == ["u1", "u2", "u4"]  # -2, then ties by id
    first = comparison.worst_regressions[0]
    assert (first.speaker, first.reference, first.hypothesis_before, first.hypothesis_after) == (
        "bob", "a small step", "a small step", "a tall step here")


def test_max_examples_caps_the_lists():
    limited = compare_reports(make_report(2), make_report(3), max_examples=1)
    assert [u.id for u in limited.best_fixes] == ["u1"]
    assert limited.fixed == 3  # the counts still cover every utterance


def test_different_ids_are_an_error():
    with pytest.raises(CompareError, match=r"1 only in 'unadapted' \(first: 'u6'\)") as info:
        compare_reports(make_report(2), make_report(3, ids=["u1", "u2", "u3", "u4", "u5"]))
    assert isinstance(info.value, AsrAdaptError)  # the CLI shows it as one line


def test_different_references_are_an_error():
    other = score(["something else", *[CASES[i][1] for i in list(CASES)[1:]]],
                  [CASES[i][3] for i in CASES], ids=list(CASES))
    with pytest.raises(CompareError, match="'u1' has different references"):
        compare_reports(make_report(2), other)


def test_meta_keeps_caller_and_both_reports(comparison):
    meta = comparison.meta
    assert meta["profile"] == "me" and meta["options"] == {"beam_size": 1}
    assert meta["before"]["model"] == "base" and meta["after"]["model"] == "base+me"


def test_json_round_trip(comparison):
    data = json.loads(comparison.to_json())
    assert data["labels"] == ["unadapted", "adapted"]
    assert data["fixed"] == 3 and data["per_speaker"]["bob"]["errors_after"] == 4
    assert data["worst_regressions"][0]["hypothesis_after"] == "a tall step here"
    assert "before" not in data and "after" not in data  # the full reports go to their own files


def test_markdown_contains_the_numbers(comparison):
    text = comparison.to_markdown()
    assert text.startswith("# Comparison: unadapted vs adapted")
    assert "26.32" in text and "21.05" in text  # 5/19 and 4/19
    assert "20.0% relative reduction" in text
    assert "| alice | 2 | 8 | 37.50 | 0.00 | 100.0% |" in text
    assert "| bob | 3 | 9 | 22.22 | 44.44 | -100.0% |" in text
    assert "Fixed (fewer word errors): **3** · broken (more): **2** · unchanged: **1**" in text
    assert "| u3 | bob | 0 → 2 | a small step | a small step | a tall step here |" in text
    assert "## Best fixes" in text and "| u1 | alice | 2 → 0 |" in text
    assert "**profile**: me" in text
    assert "Plot:" not in text  # nothing saved yet


def test_markdown_rows_limit(comparison):
    text = comparison.to_markdown(max_rows=1)
    assert "## Best fixes (1 of 3 listed)" in text
    assert "| u2 |" not in text


def test_markdown_says_increase_when_worse():
    worse = compare_reports(make_report(3), make_report(2), labels=("old", "new"))
    text = worse.to_markdown()
    assert "25.0% relative increase" in text  # 4/19 -> 5/19
    assert "WER % old" in text and "Hypothesis new" in text


def test_plot_is_a_real_png(comparison, tmp_path):
    from matplotlib.image import imread

    path = plot_comparison(comparison, tmp_path / "chart.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1024
    height, width = imread(path).shape[:2]
    assert (height, width) == (480, 600)
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]  # no temporary file left


def test_plot_caps_many_speakers(tmp_path):
    from matplotlib.image import imread

    n = 40
    refs = ["hello there world"] * n
    report = score(refs, refs, ids=[f"u{i}" for i in range(n)], speakers=[f"s{i:02d}" for i in range(n)])
    path = plot_comparison(compare_reports(report, report), tmp_path / "many.png")
    height, width = imread(path).shape[:2]
    assert height == 480 and width == round(100 * (1.2 + 0.6 * 31))  # overall + 30 speakers


def test_save_comparison_writes_every_file(comparison, tmp_path):
    folder = tmp_path / "out"
    written = save_comparison(comparison, folder, max_rows=5)
    assert sorted(p.name for p in written) == ["after.json", "before.json", "compare.json",
                                               "compare.md", "compare.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)
    assert (folder / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((folder / "compare.json").read_text())["plot"] == "compare.png"
    assert "Plot: [compare.png](compare.png)" in (folder / "compare.md").read_text()
    assert load_report(folder / "before.json").wer == pytest.approx(5 / WORDS)
    assert load_report(folder / "after.json").wer == pytest.approx(4 / WORDS)


def test_domain_picture_is_copied_beside_the_report_and_linked(tmp_path):
    from asr_adapt.report.profile_compare import adaptation_facts

    picture = tmp_path / "profile" / "domain-x.png"
    picture.parent.mkdir()
    picture.write_bytes(PNG_MAGIC + b"picture")
    metrics = {"domain_confusion": True, "domain_accuracy": 0.64, "unlabeled_minutes": 5.3,
               "domain_projection": {"probe_accuracy_before": 0.98, "probe_accuracy_after": 0.71},
               "domain_plot": str(picture)}
    facts = adaptation_facts(metrics)
    assert facts["domain confusion"] == ("on, 5.3 min of unlabeled audio, domain head 64% accurate at the end "
                                         "(50% = fooled)")
    assert facts["labeled vs unlabeled, linear probe"].startswith("98% before -> 71% after")
    comparison = compare_reports(make_report(2), make_report(3), meta=facts)
    folder = tmp_path / "out"
    written = save_comparison(comparison, folder)
    assert (folder / "domain.png").read_bytes() == picture.read_bytes() and folder / "domain.png" in written
    markdown = (folder / "compare.md").read_text()
    assert "**domain confusion**: on, 5.3 min" in markdown and "[domain.png](domain.png)" in markdown
    assert "98% before -> 71% after" in markdown


def test_no_domain_picture_when_the_profile_has_none_or_it_is_gone(tmp_path):
    from asr_adapt.report.profile_compare import adaptation_facts

    assert adaptation_facts({}) == {}
    assert adaptation_facts({"domain_confusion": False}) == {"domain confusion": "off"}
    facts = adaptation_facts({"domain_confusion": False, "domain_plot": str(tmp_path / "deleted.png")})
    comparison = compare_reports(make_report(2), make_report(3), meta=facts)
    written = save_comparison(comparison, tmp_path / "out")
    assert "domain.png" not in [p.name for p in written] and comparison.domain_plot is None
    assert "domain.png" not in (tmp_path / "out" / "compare.md").read_text()


def test_the_report_says_what_self_training_kept():
    from asr_adapt.report.profile_compare import adaptation_facts

    facts = adaptation_facts({"domain_confusion": False, "self_training": {
        "kept": 235, "pieces": 336, "kept_minutes": 17.1, "round_one_heldout_wer": 0.237,
        "round_two_heldout_wer": 0.169, "kept_round": 2}})
    assert facts["self-training"] == ("235 of 336 unlabeled pieces pseudo-labelled and kept (17.1 min); held-out WER "
                                      "23.7% after round one, 16.9% after round two; round 2 kept")
    markdown = compare_reports(make_report(2), make_report(3), meta=facts).to_markdown()
    assert "**self-training**: 235 of 336" in markdown
    assert "self-training" not in adaptation_facts({"domain_confusion": False, "self_training": None})
