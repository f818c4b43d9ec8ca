"""End to end: the smoke study runs every chapter and builds the book, offline, on a CPU.

One study run (``smoke_run`` in tests/conftest.py, minutes) is shared by the assertions below.
"""

import json
import re
from html import unescape

import pandas as pd
import pytest

from lesionscan.core.classes import CLASSES
from lesionscan.study import runner

from factories import SMOKE_EXTERNAL_IMAGES, folder_state

pytestmark = pytest.mark.slow

# Chance balanced accuracy over 7 classes is 1/7 = 0.143. The smoke SA model
# scored 0.58 to 0.63 on the synthetic test images with 60 training images per
# class and epoch; with the current 30 (issue 12's budget) it scored 0.530
# (baseline 0.413, leakage model 0.458; seed 0, 2-core CPU). The margin leaves
# room for numerical differences between machines while staying far above
# chance.
MIN_BALANCED_ACCURACY = 0.35


def test_book_is_built_with_every_chapter(smoke_run):
    run_dir, index = smoke_run
    assert index.name == "index.html" and index.exists()
    html = index.parent
    for chapter in runner.CHAPTERS:
        page = html / "notebooks" / f"{chapter}.html"
        assert page.exists(), page
        text = page.read_text()
        assert "<img" in text or "<table" in text, f"{chapter} shows no figure or table"
        assert "Traceback" not in text


def test_chapters_show_their_figures(smoke_run):
    run_dir, _ = smoke_run
    html = (run_dir / "_build" / "html" / "notebooks")
    expected = {"01_data": 3, "02_preprocessing": 2, "03_baseline": 3, "04_soft_attention": 3,
                "05_ablation": 3, "06_interpretability": 1 + len(CLASSES), "07_external": 3}
    for chapter, n_figures in expected.items():
        assert (html / f"{chapter}.html").read_text().count("<img") >= n_figures, chapter
    assert "synthetic" in (html / "03_baseline.html").read_text()


def test_chapter_7_scores_both_models_on_the_external_set_beside_the_test_subset(smoke_run):
    run_dir, index = smoke_run
    status = json.loads((run_dir / "metrics" / "external_validation.json").read_text())
    assert status["ran"] and status["layout"] == "ISIC 2018 Task 3"
    assert status["images"] == status["scored"] == SMOKE_EXTERNAL_IMAGES and status["shared_with_run"] == 0
    predictions = pd.read_csv(run_dir / "tables" / "external_predictions.csv")
    assert predictions.groupby("model").size().to_dict() == {"baseline": SMOKE_EXTERNAL_IMAGES,
                                                             "soft_attention": SMOKE_EXTERNAL_IMAGES}
    comparison = pd.read_csv(run_dir / "tables" / "external_comparison.csv")
    internal = json.loads((run_dir / "metrics" / "soft_attention.json").read_text())
    row = comparison[(comparison["model"] == "soft_attention") & (comparison["metric"] == "balanced_accuracy")]
    assert row["internal"].iloc[0] == pytest.approx(internal["balanced_accuracy"])
    assert row["external_low"].iloc[0] <= row["external"].iloc[0] <= row["external_high"].iloc[0]
    page = unescape(re.sub(r"<[^>]+>", "", (index.parent / "notebooks" / "07_external.html").read_text()))
    for needle in ("external (95 % CI)", "MetaOptima", "0.885", "No external image is also in the run",
                   "Recall of each class"):
        assert needle in page, needle
    assert (index.parent / "notebooks" / "07_external.html").read_text().count("<img") >= 3


def test_chapter_7_breaks_the_test_subset_into_subgroups_that_add_up(smoke_run):
    run_dir, _ = smoke_run
    table = pd.read_csv(run_dir / "tables" / "subgroups.csv")
    test_images = len(pd.read_csv(run_dir / "predictions" / "soft_attention.csv"))
    for (model, variable), rows in table[table["variable"] != "all"].groupby(["model", "variable"]):
        assert rows["images"].sum() == test_images, (model, variable)
    assert set(table["variable"]) == {"all", "age band", "sex", "body site", "ground truth"}
    assert table[table["variable"] == "all"]["images"].tolist() == [test_images, test_images]


