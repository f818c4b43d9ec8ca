"""End to end: studies of their own, beside the shared smoke study of test_study.py (a failing chapter, a rerun
with another seed in the same folder). They run on any pytest-xdist worker (tests/conftest.py).
"""

import json

import pandas as pd
import pytest

from lesionscan.study import runner

pytestmark = pytest.mark.slow


def test_a_failing_chapter_stops_the_run_naming_chapter_and_error(tmp_path):
    """A chapter that raises stops the study with its name and the cell's error."""
    from lesionscan.core.errors import ChapterError
    from lesionscan.study import run_folder

    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "99_broken.py").write_text(
        '# %% tags=["parameters"]\nprofile = "smoke"\nartifacts_dir = "."\ndata_dir = None\noverrides = {}\n\n'
        '# %%\nraise ValueError("the data folder was empty")\n')
    run = run_folder.Run(dir=tmp_path / "run", params={"profile": "smoke"})
    run.dir.mkdir()
    stage = tmp_path / "stage"
    (stage / "notebooks").mkdir(parents=True)
    message = r"chapter 99_broken failed in cell \d+: ValueError: the data folder was empty"
    with pytest.raises(ChapterError, match=message):
        runner.execute_chapter(root, "99_broken", stage, run)


# Small enough for two runs in a few minutes: 32 px, one epoch, no ablation variants, few resamples.
_TINY = ["synthetic_images=400", "image_size=32", "epochs=1", "balance_target=8", "bootstrap_resamples=20",
         "ablation_models=", "ablation_seeds=1", "explain_per_class=1"]


def test_a_rerun_with_another_seed_reads_only_its_own_outputs(tmp_path):
    """Seed 0, then seed 1 in the same artifacts folder: every split, model and table the second run has is its own.

    Before the run folder owned its paths, the leakage audit reused the first
    run's ``splits/image.csv`` (for synthetic data a split of another data set).
    """
    from lesionscan.data import ham10000, split

    artifacts = tmp_path / "artifacts"
    chapters = runner.CHAPTERS[:5]
    runner.run_study("smoke", artifacts=str(artifacts), overrides=_TINY + ["seed=0"], chapters=chapters, build=False)
    runner.run_study("smoke", artifacts=str(artifacts), overrides=_TINY + ["seed=1"], chapters=chapters, build=False)
    run_dir = artifacts / "smoke"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["status"] == "ok"
    written = {path for info in manifest["chapters"].values() for path in info["wrote"]} | set(manifest["prepared"])
    outputs = {path.relative_to(run_dir).as_posix() for folder in ("models", "predictions", "metrics", "tables",
                                                                   "figures", "splits")
               for path in (run_dir / folder).rglob("*") if path.is_file()} | {"split.csv"}
    assert outputs == written, "an output the second run did not write: " + ", ".join(sorted(outputs - written))

    dataset = ham10000.load_dataset(manifest["data_dir"], verify_images=False)
    assert "seed1" in manifest["data_dir"]  # the synthetic set of seed 1, not the first run's
    for protocol, model in (("seed", "soft_attention"), ("image", "soft_attention_image")):
        expected = split.make_split(dataset, protocol, seed=1)
        test_ids = set(expected.loc[expected["subset"] == "test", "image_id"])
        assert set(pd.read_csv(run_dir / "predictions" / f"{model}.csv")["image_id"]) == test_ids, protocol
    leakage = pd.read_csv(run_dir / "tables" / "leakage_audit.csv")
    assert set(leakage["protocol"]) == {"seed", "image"}


def test_a_book_without_an_external_set_says_how_to_get_one(tmp_path):
    """The default: no external_test_dir. Chapter 7 still shows the subgroups, its external section is the recipe
    for getting the data, and the book builds without a warning (the build fails on one)."""
    import re
    from html import unescape

    artifacts = tmp_path / "artifacts"
    index = runner.run_study("smoke", artifacts=str(artifacts), overrides=_TINY + ["leakage_protocols="])
    status = json.loads((artifacts / "smoke" / "metrics" / "external_validation.json").read_text())
    assert status == {"ran": False, "reason": "no external test set: the parameter external_test_dir is empty"}
    assert not (artifacts / "smoke" / "tables" / "external_comparison.csv").exists()
    page = unescape(re.sub(r"<[^>]+>", "", (index.parent / "notebooks" / "07_external.html").read_text()))
    assert "This run had no external test set" in page and "lesionscan data download --isic2018 test" in page
    assert "Subgroups of the test subset" in page
