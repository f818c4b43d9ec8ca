"""The front page's findings come from the run's files, name the data, and say what did not run."""

import json

import pandas as pd
import pytest

from lesionscan.core import parameters
from lesionscan.study import findings, results
from lesionscan.study.run_folder import Run


def _run(tmp_path, profile="smoke", **changes):
    params = parameters.resolve(profile, changes)
    params["data_dir"] = str(tmp_path / "data")
    return Run(dir=tmp_path / "run", params=params)


def _write_results(run):
    (run.dir / "tables").mkdir(parents=True)
    (run.dir / "metrics").mkdir()
    pd.DataFrame([
        {"model": "soft_attention", "metric": "accuracy", "section": "Abstract", "report": 0.926, "ours": 0.7,
         "low": 0.65, "high": 0.75},
        {"model": "soft_attention", "metric": "accuracy", "section": "Table 4.2", "report": 0.91, "ours": 0.7,
         "low": 0.65, "high": 0.75},
        {"model": "baseline", "metric": "accuracy", "section": "Table 4.2", "report": 0.85, "ours": 0.6,
         "low": 0.55, "high": 0.66},
    ]).to_csv(run.path(results.REPORT_COMPARISON), index=False)
    run.metrics_path("soft_attention").write_text(json.dumps({"majority_baseline": {"accuracy": 0.801},
                                                              "epochs_trained": 13}))
    run.metrics_path("soft_attention_image").write_text(json.dumps({"epochs_trained": 7}))
    run.path(results.SA_VS_BASELINE).write_text(json.dumps({"verdict": "No evidence either way."}))
    pd.DataFrame([
        {"protocol": "seed", "metric": "balanced_accuracy", "test images": 828, "value": 0.55, "low": 0.5,
         "high": 0.6},
        {"protocol": "image", "metric": "balanced_accuracy", "test images": 1503, "value": 0.70, "low": 0.66,
         "high": 0.74},
    ]).to_csv(run.path(results.LEAKAGE_AUDIT), index=False)
    run.path(results.MASK_AGREEMENT_VERDICT).write_text(json.dumps({"scored": True, "reason": None,
                                                                    "verdict": "Attention looks at the border."}))
    pd.DataFrame([{"method": "soft attention", "median correlation with the average map": 0.998}]).to_csv(
        run.path(results.MAP_LIKENESS), index=False)


def test_findings_state_the_runs_numbers_beside_the_reports(tmp_path):
    run = _run(tmp_path)
    _write_results(run)
    text = findings.findings_markdown(run)
    assert "| accuracy, soft attention (Abstract) | 0.926 | 0.700 (0.650 to 0.750) |" in text
    assert "Table 4.2) | 0.910" not in text  # one row per claim: the first the report gives
    assert "| accuracy, baseline (Table 4.2) | 0.850 | 0.600 (0.550 to 0.660) |" in text
    assert "0.801" in text and "No evidence either way." in text and "Attention looks at the border." in text
    assert "0.700 (0.660 to 0.740) against 0.550 (0.500 to 0.600) under the `seed` split: +0.150" in text
    assert "(1,503 and 828 images), and so did training (7 and 13 epochs before early stopping)" in text
    assert "synthetic data" in text and "say nothing about the report" in text
    assert "border. Its map correlates with its own average over all test images at a median of 1.00" in text


def test_findings_say_what_did_not_run(tmp_path):
    run = _run(tmp_path, "cpu")
    run.dir.mkdir()
    text = findings.findings_markdown(run, chapters_run=results.CHAPTERS[:4])
    assert "was not run" in text and "not run (chapter 5)" in text and "not measured" in text
    assert "Leakage" not in text


@pytest.mark.parametrize("profile, words", [
    ("cpu", "reduced resolution (96 px against the report's 224 px) and no ImageNet pre-training"),
    ("paper", "the report's protocol"),
])
def test_data_description_names_what_limits_the_run(tmp_path, profile, words):
    assert words in findings.data_description(_run(tmp_path, profile))


def test_a_result_missing_after_its_chapter_ran_names_that_chapter(tmp_path):
    """A renamed or lost result is an error naming its writer, never "was not run"."""
    run = _run(tmp_path)
    run.dir.mkdir()
    with pytest.raises(results.MissingResult, match="chapter 05_ablation"):
        findings.findings_markdown(run)


def test_parts_the_profile_skips_are_said_to_be_skipped(tmp_path):
    run = _run(tmp_path, leakage_protocols="")
    _write_results(run)
    run.path(results.MASK_AGREEMENT_VERDICT).write_text(json.dumps(
        {"scored": False, "reason": "this dataset has no lesion masks", "verdict": None}))
    text = findings.findings_markdown(run)
    assert "Leakage" not in text  # no image-level model was trained: nothing to read, nothing said
    assert "**Where attention looks:** not measured: this dataset has no lesion masks" in text


def test_the_front_page_opens_with_the_profile_data_and_external_set(tmp_path):
    run = _run(tmp_path)
    (run.dir / "metrics").mkdir(parents=True)
    run.path(results.EXTERNAL_STATUS).write_text(json.dumps({"ran": False, "reason": "none named"}))
    text = findings.banner_markdown(run, "sha256:abc")
    assert text.startswith("```{admonition} What you are reading")
    assert "Profile `smoke`: synthetic data" in text and "random-initialised ResNet50" in text
    assert "Data checksum `sha256:abc`; external test set: none." in text
    run.path(results.EXTERNAL_STATUS).write_text(json.dumps({"ran": True, "scored": 1512, "layout": "ISIC 2018 Task 3",
                                                             "data_dir": "/data/isic2018-test"}))
    assert "1,512 images of `isic2018-test` (ISIC 2018 Task 3 layout; chapter 7)" in findings.banner_markdown(
        run, "sha256:abc")
    assert "external test set: not run (chapter 7)" in findings.banner_markdown(run, "x", chapters_run=["01_data"])


def test_a_data_synth_folder_passed_as_data_dir_is_still_called_synthetic(tmp_path):
    from lesionscan.data import synthetic

    run = _run(tmp_path, profile="cpu")
    (tmp_path / "data").mkdir()
    assert "synthetic" not in run.data_label
    (tmp_path / "data" / synthetic.MARKER).write_text("n_images=200\n")
    assert run.data_label.startswith("synthetic data") and "say nothing about the report" in \
        findings.data_description(run)
