"""The run folder owns its paths: a run with other parameters never reads an earlier run's outputs."""

import json

import pandas as pd
import pytest

from lesionscan.core import parameters
from lesionscan.study import results, run_folder


@pytest.fixture(scope="module")
def data_dir(synthetic_set):
    return synthetic_set(200, 48, seed=2)


def _table(run, name="leakage_audit"):
    run.path(results.LEAKAGE_AUDIT).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"x": [1]}).to_csv(run.path(results.LEAKAGE_AUDIT), index=False)


def test_other_parameters_clear_the_old_results_but_keep_the_last_book(tmp_path, data_dir):
    run = run_folder.create("smoke", tmp_path, data_dir, {"seed": 0})
    _table(run)
    (run.dir / "_build" / "html").mkdir(parents=True)
    (run.dir / "_build" / "html" / "index.html").write_text("the last book")
    same = run_folder.create("smoke", tmp_path, data_dir, {"seed": 0})
    assert same.path(results.LEAKAGE_AUDIT).exists()  # same parameters: a chapter reruns on the same results
    other = run_folder.create("smoke", tmp_path, data_dir, {"seed": 1})
    assert not other.path(results.LEAKAGE_AUDIT).exists()
    assert (other.dir / "_build" / "html" / "index.html").read_text() == "the last book"
    assert json.loads((other.dir / run_folder.PARAMS_FILE).read_text())["seed"] == 1
    other.clear_outputs()
    assert not (other.dir / "_build").exists()


def test_splits_are_keyed_by_what_they_depend_on(tmp_path, data_dir):
    params = parameters.resolve("smoke", {"seed": 0})
    params["data_dir"] = str(data_dir)
    first = run_folder.Run(dir=tmp_path / "run", params=params)
    image_split = first.split_table("image")
    again = run_folder.Run(dir=tmp_path / "run", params=dict(params, seed=1))
    other = again.split_table("image")
    assert len(list((tmp_path / "run" / "splits").glob("image-*.csv"))) == 2  # one file per key, none reused
    assert not image_split.equals(other)
    pd.testing.assert_frame_equal(first.split_table("image"), image_split)  # same key: read back, same rows
    assert set(first.split_table()["subset"]) == {"train", "val", "test"}


def test_reading_a_missing_result_names_the_chapter_that_writes_it(tmp_path):
    run = run_folder.Run(dir=tmp_path, params=parameters.resolve("smoke"))
    with pytest.raises(results.MissingResult, match="chapter 05_ablation"):
        run.read(results.LEAKAGE_AUDIT)
    with pytest.raises(results.MissingResult, match="model 'multiscale' is written by chapter 05_ablation"):
        run.read_metrics("multiscale")
    with pytest.raises(results.MissingResult, match="chapter 03_baseline"):
        run.read_predictions("baseline")


def test_a_declared_result_round_trips_by_kind(tmp_path):
    run = run_folder.Run(dir=tmp_path, params=parameters.resolve("smoke"))
    frame = pd.DataFrame({"metric": ["accuracy"], "value": [0.5]})
    assert run.save(results.SEEDS, frame) is frame
    pd.testing.assert_frame_equal(run.read(results.SEEDS), frame)
    run.save(results.SA_VS_BASELINE, {"verdict": "none"})
    assert run.read(results.SA_VS_BASELINE) == {"verdict": "none"}
    assert run.path(results.SEEDS) == tmp_path / "tables" / "seeds.csv"
    assert results.name_of("figures/explanations_mel.png") == "explanations_mel (figure)"
    assert results.name_of("models/soft_attention_image_history.csv") == "soft_attention_image (history)"