def test_appendix_is_generated_from_the_manifest(smoke_run):
    run_dir, index = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    html = (index.parent / "book" / "reproducibility.html").read_text()
    page = unescape(re.sub(r"<[^>]+>", "", html))  # the text a reader sees (code blocks are highlighted in spans)
    assert manifest["data_checksum"] in page and manifest["commit"].removesuffix("+dirty") in page
    for chapter in runner.CHAPTERS:
        assert chapter in page, chapter
    assert "lesionscan study --profile smoke" in page and manifest["versions"]["tensorflow"] in page
    assert "machine" in manifest and manifest["machine"]["cpus"] >= 1
    assert list((index.parent / "_downloads").rglob("manifest.json")), "the appendix links the manifest"


def test_artifacts_follow_the_layout(smoke_run):
    run_dir, _ = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["profile"] == "smoke"
    assert manifest["data_checksum"].startswith("sha256:")
    assert set(runner.CHAPTERS) <= set(manifest["chapters"])
    assert {"tensorflow", "keras", "python"} <= set(manifest["versions"])
    assert manifest["parameters"]["seed"] == manifest["seed"] == 0
    split = pd.read_csv(run_dir / "split.csv")
    assert set(split["subset"]) == {"train", "val", "test"}
    for name in ("baseline", "soft_attention"):
        assert (run_dir / "models" / f"{name}.keras").exists()
        history = pd.read_csv(run_dir / "models" / f"{name}_history.csv")
        assert {"loss", "val_loss", "phase"} <= set(history.columns)
        predictions = pd.read_csv(run_dir / "predictions" / f"{name}.csv")
        assert list(predictions.columns[:2]) == ["image_id", "dx"]
        assert [f"p_{c}" for c in CLASSES] == [c for c in predictions.columns if c.startswith("p_")]
        assert set(predictions["image_id"]) == set(split.loc[split["subset"] == "test", "image_id"])
    assert any((run_dir / "figures").glob("*.png")) and any((run_dir / "tables").glob("*.csv"))
    written = {path for info in manifest["chapters"].values() for path in info.get("wrote", [])}
    for folder in ("models", "predictions", "metrics", "figures", "tables"):
        for path in (run_dir / folder).iterdir():
            assert f"{folder}/{path.name}" in written, f"{folder}/{path.name} is in no chapter's manifest entry"


def test_soft_attention_model_learns(smoke_run):
    run_dir, _ = smoke_run
    metrics = json.loads((run_dir / "metrics" / "soft_attention.json").read_text())
    assert metrics["balanced_accuracy"] > MIN_BALANCED_ACCURACY
    assert metrics["majority_baseline"]["balanced_accuracy"] < 0.15


def test_interpretability_scores_every_map_against_the_masks(smoke_run):
    """Chapter 6 scores each map on every test image; the centre prior beats chance on centred synthetic lesions.

    Measured on the smoke run (seed 0, 96 px, 3 x 3 feature grid): the
    soft-attention map does NOT beat the uniform map (energy inside the mask
    0.134 against 0.159; it favours the right-hand column of the grid whatever
    the image); the centre prior scores 0.338. The issue asked for a test that
    attention beats the uniform map; that is false at this budget, so the
    test pins what holds and the chapter states the verdict in words.
    """
    from lesionscan.analysis import agreement
    from lesionscan.study import interpretability

    run_dir, index = smoke_run
    table = pd.read_csv(run_dir / "tables" / "mask_agreement.csv")
    n_test = len(pd.read_csv(run_dir / "predictions" / "soft_attention.csv"))
    overall = table[table["class"] == "all"].set_index(["method", "metric"])
    assert set(overall.index.get_level_values("method")) == set(interpretability.METHODS) | set(
        agreement.REFERENCE_METHODS)
    assert (overall["n"] == n_test).all()
    centre, uniform = "centre prior (Gaussian)", "uniform"
    for metric in agreement.METRICS:
        assert overall.loc[(centre, metric), "low"] > overall.loc[(uniform, metric), "high"], metric
    verdict = json.loads((run_dir / "metrics" / "mask_agreement_verdict.json").read_text())["verdict"]
    assert verdict.startswith("The soft-attention map points at the lesion")
    page = (index.parent / "notebooks" / "06_interpretability.html").read_text()
    assert verdict.split(":")[0] in page
    front = (index.parent / "book" / "intro.html").read_text()
    assert "What this run found" in front and "synthetic data" in front


