"""The reporting checklist page: TRIPOD+AI's items as package data, each answered from the run's own results."""

import json
import re

import pandas as pd
import pytest
import yaml

from lesionscan.core import atomic, parameters
from lesionscan.study import checklist, results, runner
from lesionscan.study.results import CHAPTERS
from lesionscan.study.run_folder import Run

from factories import ROOT


def _run(tmp_path, profile="smoke", **changes):
    params = parameters.resolve(profile, changes)
    params["data_dir"] = str(tmp_path / "data")
    run = Run(dir=tmp_path / "run", params=params)
    for folder in ("tables", "metrics", "figures"):
        (run.dir / folder).mkdir(parents=True, exist_ok=True)
    return run


def _write_results(run, external=None, masks=True):
    """What the rules read from chapters 5 to 7; ``external``: chapter 7's statement (default: no external set)."""
    run.path(results.SA_VS_BASELINE).write_text(json.dumps({"verdict": "No evidence either way."}))
    run.path(results.RELIABILITY).write_bytes(b"\x89PNG")
    pd.DataFrame({"model": ["baseline"], "value": [0.5]}).to_csv(run.path(results.MODEL_COMPARISON), index=False)
    run.path(results.MASK_AGREEMENT_VERDICT).write_text(json.dumps(
        {"scored": True, "reason": None, "verdict": "Attention looks at the border."} if masks else
        {"scored": False, "reason": "this dataset has no lesion masks", "verdict": None}))
    pd.DataFrame({"group": ["sex"], "value": [0.5]}).to_csv(run.path(results.SUBGROUPS), index=False)
    external = external if external is not None else {
        "ran": False, "reason": "no external test set: the parameter external_test_dir is empty"}
    run.path(results.EXTERNAL_STATUS).write_text(json.dumps(external))
    if external["ran"]:
        pd.DataFrame({"model": ["baseline"], "value": [0.4]}).to_csv(run.path(results.EXTERNAL_COMPARISON),
                                                                     index=False)


def _answers(run, chapters_run=CHAPTERS):
    return {item.item: answer for item, answer in checklist.answers(run, chapters_run)}


# --- the checklist file ----------------------------------------------------------------------------------------
def test_the_checklist_file_is_well_formed():
    """TRIPOD+AI: items 1 to 27 in order, each alone or in parts a, b, c..., 52 in all, in the statement's sections."""
    items = checklist.items()
    labels = [item.item for item in items]
    assert len(labels) == len(set(labels)) == 52
    parsed = [re.fullmatch(r"(\d+)([a-z]?)", label).groups() for label in labels]
    numbers = [int(number) for number, _ in parsed]
    assert sorted(set(numbers)) == list(range(1, 28)) and numbers == sorted(numbers)
    for number in set(numbers):
        letters = [letter for n, letter in parsed if int(n) == number]
        assert letters == [""] or letters == [chr(ord("a") + i) for i in range(len(letters))], number
    order = [checklist.DOMAINS.index(item.domain) for item in items]  # an unknown domain raises here
    assert order == sorted(order) and set(order) == set(range(len(checklist.DOMAINS)))
    assert all(item.topic and item.text.endswith(".") and item.answer for item in items)
    assert {item.item: item.domain for item in items}["20c"] == "Results"


def test_every_answer_key_has_a_rule_and_every_rule_is_used():
    keys = [item.answer for item in checklist.items()]
    assert set(keys) == set(checklist.RULES) | set(checklist.FIXED) and not set(checklist.RULES) & set(checklist.FIXED)
    assert len(keys) == len(set(keys))  # one rule per item: each says something of its own


