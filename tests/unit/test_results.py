"""The catalogue of declared results: names live there only, and pages show declared tables only."""

import re

import pytest

from lesionscan.study import results, runner

from factories import ROOT


def _sources():
    yield from (ROOT / "lesionscan").rglob("*.py")
    yield from (ROOT / "notebooks").glob("*.py")
    yield from (ROOT / "book").glob("*.md")


def test_no_declared_result_name_is_spelled_outside_the_catalogue():
    """A result name in quotes anywhere but results.py is a second spelling that a rename would miss."""
    names = {r.name for r in results.CATALOGUE if not r.is_pattern and r.kind != results.SPLIT}
    names |= {r.name.split("{")[0] for r in results.CATALOGUE if r.is_pattern and r.name.split("{")[0]}
    offenders = []
    for path in _sources():
        if path.name == "results.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for quoted in re.findall(r"""["']([a-z_]+)["']""", line):
                if quoted in names:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {quoted!r}")
    assert not offenders, "\n".join(offenders)


def test_every_chapter_declares_what_it_writes_and_names_are_unique():
    for chapter in results.CHAPTERS:
        assert results.declared_by(chapter) or chapter in ("03_baseline", "04_soft_attention"), chapter
    paths = [r.relative_path for r in results.CATALOGUE if not r.is_pattern]
    assert len(paths) == len(set(paths))
    assert results.TRAINING_CURVES.of(model="baseline").chapter == "03_baseline"
    assert results.MODEL_METRICS.of(model="multiscale").relative_path == "tables/multiscale_metrics.csv"
    with pytest.raises(ValueError, match="pattern"):
        _ = results.EXPLANATIONS.relative_path


def test_pages_show_only_declared_tables(tmp_path):
    shown = runner.page_results(ROOT)
    assert "tables/model_parameters.csv" in shown and shown["tables/model_parameters.csv"].chapter == "05_ablation"
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "page.md").write_text("```{csv-table} x\n:file: ../tables/not_a_result.csv\n```\n")
    with pytest.raises(Exception, match="not_a_result.csv, which is no declared result"):
        runner.page_results(tmp_path)
