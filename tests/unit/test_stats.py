"""Intervals, paired comparisons, calibration and seed spread, against cases small enough to compute by hand.

Fast on purpose (numpy, scipy, scikit-learn only): the whole file runs in a few seconds.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats as sps
from sklearn.calibration import calibration_curve

from lesionscan.analysis import evaluation, reported, resampling, wording
from lesionscan.core.classes import CLASSES
from lesionscan.figures import performance

from factories import make_predictions, random_predictions

MEL, NV = CLASSES.index("mel"), CLASSES.index("nv")


def _mel_frame(positive_scores, negative_scores):
    """Melanoma (p_mel = score, rest nv) and nevi (same), in that order."""
    scores = list(positive_scores) + list(negative_scores)
    probs = np.zeros((len(scores), len(CLASSES)))
    probs[:, MEL] = scores
    probs[:, NV] = 1.0 - np.asarray(scores)
    y = ["mel"] * len(positive_scores) + ["nv"] * len(negative_scores)
    return evaluation.predictions_frame([f"i{i}" for i in range(len(y))], y, probs)


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


# --------------------------------------------------------------------------------------------- calibration


@pytest.fixture
def calibration_case():
    """n_bins = 5 (edges 0, .2, .4, .6, .8, 1):

    a: mel, predicted mel at .9 (right)      -> bin 4
    b: nv, predicted mel at .9 (wrong)       -> bin 4
    c: nv, predicted nv at .5 (right)        -> bin 2
    d: bcc, predicted nv at .7 (wrong)       -> bin 3
    bin 2: n 1, conf .5, acc 1; bin 3: n 1, conf .7, acc 0; bin 4: n 2, conf .9, acc .5.
    ECE = (1 * .5 + 1 * .7 + 2 * .4) / 4 = 0.5.
    """
    return make_predictions(["mel", "nv", "nv", "bcc"], ["mel", "mel", "nv", "nv"], [0.9, 0.9, 0.5, 0.7])


def test_reliability_table_by_hand(calibration_case):
    table = resampling.reliability_table(calibration_case, n_bins=5)
    assert table["n"].tolist() == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(table["low"], [0, .2, .4, .6, .8])
    np.testing.assert_allclose(table["confidence"].iloc[2:], [.5, .7, .9])
    np.testing.assert_allclose(table["accuracy"].iloc[2:], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(table["gap"].iloc[2:], [.5, -.7, -.4])
    assert table["accuracy"].iloc[:2].isna().all()


def test_ece_by_hand(calibration_case):
    assert resampling.expected_calibration_error(calibration_case, n_bins=5) == pytest.approx(0.5)
    # one bin: |mean accuracy - mean confidence| = |.5 - .75|
    assert resampling.expected_calibration_error(calibration_case, n_bins=1) == pytest.approx(0.25)


def test_calibration_bins_match_scikit_learn():
    """Bins are (low, high] as in calibration_curve: a confidence of exactly .4 or .6 goes to the lower bin."""
    pred = make_predictions(["mel"] * 6, ["mel", "mel", "mel", "nv", "mel", "mel"], [0.4, 0.6, 0.41, 0.6, 1.0, 0.8])
    table = resampling.reliability_table(pred, n_bins=5)
    assert table["n"].tolist() == [0, 1, 3, 1, 1]
    conf = pred[[f"p_{dx}" for dx in CLASSES]].max(axis=1)
    correct = pred["pred"] == pred["dx"]
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=5)
    filled = table[table["n"] > 0]
    np.testing.assert_allclose(filled["accuracy"], prob_true)
    np.testing.assert_allclose(filled["confidence"], prob_pred)


def test_perfectly_calibrated_and_all_wrong():
    perfect = make_predictions(["mel", "nv"], ["mel", "nv"], [1.0, 1.0])
    all_wrong = make_predictions(["mel", "nv"], ["nv", "mel"], [0.8, 0.6])
    assert resampling.expected_calibration_error(perfect) == 0.0
    assert resampling.expected_calibration_error(all_wrong) == pytest.approx(0.7)


# --------------------------------------------------------------------------------------------- melanoma


def test_melanoma_sensitivity_at_specificity_by_hand():
    """Melanoma scores .9 .7 .3 .15, nevi .8 .4 .2 .1 .05.

    Specificity >= .8 allows one false positive (.8): threshold .7 catches .9 and .7 -> sensitivity 2/4.
    Specificity >= .9 allows none: threshold .9 -> 1/4 at specificity 1.
    Specificity >= .6 allows two (.8, .4): threshold .3 -> 3/4.
    """
    pred = _mel_frame([0.9, 0.7, 0.3, 0.15], [0.8, 0.4, 0.2, 0.1, 0.05])
    table = resampling.melanoma_sensitivity_at_specificity(pred, (0.8, 0.9, 0.6))
    np.testing.assert_allclose(table["sensitivity"], [0.5, 0.25, 0.75])
    np.testing.assert_allclose(table["threshold"], [0.7, 0.9, 0.3])
    np.testing.assert_allclose(table["specificity"], [0.8, 1.0, 0.6])


def test_melanoma_specificity_exactly_reached_counts():
    """Ten nevi, one above every melanoma: specificity 9/10 = .9 reaches the .9 target despite rounding."""
    pred = _mel_frame([0.6, 0.5], [0.9] + [0.1] * 9)
    table = resampling.melanoma_sensitivity_at_specificity(pred, (0.9,))
    assert table["sensitivity"].iloc[0] == 1.0
    assert table["specificity"].iloc[0] == pytest.approx(0.9)


def test_melanoma_table_puts_each_models_sensitivity_beside_its_interval():
    pred = _mel_frame([0.9, 0.7, 0.3, 0.15], [0.8, 0.4, 0.2, 0.1, 0.05])
    worse = _mel_frame([0.1, 0.7, 0.3, 0.15], [0.8, 0.4, 0.2, 0.1, 0.95])
    preds = {"a": pred, "b": worse}
    intervals = {name: resampling.bootstrap_metrics(frame, n_resamples=200, seed=0) for name, frame in preds.items()}
    table = resampling.melanoma_table(preds, intervals)
    assert table["model"].tolist() == ["a", "a", "b", "b"]
    assert (table["melanomas"] == 4).all()
    np.testing.assert_allclose(table.loc[table["model"] == "a", "sensitivity"], [0.5, 0.25])
    assert (table["low"] <= table["sensitivity"]).all() and (table["sensitivity"] <= table["high"]).all()
    assert table.loc[table["model"] == "b", "sensitivity"].max() < 0.5
    with pytest.raises(KeyError, match="mel_sensitivity_at_spec95"):
        resampling.melanoma_table(preds, intervals, specificities=(0.95,))


def test_melanoma_sensitivity_undefined_without_melanoma():
    pred = make_predictions(["nv", "bcc"], ["nv", "bcc"], [0.9, 0.9])
    assert resampling.melanoma_sensitivity_at_specificity(pred)["sensitivity"].isna().all()


# --------------------------------------------------------------------------------------------- bootstrap engine


def test_weighted_auc_by_hand():
    """Positives .7 (drawn twice) and .3, negatives .1 and .4: .7 beats both (2 x 2 pairs), .3 beats .1 (1)
    -> 5 of 3 x 2 = 5/6. A positive tied with a negative counts 1/2."""
    scores = np.array([0.7, 0.3, 0.1, 0.4])
    positive = np.array([True, True, False, False])
    w = np.array([[2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(resampling._weighted_auc(w, positive, scores), [5 / 6, 3 / 4])
    tied = resampling._weighted_auc(np.ones((1, 2)), np.array([True, False]), np.array([0.4, 0.4]))
    assert tied[0] == pytest.approx(0.5)
    assert np.isnan(resampling._weighted_auc(np.array([[1.0, 0.0]]), np.array([True, False]), np.array([.5, .2])))[0]


def test_resampled_metrics_equal_scikit_learn_on_materialised_resamples():
    """The vectorised metrics of a resample equal evaluate/scikit-learn on that resample written out as a frame,
    with tied scores, a one-image class (df) and a class absent from the test set (vasc)."""
    pred = random_predictions(3, {"akiec": 5, "bcc": 4, "bkl": 8, "df": 1, "mel": 6, "nv": 30}, skill=0.8, decimals=1)
    data = resampling._arrays(pred)
    counts = resampling.stratified_counts(data.y_true, 15, seed=7)
    resampled = resampling._resampled_metrics(data, np.vstack([np.ones(data.n), counts]))
    for r, row in enumerate(np.vstack([np.ones(data.n), counts])):
        frame = pred.iloc[np.repeat(np.arange(data.n), row.astype(int))].reset_index(drop=True)
        expected = resampling.point_metrics(frame)
        assert set(expected) == set(resampled)
        for name, value in expected.items():
            assert resampled[name][r] == pytest.approx(value, abs=1e-12, nan_ok=True), (name, r)


def test_stratification_keeps_class_supports():
    pred = random_predictions(0, {"akiec": 3, "df": 1, "mel": 5, "nv": 20})
    data = resampling._arrays(pred)
    counts = resampling.stratified_counts(data.y_true, 50, seed=1)
    for k in np.unique(data.y_true):
        members = data.y_true == k
        assert (counts[:, members].sum(axis=1) == members.sum()).all()
    assert (counts[:, data.y_true == CLASSES.index("df")] == 1).all()  # a one-image class is drawn every time
    assert counts.sum(axis=1).tolist() == [data.n] * 50
    assert (counts[:, data.y_true == CLASSES.index("nv")].std(axis=0) > 0).all()  # and they do vary


def test_bootstrap_is_deterministic_from_the_seed():
    pred = random_predictions(1, {"bcc": 6, "mel": 8, "nv": 25})
    a = resampling.bootstrap_metrics(pred, n_resamples=200, seed=5)
    pd.testing.assert_frame_equal(a, resampling.bootstrap_metrics(pred, n_resamples=200, seed=5))
    c = resampling.bootstrap_metrics(pred, n_resamples=200, seed=6)
    assert not np.allclose(a["low"], c["low"])
    pd.testing.assert_series_equal(a["value"], c["value"])  # the point values do not depend on the seed


def test_bootstrap_rows_and_degenerate_classes():
    """bcc is never predicted (F1 0 in every resample), df has one test image, vasc none."""
    pred = make_predictions(["bcc", "bcc", "df", "mel", "mel", "nv", "nv", "nv"],
                            ["nv", "mel", "df", "mel", "nv", "nv", "nv", "mel"],
                            [0.6, 0.5, 0.9, 0.8, 0.55, 0.9, 0.7, 0.6])
    table = resampling.bootstrap_metrics(pred, n_resamples=100, seed=0).set_index("metric")
    metrics = set(table.index)
    assert set(evaluation.SUMMARY_METRICS) <= metrics
    assert {"f1_bcc", "f1_df", "f1_mel", "f1_nv", "roc_auc_df", "ece",
            "mel_sensitivity_at_spec80", "mel_sensitivity_at_spec90"} <= metrics
    assert not {"f1_vasc", "roc_auc_vasc", "f1_akiec"} & metrics  # no test image: no per-class row
    assert table.loc["f1_bcc", ["value", "low", "high"]].tolist() == [0.0, 0.0, 0.0]
    assert table.loc["f1_df", ["value", "low", "high"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["roc_auc_df", "n_valid"] == 100  # stratified: the one df image is always there
    ok = table.dropna(subset=["low"])
    assert (ok["low"] <= ok["high"]).all()
    assert table.loc["accuracy", "value"] == pytest.approx(4 / 8)


def test_bootstrap_skips_undefined_resamples():
    """Melanoma sensitivity is undefined with no melanoma: NaN value, interval and n_valid 0, no error."""
    pred = make_predictions(["nv", "nv", "bcc"], ["nv", "bcc", "bcc"], [0.9, 0.6, 0.8])
    table = resampling.bootstrap_metrics(pred, n_resamples=20).set_index("metric")
    assert np.isnan(table.loc["mel_sensitivity_at_spec90", "value"])
    assert table.loc["mel_sensitivity_at_spec90", "n_valid"] == 0
    assert table.loc["accuracy", "n_valid"] == 20


def test_bootstrap_interval_coverage_on_simulated_test_sets():
    """200 simulated test sets (80 nv, 40 mel), each image right with probability .8: the 95 % interval of the
    accuracy covers .8 in roughly 90-99 % of them. Same draws and percentiles as bootstrap_metrics; the resampled
    accuracy is the share of drawn images that are right (the metric itself is checked against scikit-learn above),
    which keeps 200 x 300 resamples well under a second."""
    rng = np.random.default_rng(2024)
    y = np.r_[np.full(80, NV), np.full(40, MEL)]
    covered = 0
    for sim in range(200):
        right = rng.random(len(y)) < 0.8
        values = resampling.stratified_counts(y, 300, seed=sim) @ right / len(y)
        low, high, _ = resampling.percentile_interval(values, 0.95)
        covered += low <= 0.8 <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_rejects_bad_arguments():
    pred = make_predictions(["mel", "nv"], ["mel", "nv"], [0.9, 0.9])
    with pytest.raises(ValueError, match="n_resamples"):
        resampling.bootstrap_metrics(pred, n_resamples=0)
    with pytest.raises(ValueError, match="level"):
        resampling.bootstrap_metrics(pred, level=95)


# --------------------------------------------------------------------------------------------- paired comparison


@pytest.fixture
def paired_case():
    """40 images (20 mel, 20 nv). Model a gets 24 right, model b 34: b = 2 (only a right), c = 12 (only b right)."""
    y = ["mel"] * 20 + ["nv"] * 20
    other = {"mel": "nv", "nv": "mel"}
    a_right = np.zeros(40, bool)
    a_right[:24] = True
    b_right = a_right.copy()
    b_right[[0, 1]] = False                      # a right, b wrong: 2
    b_right[24:36] = True                        # a wrong, b right: 12
    a = make_predictions(y, [dx if r else other[dx] for dx, r in zip(y, a_right)], [0.8] * 40)
    b = make_predictions(y, [dx if r else other[dx] for dx, r in zip(y, b_right)], [0.8] * 40)
    return a, b


def test_mcnemar_exact_by_hand(paired_case):
    a, b = paired_case
    result = resampling.mcnemar(a, b)
    assert (result["b"], result["c"]) == (2, 12)
    # b + c = 14 < 25: exact; P(X <= 2 | 14, 1/2) = (1 + 14 + 91) / 2**14, two-sided doubles it
    assert result["p_value"] == pytest.approx(2 * 106 / 2 ** 14)
    assert result["test"] == "exact binomial"
    swapped = resampling.mcnemar(b, a)
    assert (swapped["b"], swapped["c"]) == (12, 2)
    assert swapped["p_value"] == pytest.approx(result["p_value"])


def test_mcnemar_chi_square_by_hand():
    """b = 10, c = 30: (|10 - 30| - 1)^2 / 40 = 9.025 on 1 degree of freedom."""
    y = ["nv"] * 40
    a = make_predictions(y, ["nv"] * 10 + ["mel"] * 30, [0.9] * 40)
    b = make_predictions(y, ["mel"] * 10 + ["nv"] * 30, [0.9] * 40)
    result = resampling.mcnemar(a, b)
    assert (result["b"], result["c"]) == (10, 30)
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(sps.chi2.sf(9.025, 1))
    assert result["p_value"] == pytest.approx(0.002663, abs=1e-5)
    assert resampling.mcnemar(a, a)["p_value"] == 1.0


def test_paired_bootstrap_sign_and_interval(paired_case):
    a, b = paired_case
    result = resampling.paired_bootstrap(a, b, "accuracy", n_resamples=500, seed=0)
    assert result["diff"] == pytest.approx(34 / 40 - 24 / 40)
    assert 0 < result["low"] < result["diff"] < result["high"]
    assert result["share_le_0"] < 0.025 and result["p_two_sided"] < 0.05
    reverse = resampling.paired_bootstrap(b, a, "accuracy", n_resamples=500, seed=0)
    assert reverse["diff"] == pytest.approx(-result["diff"])
    assert reverse["low"] == pytest.approx(-result["high"]) and reverse["high"] == pytest.approx(-result["low"])
    same = resampling.paired_bootstrap(a, a, "balanced_accuracy", n_resamples=50)
    assert (same["diff"], same["low"], same["high"], same["p_two_sided"]) == (0, 0, 0, 1.0)


def test_paired_comparisons_reject_unpaired_frames(paired_case):
    a, b = paired_case
    shuffled = b.iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="image ids differ"):
        resampling.paired_bootstrap(a, shuffled, "accuracy", n_resamples=10)
    with pytest.raises(ValueError, match="rows"):
        resampling.mcnemar(a, b.iloc[:-1])
    relabelled = b.copy()
    relabelled.loc[0, "dx"] = "bcc"
    with pytest.raises(ValueError, match="true class"):
        resampling.mcnemar(a, relabelled)
    with pytest.raises(ValueError, match="unknown metric"):
        resampling.paired_bootstrap(a, b, "sharpness", n_resamples=10)


def test_verdict_in_words(paired_case):
    a, b = paired_case
    clear = wording.model_comparison_verdict(resampling.paired_bootstrap(a, b, "accuracy", n_resamples=300),
                                             resampling.mcnemar(a, b))
    assert "accuracy is 0.250 higher than the baseline's" in clear
    assert "evidence that the soft-attention model beats the baseline" in clear and "no evidence" not in clear
    assert "12 images only the soft-attention model gets right, 2 only the baseline" in clear
    unclear = {"metric": "balanced_accuracy", "a": 0.60, "b": 0.63, "diff": 0.03, "low": -0.01, "high": 0.07,
               "level": 0.95, "n_resamples": 1000}
    text = wording.model_comparison_verdict(unclear, {"b": 40, "c": 48, "p_value": 0.21})
    assert "balanced accuracy is 0.030 higher" in text and "95 % CI of the difference -0.010 to 0.070" in text
    assert "p = 0.21" in text and "no evidence that the soft-attention model beats the baseline" in text
    worse = dict(unclear, diff=-0.05, low=-0.09, high=-0.01)
    assert "does not beat" in wording.model_comparison_verdict(worse, {"b": 40, "c": 48, "p_value": 0.21})


# --------------------------------------------------------------------------------------------- seeds


def test_seed_summary_by_hand():
    summary = resampling.seed_summary({1: {"accuracy": 0.8, "ece": None}, 2: {"accuracy": 0.9, "ece": 0.1},
                                  3: {"accuracy": 0.7, "ece": 0.2}}).set_index("metric")
    assert summary.loc["accuracy", ["mean", "min", "max", "n_seeds"]].tolist() == pytest.approx([0.8, 0.7, 0.9, 3])
    assert summary.loc["accuracy", "std"] == pytest.approx(0.1)  # sample std, n - 1
    assert summary.loc["ece", "n_seeds"] == 2 and summary.loc["ece", "mean"] == pytest.approx(0.15)


def test_seed_summary_accepts_compute_metrics_dicts():
    frames = [random_predictions(s, {"mel": 5, "nv": 10}) for s in (0, 1)]
    summary = resampling.seed_summary({s: evaluation.compute_metrics(f) for s, f in enumerate(frames)})
    assert summary["metric"].tolist()[:len(evaluation.SUMMARY_METRICS)] == list(evaluation.SUMMARY_METRICS)
    assert (summary["n_seeds"] == 2).all()
    single = resampling.seed_summary({0: evaluation.compute_metrics(frames[0])})
    assert single["std"].isna().all() and (single["mean"] == single["min"]).all()


# --------------------------------------------------------------------------------------------- report and figures


def _metrics_with(accuracy, roc_auc_macro):
    return {"accuracy": accuracy, "roc_auc": {"macro": roc_auc_macro, "weighted": None},
            "per_class": {"mel": {"f1": 0.5}}}


def test_comparison_with_intervals_flags_report_outside_and_inside():
    metrics = {"soft_attention": _metrics_with(0.92, 0.98), "baseline": _metrics_with(0.75, 0.90)}
    intervals = {
        "soft_attention": pd.DataFrame({"metric": ["accuracy", "roc_auc_macro"], "low": [0.90, 0.97],
                                        "high": [0.94, 0.99]}),
        "baseline": pd.DataFrame({"metric": ["accuracy"], "low": [0.70], "high": [0.80]}),
    }
    table = reported.comparison_with_intervals(metrics, intervals)
    assert list(table.columns) == ["model", "metric", "section", "report", "ours", "low", "high", "difference",
                                   reported.INSIDE_COLUMN]
    inside = table.set_index(["model", "metric", "section"])[reported.INSIDE_COLUMN]
    assert inside[("soft_attention", "accuracy", "Abstract")]               # .926 in [.90, .94]
    assert inside[("soft_attention", "accuracy", "Table 4.2")]              # .91 in [.90, .94]
    assert not inside[("baseline", "accuracy", "Table 4.2")]                # .85 above [.70, .80]
    assert not inside[("soft_attention", "roc_auc_macro", "Table 4.2")]     # .95 below [.97, .99]
    assert inside[("soft_attention", "roc_auc_macro", "4.4")]               # .979 in [.97, .99]
    assert pd.isna(inside[("baseline", "roc_auc_macro", "Table 4.2")])      # no interval for it
    assert pd.isna(inside[("soft_attention", "f1_weighted", "4.4 text")])
    assert set(table["model"]) == {"soft_attention", "baseline"}
    row = table[(table["model"] == "baseline") & (table["metric"] == "accuracy")].iloc[0]
    assert row["difference"] == pytest.approx(0.75 - 0.85)


def test_comparison_with_intervals_from_bootstrap_tables():
    pred = random_predictions(4, {"akiec": 4, "bcc": 4, "bkl": 6, "df": 2, "mel": 5, "nv": 25, "vasc": 2})
    metrics = {"soft_attention": evaluation.compute_metrics(pred)}
    table = reported.comparison_with_intervals(metrics, {"soft_attention": resampling.bootstrap_metrics(pred, 100)})
    assert table[reported.INSIDE_COLUMN].notna().all()
    assert ((table["low"] <= table["ours"]) & (table["ours"] <= table["high"])).all()


def test_reliability_diagram_returns_figure(calibration_case):
    fig = performance.reliability_diagram({"baseline": resampling.reliability_table(calibration_case, 5),
                                     "soft_attention": resampling.reliability_table(calibration_case.iloc[:3], 5)})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "ECE 0.500" in fig.axes[0].get_legend().get_texts()[1].get_text()
    with pytest.raises(ValueError):
        performance.reliability_diagram({})


def test_interval_comparison_returns_figure():
    pred = random_predictions(5, {"akiec": 4, "bcc": 4, "bkl": 6, "df": 2, "mel": 5, "nv": 25, "vasc": 2})
    metrics = {"baseline": evaluation.compute_metrics(pred), "soft_attention": evaluation.compute_metrics(pred)}
    intervals = {"baseline": resampling.bootstrap_metrics(pred, 50)}
    fig = performance.interval_comparison(reported.comparison_with_intervals(metrics, intervals))
    assert isinstance(fig, Figure)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Test metrics", "F1 per class"]
    assert fig._repr_png_()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="lacks"):
        performance.interval_comparison(pd.DataFrame({"model": ["x"]}))