# --- answers from the run --------------------------------------------------------------------------------------
def test_a_run_without_an_external_set_says_the_external_item_was_skipped(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    answers = _answers(run)
    assert answers["20c"].status == checklist.SKIPPED
    assert answers["20c"].text == "chapter 7 ran; no external test set: the parameter external_test_dir is empty"
    assert answers["16"].status == checklist.PARTLY and "no external test set in this run" in answers["16"].text
    assert answers["23a"].status == checklist.ANSWERED  # intervals (chapter 5) and subgroups (chapter 7)
    page = checklist.checklist_markdown(run)
    assert "| 20c | Results |" in page and "**skipped in this run**: chapter 7 ran; no external test set" in page


def test_an_external_set_that_ran_is_linked(tmp_path):
    run = _run(tmp_path, "cpu")
    _write_results(run, external={"ran": True, "images": 1512})
    answers = _answers(run)
    assert answers["20c"].status != checklist.SKIPPED
    link = "[chapter 7](../notebooks/07_external)"
    assert link in answers["20c"].text and link in answers["16"].text and link in answers["5a"].text
    assert "on the external test set in " + link in answers["23a"].text
    assert not any(a.status == checklist.SKIPPED for a in answers.values())


def test_an_external_status_without_its_comparison_table_is_an_error(tmp_path):
    run = _run(tmp_path, "cpu")
    _write_results(run, external={"ran": True})
    run.path(results.EXTERNAL_COMPARISON).unlink()
    with pytest.raises(results.MissingResult, match="chapter 07_external"):
        checklist.checklist_markdown(run)


def test_chapters_that_did_not_run_are_skipped_and_never_linked(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    ran = CHAPTERS[:4]
    answers = _answers(run, ran)
    assert answers["23a"].status == answers["12e"].status == answers["25"].status == checklist.SKIPPED
    assert "chapter 5, which did not run" in answers["23a"].text
    assert "chapter 7 did not run, so no external test set was scored" in answers["20c"].text
    page = checklist.checklist_markdown(run, ran)
    assert set(re.findall(r"\]\(\.\./notebooks/(\w+)\)", page)) == set(ran)


def test_subgroups_are_partly_answered_when_chapter_7_did_not_run(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    answers = _answers(run, [ch for ch in CHAPTERS if ch != "07_external"])
    assert answers["23a"].status == checklist.PARTLY
    assert "subgroup results skipped in this run (chapter 7 did not run)" in answers["23a"].text


def test_maps_not_scored_for_want_of_masks_say_so(tmp_path):
    run = _run(tmp_path)
    _write_results(run, masks=False)
    assert "not scored against masks: this dataset has no lesion masks" in _answers(run)["25"].text


def test_a_result_missing_after_its_chapter_ran_names_that_chapter(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    run.path(results.SUBGROUPS).unlink()
    with pytest.raises(results.MissingResult, match="chapter 07_external"):
        checklist.checklist_markdown(run)


@pytest.mark.parametrize("profile, synthetic", [("smoke", True), ("cpu", False)])
def test_the_data_items_say_synthetic_images_when_the_data_were_synthetic(tmp_path, profile, synthetic):
    run = _run(tmp_path, profile)
    _write_results(run)
    answers = _answers(run)
    data_items = [item.item for item in checklist.items() if item.topic in ("Data", "Participants")
                  and item.domain == "Methods"]
    assert data_items == ["5a", "5b", "6a", "6b", "6c"]
    for label in ("5a", "5b", "6a", "6b", "9b", "17", "18e", "20b", "26"):
        assert ("synthetic images" in answers[label].text) == synthetic, label
    page = checklist.checklist_markdown(run)
    assert ("synthetic data (generated by lesionscan, not real dermoscopy)" in page) == synthetic


def test_the_summary_counts_every_item_once(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    page = checklist.checklist_markdown(run)
    counts = re.search(r"\*\*(\d+) of (\d+) answered, (\d+) partly, (\d+) not by this study, "
                       r"(\d+) skipped in this run\.\*\*", page).groups()
    answered, total, *rest = map(int, counts)
    assert total == 52 == answered + sum(rest) and rest[-1] == 1  # 20c: no external set
    assert page.count("\n| ") == 2 + 52  # the header, its rule and one row per item


def test_the_page_names_the_checklist_and_cites_it(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    page = checklist.checklist_markdown(run)
    assert page.startswith("# Reporting checklist: TRIPOD+AI\n")
    assert f"{{cite:p}}`{checklist.BIB_KEY}`" in page
    assert "BMJ 2024;385:e078378" in page and "doi:10.1136/bmj-2023-078378" in page
    assert "Items paraphrased from TRIPOD+AI" in page and "CLEAR Derm" in page
    bib = (ROOT / "references.bib").read_text()
    assert f"@article{{{checklist.BIB_KEY}," in bib and "10.1136/bmj-2023-078378" in bib


def test_every_link_points_at_a_page_of_the_book(tmp_path):
    """Chapters by their notebooks, other pages beside the generated ones in book/ (hand-written or generated)."""
    run = _run(tmp_path, "cpu")
    _write_results(run, external={"ran": True})
    page = checklist.checklist_markdown(run)
    pages = {path.stem for path in (ROOT / "book").glob("*.md")} | {"findings", "checklist", "reproducibility"}
    for target in re.findall(r"\]\(([^)]+)\)", page):
        if target.startswith("../notebooks/"):
            assert target.removeprefix("../notebooks/") in CHAPTERS, target
        else:
            assert target in pages, target


# --- writing the page and wiring it into the book ------------------------------------------------------------
def test_the_page_is_written_atomically(tmp_path, monkeypatch):
    run = _run(tmp_path)
    _write_results(run)
    page = tmp_path / "book" / "checklist.md"
    written = []
    real_write_text = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", lambda path, text: written.append(path) or real_write_text(path, text))
    assert checklist.write_checklist(run, page) == page
    before = page.read_text()
    assert written == [page] and before == checklist.checklist_markdown(run)
    run.path(results.EXTERNAL_STATUS).unlink()  # a page that cannot be built leaves the old one as it was
    with pytest.raises(results.MissingResult):
        checklist.write_checklist(run, page)
    assert page.read_text() == before and written == [page]
    assert sorted(path.name for path in page.parent.iterdir()) == ["checklist.md"]  # no temporary file left


def test_the_study_writes_the_page_beside_the_appendix(tmp_path, monkeypatch):
    run = _run(tmp_path)
    _write_results(run)
    monkeypatch.setattr(runner.findings, "write_findings", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner.findings, "write_banner", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner.reproducibility, "write_appendix", lambda *args, **kwargs: None)
    manifest = {"data_checksum": "sha256:0",
                "chapters": {name: {"status": "ok"} for name in CHAPTERS[:6]} | {"07_external": {"status": "failed"}}}
    runner._write_generated_pages(ROOT, run, manifest)
    page = run.generated_page("checklist.md").read_text()
    assert page == checklist.checklist_markdown(run, CHAPTERS[:6])
    assert "../notebooks/07_external" not in page


def test_the_table_of_contents_lists_the_page_before_the_appendix():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    about = next(part for part in toc["parts"] if part["caption"] == "About")
    files = [entry["file"] for entry in about["chapters"]]
    assert files.index("book/checklist") == files.index("book/reproducibility") - 1