def test_same_profile_and_seed_give_identical_metrics(smoke_run, tmp_path_factory):
    """Determinism end to end: a second smoke study writes the same metrics and predictions."""
    first_dir, _ = smoke_run
    artifacts = tmp_path_factory.mktemp("again") / "artifacts"
    runner.run_study("smoke", artifacts=str(artifacts), overrides=["training_cache=false"],
                     chapters=runner.CHAPTERS[:4], build=False)
    second_dir = artifacts / "smoke"
    assert (first_dir / "split.csv").read_bytes() == (second_dir / "split.csv").read_bytes()
    for name in ("baseline", "soft_attention"):
        first = json.loads((first_dir / "metrics" / f"{name}.json").read_text())
        second = json.loads((second_dir / "metrics" / f"{name}.json").read_text())
        assert second["training"]["source"] == "trained in this run" and second["training"]["cache_entry"] is None
        first.pop("training"), second.pop("training")  # how long training took differs; nothing else may
        assert first == second, name
        assert ((first_dir / "predictions" / f"{name}.csv").read_bytes()
                == (second_dir / "predictions" / f"{name}.csv").read_bytes())


def test_the_smoke_ablation_trains_heads_on_the_baselines_backbone(smoke_run):
    """Shared-backbone mode (smoke's): every variant's head, three seeds each, on the baseline's weights."""
    import numpy as np

    from lesionscan.model import saving

    run_dir, index = smoke_run
    spread = pd.read_csv(run_dir / "tables" / "ablation_seed_spread.csv")
    assert set(spread["model"]) == {"baseline", "soft_attention", "multiscale", "class_attention",
                                    "soft_attention_public"}
    assert (spread["n_seeds"] == 3).all()
    baseline = saving.load_model(run_dir / "models" / "baseline.keras")
    head = saving.load_model(run_dir / "models" / "multiscale_head_seed2.keras")
    np.testing.assert_array_equal(baseline.get_layer("conv1_conv").get_weights()[0],
                                  head.get_layer("conv1_conv").get_weights()[0])
    assert "Ablation mode: shared backbone" in (index.parent / "notebooks" / "05_ablation.html").read_text()


def test_an_interrupted_study_leaves_the_last_run_untouched_and_a_rerun_completes(smoke_run, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while chapter 3 runs, then the same study again.

    Issue 13: a study that failed or was interrupted deleted the last good run. Now the complete run and its
    book stay as they were, the interrupted run is marked so in its own folder, and no chapter kernel is left.
    The smoke study's artifacts (its run and training cache) are copied as hard links first, so the other
    tests keep reading theirs; the writers only ever rename files into place, never edit them.
    """
    import os
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from lesionscan.study import run_folder

    artifacts = tmp_path / "artifacts"
    shutil.copytree(smoke_run[0].parent, artifacts, copy_function=os.link)
    run_dir = artifacts / "smoke"
    index = run_dir / smoke_run[1].relative_to(smoke_run[0])
    before = folder_state(run_dir, by_stat=(".keras",))
    process = subprocess.Popen([str(Path(sys.executable).parent / "lesionscan"), "study", "--profile", "smoke",
                                "--artifacts", str(artifacts)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.startswith("=== [3/") and "03_baseline" in line:
                break
        # At the instant papermill starts the chapter's kernel: where a finaliser once swallowed the Ctrl-C
        # (study.interrupts); one Ctrl-C must still stop the study, at the latest as the chapter's next cell starts.
        os.killpg(process.pid, signal.SIGINT)
        seen.append(process.communicate(timeout=180)[0])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = "".join(seen)
    assert process.returncode == 130, output
    assert "lesionscan: interrupted" in output and "Traceback" not in output
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no chapter kernel of the interrupted study is left running
    assert folder_state(run_dir, by_stat=(".keras",)) == before, "the interrupted study changed the last complete run"
    partial = run_folder.incomplete_dir(artifacts, "smoke")
    manifest = json.loads((partial / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["stopped"] == {"chapter": "03_baseline", "reason": "Ctrl-C"}
    assert f"The last complete run is untouched: {run_dir}" in output

    # A rerun completes and replaces both (two chapters, no book: the cost of CI's long pole; the swap is the same)
    again = runner.run_study("smoke", artifacts=str(artifacts), chapters=runner.CHAPTERS[:2], build=False)
    assert again == run_dir and not partial.exists() and not index.exists()
    rerun = json.loads((run_dir / "manifest.json").read_text())
    assert rerun["status"] == "ok" and tuple(rerun["chapters"]) == runner.CHAPTERS[:2]
