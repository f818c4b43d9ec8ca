"""The ablation chapter's tables: the leakage audit and the spread across seeds."""

import numpy as np
import pytest

from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES
from lesionscan.study import experiments

from factories import random_predictions


def _result(seed, skill, epochs):
    """Metrics and predictions of a simulated model on 140 test images, 20 of each class."""
    pred = random_predictions(seed, {dx: 20 for dx in CLASSES}, skill=skill)
    metrics = evaluation.compute_metrics(pred)
    metrics["epochs_trained"] = epochs
    return metrics, pred


def test_leakage_table_gives_each_protocol_its_interval_and_its_difference_to_the_reference():
    results = {"seed": _result(0, 1.0, 13), "image": _result(1, 2.0, 7)}
    table = experiments.leakage_table(results, reference="seed", n_resamples=100, seed=0)
    assert list(table.columns) == ["protocol", "metric", "test images", "epochs", "value", "low", "high",
                                   "minus seed"]
    seed_rows, image_rows = table[table["protocol"] == "seed"], table[table["protocol"] == "image"]
    assert (seed_rows["minus seed"] == 0).all() and (image_rows["minus seed"] > 0).all()
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert image_rows["epochs"].tolist() == [7] * len(image_rows) and (table["test images"] == 140).all()


def test_seed_table_shows_mean_and_spread_per_model():
    by_kind = {"baseline": {0: _result(0, 0.5, 5)[0], 1: _result(2, 0.7, 5)[0]},
               "soft_attention": {0: _result(3, 0.6, 5)[0]}}
    table = experiments.seed_table(by_kind).set_index(["model", "metric"])
    accuracy = [by_kind["baseline"][s]["accuracy"] for s in (0, 1)]
    assert table.loc[("baseline", "accuracy"), "mean"] == pytest.approx(np.mean(accuracy))
    assert table.loc[("baseline", "accuracy"), "n_seeds"] == 2
    assert np.isnan(table.loc[("soft_attention", "accuracy"), "std"])
