"""Metrics against cases small enough to compute by hand, and the degenerate test sets."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES

from factories import random_predictions


def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    """Probability rows from {dx: p} dicts (missing classes 0)."""
    return np.array([[row.get(dx, 0.0) for dx in CLASSES] for row in rows])


@pytest.fixture
def hand_case() -> pd.DataFrame:
    """Four images: mel right, mel taken for nv, nv right, bcc right.

    By hand (classes present: bcc, mel, nv; supports 1, 2, 1):
      bcc P=1 R=1 F1=1; mel P=1 R=1/2 F1=2/3; nv P=1/2 R=1 F1=2/3.
      AUC: bcc 1; mel: positives .7,.3 vs negatives .1,.4 -> 3 of 4 pairs = .75; nv 1.
    """
    probs = _probs([
        {"mel": 0.7, "nv": 0.2, "bcc": 0.1},
        {"mel": 0.3, "nv": 0.6, "bcc": 0.1},
        {"mel": 0.1, "nv": 0.8, "bcc": 0.1},
        {"mel": 0.4, "nv": 0.1, "bcc": 0.5},
    ])
    return evaluation.predictions_frame(["a", "b", "c", "d"], ["mel", "mel", "nv", "bcc"], probs)


def test_predictions_frame_columns_and_pred(hand_case):
    assert list(hand_case.columns) == ["image_id", "dx", *[f"p_{dx}" for dx in CLASSES], "pred"]
    assert hand_case["pred"].tolist() == ["mel", "nv", "nv", "bcc"]
    assert hand_case["image_id"].tolist() == ["a", "b", "c", "d"]


def test_predictions_frame_accepts_class_indices():
    frame = evaluation.predictions_frame([1], [CLASSES.index("mel")], _probs([{"mel": 1.0}]))
    assert frame["dx"].tolist() == ["mel"]
    assert frame["image_id"].tolist() == ["1"]


@pytest.mark.parametrize("probs, message", [
    (_probs([{"mel": 0.5, "nv": 0.2}]), "do not sum to 1"),
    (_probs([{"mel": 3.0, "nv": -2.0}]), "negative"),
    (_probs([{"mel": np.nan, "nv": 1.0}]), "not finite"),
    (np.full((1, 3), 1 / 3), "shape"),
])
def test_predictions_frame_rejects_bad_probabilities(probs, message):
    with pytest.raises(ValueError, match=message):
        evaluation.predictions_frame(["a"], ["mel"], probs)


def test_predictions_frame_rejects_unknown_label_and_length_mismatch():
    with pytest.raises(ValueError, match="'melanoma'"):
        evaluation.predictions_frame(["a"], ["melanoma"], _probs([{"mel": 1.0}]))
    with pytest.raises(ValueError, match="equally long"):
        evaluation.predictions_frame(["a", "b"], ["mel"], _probs([{"mel": 1.0}]))


def test_metrics_match_hand_computation(hand_case):
    m = evaluation.compute_metrics(hand_case)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["precision"]["macro"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["recall"]["macro"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["f1"]["macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert m["precision"]["weighted"] == pytest.approx((1 * 1 + 2 * 1 + 1 * 0.5) / 4)
    assert m["recall"]["weighted"] == pytest.approx((1 * 1 + 2 * 0.5 + 1 * 1) / 4)
    assert m["f1"]["weighted"] == pytest.approx((1 * 1 + 2 * (2 / 3) + 1 * (2 / 3)) / 4)
    assert m["roc_auc"]["macro"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert m["roc_auc"]["weighted"] == pytest.approx((1 * 1 + 2 * 0.75 + 1 * 1) / 4)
    assert m["per_class"]["mel"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2,
                                                   "roc_auc": 0.75})
    assert m["per_class"]["nv"]["precision"] == pytest.approx(0.5)
    assert m["labels"] == ["bcc", "mel", "nv"]


def test_class_absent_from_truth_skips_auc_and_lists_it(hand_case):
    m = evaluation.compute_metrics(hand_case)
    assert m["roc_auc_skipped"] == ["akiec", "bkl", "df", "vasc"]
    assert m["per_class"]["df"]["roc_auc"] is None
    assert m["per_class"]["df"]["support"] == 0


def test_class_with_single_test_image_is_scored(hand_case):
    m = evaluation.compute_metrics(hand_case)
    assert m["per_class"]["bcc"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1,
                                                   "roc_auc": 1.0})


def test_confusion_matrix_counts(hand_case):
    m = evaluation.compute_metrics(hand_case)
    cm = np.array(m["confusion_matrix"])
    i = CLASSES.index
    assert cm.shape == (7, 7) and cm.sum() == 4
    assert cm[i("mel"), i("mel")] == 1 and cm[i("mel"), i("nv")] == 1
    assert cm[i("nv"), i("nv")] == 1 and cm[i("bcc"), i("bcc")] == 1
    frame = evaluation.confusion(hand_case)
    assert list(frame.index) == list(CLASSES) and list(frame.columns) == list(CLASSES)
    assert (frame.to_numpy() == cm).all()


def test_confusion_normalised_rows(hand_case):
    frame = evaluation.confusion(hand_case, normalize=True)
    assert frame.loc["mel", "mel"] == pytest.approx(0.5) and frame.loc["mel", "nv"] == pytest.approx(0.5)
    assert frame.loc[["bcc", "mel", "nv"]].sum(axis=1).tolist() == pytest.approx([1, 1, 1])
    assert frame.loc["df"].sum() == 0  # absent class: an empty row, not NaN


def test_majority_baseline(hand_case):
    m = evaluation.compute_metrics(hand_case)
    assert m["majority_baseline"] == pytest.approx({"class": "mel", "accuracy": 0.5, "balanced_accuracy": 1 / 3})
    # ties go to the first class in CLASSES order
    assert evaluation.majority_baseline(["nv", "akiec"])["class"] == "akiec"


def test_never_predicted_class_gets_precision_zero_without_warnings():
    probs = _probs([{"mel": 0.9, "bcc": 0.1}, {"mel": 0.6, "bcc": 0.4}, {"nv": 1.0}])
    pred = evaluation.predictions_frame(["a", "b", "c"], ["mel", "bcc", "nv"], probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluation.compute_metrics(pred)
        table = evaluation.classification_report_table(pred)
    assert m["per_class"]["bcc"]["precision"] == 0.0
    assert m["per_class"]["bcc"]["recall"] == 0.0
    assert m["per_class"]["bcc"]["roc_auc"] == pytest.approx(1.0)  # ranked right, never argmax
    assert table.set_index("class").loc["bcc", "precision"] == 0.0


def test_predicted_class_absent_from_truth_does_not_warn():
    probs = _probs([{"mel": 0.9, "df": 0.1}, {"df": 0.8, "nv": 0.2}, {"nv": 1.0}])
    pred = evaluation.predictions_frame(["a", "b", "c"], ["mel", "nv", "nv"], probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluation.compute_metrics(pred)
    assert m["per_class"]["df"]["precision"] == 0.0
    assert "df" in m["labels"]
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)  # mean recall over mel, nv only


def test_single_class_truth_has_no_auc():
    pred = evaluation.predictions_frame(["a", "b"], ["nv", "nv"], _probs([{"nv": 1.0}, {"mel": 1.0}]))
    m = evaluation.compute_metrics(pred)
    assert m["roc_auc"] == {"macro": None, "weighted": None}
    assert m["roc_auc_skipped"] == list(CLASSES)
    json.dumps(m)


def test_agrees_with_sklearn_on_a_full_random_case():
    supports = {"akiec": 20, "bcc": 25, "bkl": 30, "df": 15, "mel": 35, "nv": 60, "vasc": 15}  # weighted != macro
    pred = random_predictions(0, supports, skill=2.0)
    y, probs = pred["dx"], pred[list(evaluation.PROB_COLUMNS)].to_numpy()
    m = evaluation.compute_metrics(pred)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred["pred"]))
    for average in ("macro", "weighted"):
        assert m["roc_auc"][average] == pytest.approx(
            skm.roc_auc_score(y, probs, multi_class="ovr", average=average, labels=list(CLASSES)))
        assert m["f1"][average] == pytest.approx(skm.f1_score(y, pred["pred"], average=average))
    assert m["roc_auc_skipped"] == []


def test_metrics_are_json_serialisable(hand_case):
    m = evaluation.compute_metrics(hand_case)
    assert json.loads(json.dumps(m))["per_class"]["mel"]["support"] == 2


def test_compute_metrics_validates_frame(hand_case):
    with pytest.raises(ValueError, match="p_mel"):
        evaluation.compute_metrics(hand_case.drop(columns="p_mel"))
    bad = hand_case.copy()
    bad["p_mel"] = 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        evaluation.compute_metrics(bad)
    with pytest.raises(ValueError, match="empty"):
        evaluation.compute_metrics(hand_case.iloc[:0])


def test_classification_report_table(hand_case):
    table = evaluation.classification_report_table(hand_case)
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert table["class"].tolist() == ["bcc", "mel", "nv", "accuracy", "macro avg", "weighted avg"]
    rows = table.set_index("class")
    assert rows.loc["mel", "recall"] == pytest.approx(0.5)
    assert rows.loc["accuracy", "f1"] == pytest.approx(0.75) and rows.loc["accuracy", "support"] == 4
    assert rows.loc["macro avg", "f1"] == pytest.approx(7 / 9)
    assert rows.loc["weighted avg", "precision"] == pytest.approx(0.875)


def test_comparison_table(hand_case):
    good = evaluation.compute_metrics(hand_case)
    bad = json.loads(json.dumps(good))
    bad["accuracy"] = 0.25
    bad["roc_auc"] = {"macro": None, "weighted": None}
    table = evaluation.comparison_table({"baseline": bad, "soft_attention": good})
    assert list(table.columns) == ["metric", "baseline", "soft_attention"]
    rows = table.set_index("metric")
    assert rows.loc["accuracy"].tolist() == pytest.approx([0.25, 0.75])
    assert np.isnan(rows.loc["roc_auc_macro", "baseline"])
    assert rows.loc["f1_mel", "soft_attention"] == pytest.approx(2 / 3)
    assert list(rows.index[:len(evaluation.SUMMARY_METRICS)]) == list(evaluation.SUMMARY_METRICS)
    with pytest.raises(ValueError):
        evaluation.comparison_table({})
