"""How sure are we? Bootstrap intervals, paired model comparisons, calibration and seed spread.

Everything starts from predictions frames (``evaluation.predictions_frame``:
``image_id, dx, p_<dx>..., pred``), so every number here can be recomputed
from the CSVs on disk.

Choices a reader should know:

* **Stratified percentile bootstrap.** A resample draws, within each true
  class, as many test images as the class has, with replacement, so every
  class keeps its support (the 6 df and 10 vasc images stay 6 and 10). The
  interval is the (1 - level)/2 and 1 - (1 - level)/2 percentiles of the
  resampled metric. scipy.stats.bootstrap cannot stratify, so the resampling
  is drawn here (``numpy.random.Generator.multinomial``: how often each image
  is drawn), from ``numpy.random.default_rng(seed)``: same seed, same numbers.
* **Vectorised, checked against scikit-learn.** The point values come from
  ``evaluation.compute_metrics`` and scikit-learn. The resampled values are
  computed for all resamples at once from the draw counts (confusion
  matrices by a matrix product, ROC-AUC as a weighted Mann-Whitney count,
  ROC points by cumulative sums), because scoring each resample with
  scikit-learn took about 64 s for 1,000 resamples of 828 images on 2 busy
  cores, against about 0.5 s this way; the tests check that both ways give
  the same numbers on resampled frames.
* **Same conventions as evaluation.** Precision of a class never predicted is
  0; macro and weighted averages run over the classes present in the true or
  the predicted labels of the resample; ROC-AUC averages skip classes without
  positives or negatives. A metric undefined in a resample is left out of
  that resample's percentile (``n_valid`` counts the resamples that define
  it); per-class rows are given only for classes with test images.
* **Paired comparisons** resample the same images for both models (same
  seed, same draws), so the interval of the difference reflects that the two
  models saw the same test set. McNemar's test looks only at the images
  exactly one of the two models gets right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn import metrics as skm

from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES

MEL = CLASSES.index("mel")
DEFAULT_SPECIFICITIES: tuple[float, ...] = (0.8, 0.9)
_SPEC_TOLERANCE = 1e-9  # 1 - 9/10 is 0.0999...98 in floating point; count 90 % specificity as reached

def sensitivity_metric_name(specificity: float) -> str:
    """Metric name of melanoma sensitivity at a specificity, e.g. ``mel_sensitivity_at_spec90``."""
    return f"mel_sensitivity_at_spec{100 * specificity:g}"



# ---------------------------------------------------------------------------------------------------------------
# Arrays from a predictions frame


@dataclass(frozen=True)
class _Arrays:
    image_id: np.ndarray
    y_true: np.ndarray   # class index 0..6
    y_pred: np.ndarray   # class index 0..6
    probs: np.ndarray    # (n, 7)

    @property
    def n(self) -> int:
        return len(self.y_true)

    @property
    def confidence(self) -> np.ndarray:
        """Top-label confidence: the probability the model gave its predicted class."""
        return self.probs[np.arange(self.n), self.y_pred]

    @property
    def correct(self) -> np.ndarray:
        return self.y_true == self.y_pred


def _arrays(pred: pd.DataFrame) -> _Arrays:
    y_true, y_pred, probs = evaluation.checked_predictions(pred)
    index = {dx: k for k, dx in enumerate(CLASSES)}
    ids = pred["image_id"].astype(str).to_numpy() if "image_id" in pred.columns else np.arange(len(pred)).astype(str)
    return _Arrays(ids, np.array([index[v] for v in y_true]), np.array([index[v] for v in y_pred]), probs)


def stratified_counts(y_true: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) draw counts: within each true class, n_c draws with replacement from its n_c images."""
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples is {n_resamples}; need at least 1")
    rng = np.random.default_rng(seed)
    counts = np.zeros((int(n_resamples), len(y_true)))
    for k in range(len(CLASSES)):
        members = np.flatnonzero(y_true == k)
        if members.size:
            counts[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size),
                                                 size=int(n_resamples))
    return counts


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Point values (scikit-learn)


def melanoma_sensitivity_at_specificity(pred: pd.DataFrame,
                                        specificities: Sequence[float] = DEFAULT_SPECIFICITIES) -> pd.DataFrame:
    """Melanoma against the rest, from ``p_mel``: the best sensitivity at a threshold with at least each specificity.

    The ROC curve is scikit-learn's (``roc_curve`` with every threshold
    kept); for each target the threshold is the one with the highest
    sensitivity among those whose specificity (1 - false positive rate) is at
    least the target, ties going to the higher specificity. Columns:
    target_specificity, threshold (predict mel when p_mel >= threshold;
    ``inf`` means never), specificity (achieved), sensitivity. Values are
    NaN where the test set has no melanoma or only melanoma.
    """
    data = _arrays(pred)
    positive = data.y_true == MEL
    rows = []
    for target in specificities:
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"specificity {target} is outside [0, 1]")
        if positive.all() or not positive.any():
            rows.append((float(target), np.nan, np.nan, np.nan))
            continue
        fpr, tpr, thresholds = skm.roc_curve(positive, data.probs[:, MEL], drop_intermediate=False)
        ok = 1.0 - fpr >= float(target) - _SPEC_TOLERANCE
        best = int(np.flatnonzero(ok)[np.argmax(tpr[ok])])  # first maximum: highest specificity among ties
        rows.append((float(target), float(thresholds[best]), float(1.0 - fpr[best]), float(tpr[best])))
    return pd.DataFrame(rows, columns=["target_specificity", "threshold", "specificity", "sensitivity"])


def melanoma_table(predictions_by_model: Mapping[str, pd.DataFrame], intervals_by_model: Mapping[str, pd.DataFrame],
                   specificities: Sequence[float] = DEFAULT_SPECIFICITIES) -> pd.DataFrame:
    """Melanoma sensitivity at each target specificity, per model, with its bootstrap interval.

    A screening tool is judged by how many melanomas it finds at a tolerable
    false-alarm rate, not by accuracy (a model that never says "mel" loses
    only 11 % of HAM10000's accuracy). ``intervals_by_model`` holds
    :func:`bootstrap_metrics` tables computed with the same ``specificities``.
    Columns: model, melanomas (in the test set), target specificity,
    threshold (say mel when p_mel >= it), specificity (reached), sensitivity,
    low, high.
    """
    rows = []
    for name, pred in predictions_by_model.items():
        n_mel = int((_arrays(pred).y_true == MEL).sum())
        intervals = intervals_by_model[name].set_index("metric")
        for _, row in melanoma_sensitivity_at_specificity(pred, specificities).iterrows():
            metric = sensitivity_metric_name(row["target_specificity"])
            if metric not in intervals.index:
                raise KeyError(f"the intervals of {name!r} have no {metric}: compute them with the same specificities")
            rows.append({"model": name, "melanomas": n_mel, "target specificity": row["target_specificity"],
                         "threshold": row["threshold"], "specificity": row["specificity"],
                         "sensitivity": row["sensitivity"], "low": intervals.loc[metric, "low"],
                         "high": intervals.loc[metric, "high"]})
    return pd.DataFrame(rows)


def _bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins over [0, 1], (low, high] as in sklearn.calibration.calibration_curve."""
    if int(n_bins) < 1:
        raise ValueError(f"n_bins is {n_bins}; need at least 1")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    return np.searchsorted(edges[1:-1], confidence)


def reliability_table(pred: pd.DataFrame, n_bins: int = 15) -> pd.DataFrame:
    """Top-label reliability: per confidence bin, how many images, their mean confidence and their accuracy.

    Confidence is the probability of the predicted class; bins are
    ``n_bins`` equal-width intervals (low, high] of [0, 1] (the first also
    takes 0), as in scikit-learn's ``calibration_curve``. Columns: bin, low,
    high, n, confidence, accuracy (NaN in empty bins), gap (accuracy minus
    confidence: negative = over-confident). All bins are listed.
    """
    data = _arrays(pred)
    ids = _bin_ids(data.confidence, n_bins)
    n = np.bincount(ids, minlength=n_bins).astype(int)
    conf_sum = np.bincount(ids, weights=data.confidence, minlength=n_bins)
    correct_sum = np.bincount(ids, weights=data.correct.astype(float), minlength=n_bins)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(n > 0, conf_sum / n, np.nan)
        accuracy = np.where(n > 0, correct_sum / n, np.nan)
    return pd.DataFrame({"bin": np.arange(n_bins), "low": edges[:-1], "high": edges[1:], "n": n,
                         "confidence": confidence, "accuracy": accuracy, "gap": accuracy - confidence})


def ece_from_table(table: pd.DataFrame) -> float:
    """Expected calibration error of a reliability table: sum over bins of n/N * |accuracy - confidence|."""
    filled = table[table["n"] > 0]
    return float((filled["n"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / filled["n"].sum())


def expected_calibration_error(pred: pd.DataFrame, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017) with ``n_bins`` equal-width bins; 0 = calibrated."""
    return ece_from_table(reliability_table(pred, n_bins))


def point_metrics(pred: pd.DataFrame, specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
                  n_bins: int = 15) -> dict[str, float]:
    """Every metric the bootstrap reports, on the whole test set (scikit-learn; NaN where undefined).

    ``evaluation.flat_metrics`` (summary metrics, F1 per class), then ROC-AUC
    and recall per class, melanoma sensitivity at each specificity and the ECE.
    Per-class entries only for classes with test images.
    """
    data = _arrays(pred)
    metrics = evaluation.compute_metrics(pred)
    present = {CLASSES[k] for k in np.unique(data.y_true)}
    flat = {name: value for name, value in evaluation.flat_metrics(metrics).items()
            if not (name.startswith("f1_") and name[3:] in CLASSES and name[3:] not in present)}
    for dx in CLASSES:
        if dx in present:
            flat[f"roc_auc_{dx}"] = metrics["per_class"][dx]["roc_auc"]
    for dx in CLASSES:
        if dx in present:
            flat[f"recall_{dx}"] = metrics["per_class"][dx]["recall"]
    sens = melanoma_sensitivity_at_specificity(pred, specificities)
    for target, value in zip(sens["target_specificity"], sens["sensitivity"]):
        flat[sensitivity_metric_name(target)] = value
    flat["ece"] = expected_calibration_error(pred, n_bins)
    return {name: np.nan if value is None else float(value) for name, value in flat.items()}


# ---------------------------------------------------------------------------------------------------------------
# The same metrics for many resamples at once (rows of ``w``: how often each image is drawn)


def _weighted_auc(w: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC-AUC per resample: the weighted share of (positive, negative) pairs ranked right, ties 1/2."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = positive[order]
    neg_w = w[:, order] * ~pos
    cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(neg_w, axis=1)], axis=1)
    start = np.searchsorted(s, s, side="left")   # first position of each score's tie group
    stop = np.searchsorted(s, s, side="right")   # one past its last
    below = cum[:, start[pos]]                   # negatives scored lower than each positive
    tied = cum[:, stop[pos]] - below             # negatives scored the same
    pos_w = w[:, order][:, pos]
    n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos_w * (below + 0.5 * tied)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _weighted_sensitivity_at_specificity(w: np.ndarray, positive: np.ndarray, scores: np.ndarray,
                                         specificities: Sequence[float]) -> dict[float, np.ndarray]:
    """Per resample, the best sensitivity among thresholds (every distinct score, and 'never') meeting each target."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last position of each threshold's tie group
    ww = w[:, order]
    tp = np.concatenate([np.zeros((len(w), 1)), np.cumsum(ww * positive[order], axis=1)[:, last]], axis=1)
    fp = np.concatenate([np.zeros((len(w), 1)), np.cumsum(ww * ~positive[order], axis=1)[:, last]], axis=1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    defined = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / n_pos, fp / n_neg
    out = {}
    for target in specificities:
        ok = 1.0 - fpr >= float(target) - _SPEC_TOLERANCE
        out[float(target)] = np.where(defined, np.where(ok, tpr, -np.inf).max(axis=1), np.nan)
    return out


def _resampled_metrics(data: _Arrays, w: np.ndarray, specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
                       n_bins: int = 15) -> dict[str, np.ndarray]:
    """Every metric of ``point_metrics``, one value per row of ``w`` (NaN where a resample leaves it undefined)."""
    k = len(CLASSES)
    total = w.sum(axis=1)
    pair = np.zeros((data.n, k * k))
    pair[np.arange(data.n), data.y_true * k + data.y_pred] = 1.0
    cm = (w @ pair).reshape(len(w), k, k)                        # rows true, columns predicted
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2 * tp, support + predicted)
    in_truth = support > 0
    labels = in_truth | (predicted > 0)

    out: dict[str, np.ndarray] = {
        "accuracy": tp.sum(axis=1) / total,
        "balanced_accuracy": (recall * in_truth).sum(axis=1) / in_truth.sum(axis=1),
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = (values * labels).sum(axis=1) / labels.sum(axis=1)
        out[f"{name}_weighted"] = (values * support).sum(axis=1) / support.sum(axis=1)
    present = [c for c in range(k) if (data.y_true == c).any()]
    auc = np.full((len(w), k), np.nan)
    for c in present:
        auc[:, c] = _weighted_auc(w, data.y_true == c, data.probs[:, c])
    scored = ~np.isnan(auc)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["roc_auc_macro"] = np.where(scored.any(axis=1), np.nansum(auc, axis=1) / scored.sum(axis=1), np.nan)
        out["roc_auc_weighted"] = np.where(scored.any(axis=1), np.nansum(auc * support, axis=1)
                                           / (support * scored).sum(axis=1), np.nan)
    ordered = {name: out[name] for name in evaluation.SUMMARY_METRICS}
    for c in present:
        ordered[f"f1_{CLASSES[c]}"] = f1[:, c]
    for c in present:
        ordered[f"roc_auc_{CLASSES[c]}"] = auc[:, c]
    for c in present:
        ordered[f"recall_{CLASSES[c]}"] = recall[:, c]
    for target, values in _weighted_sensitivity_at_specificity(w, data.y_true == MEL, data.probs[:, MEL],
                                                               specificities).items():
        ordered[sensitivity_metric_name(target)] = values
    bins = np.zeros((data.n, int(n_bins)))
    bins[np.arange(data.n), _bin_ids(data.confidence, n_bins)] = 1.0
    gap = w @ (bins * data.correct[:, None]) - w @ (bins * data.confidence[:, None])
    ordered["ece"] = np.abs(gap).sum(axis=1) / total
    return ordered


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """Percentile interval of the defined values, and how many there were."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, 0
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high), int(values.size)


def check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level is {level}; expected a coverage between 0 and 1, e.g. 0.95")
    return float(level)


def bootstrap_metrics(pred: pd.DataFrame, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                      specificities: Sequence[float] = DEFAULT_SPECIFICITIES, n_bins: int = 15) -> pd.DataFrame:
    """Stratified percentile bootstrap interval of every test metric of one model.

    Resamples the test images within each true class (with replacement, so
    each class keeps its support), ``n_resamples`` times from
    ``numpy.random.default_rng(seed)``. Metrics: ``evaluation.flat_metrics``
    (accuracy, balanced accuracy, macro and weighted precision, recall, F1,
    ROC-AUC; F1 per class), ROC-AUC and recall per class, melanoma sensitivity at each of
    ``specificities`` and the expected calibration error (``n_bins`` bins).
    Columns: metric, value (on the whole test set), low, high (the interval
    at ``level``), n_valid (resamples in which the metric is defined; the
    others are skipped). Per-class rows only for classes with test images.
    """
    level = check_level(level)
    data = _arrays(pred)
    point = point_metrics(pred, specificities, n_bins)
    resampled = _resampled_metrics(data, stratified_counts(data.y_true, n_resamples, seed), specificities, n_bins)
    rows = []
    for name, value in point.items():
        low, high, n_valid = percentile_interval(resampled[name], level)
        rows.append((name, value, low, high, n_valid))
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high", "n_valid"])


# ---------------------------------------------------------------------------------------------------------------
# Two models on the same test images


def _paired_arrays(pred_a: pd.DataFrame, pred_b: pd.DataFrame) -> tuple[_Arrays, _Arrays]:
    a, b = _arrays(pred_a), _arrays(pred_b)
    if a.n != b.n:
        raise ValueError(f"the two predictions frames have {a.n} and {b.n} rows; a paired comparison needs the "
                         "same test images in the same order")
    if "image_id" not in pred_a.columns or "image_id" not in pred_b.columns:
        raise ValueError("a paired comparison needs an image_id column in both predictions frames")
    differ = np.flatnonzero(a.image_id != b.image_id)
    if differ.size:
        i = int(differ[0])
        raise ValueError(f"image ids differ at row {i} ({a.image_id[i]!r} vs {b.image_id[i]!r}) and "
                         f"{differ.size - 1} other row(s); sort both frames by image_id first")
    differ = np.flatnonzero(a.y_true != b.y_true)
    if differ.size:
        i = int(differ[0])
        raise ValueError(f"true class of image {a.image_id[i]!r} differs between the frames "
                         f"({CLASSES[a.y_true[i]]} vs {CLASSES[b.y_true[i]]})")
    return a, b


def paired_bootstrap(pred_a: pd.DataFrame, pred_b: pd.DataFrame, metric: str = "balanced_accuracy",
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Difference ``metric(b) - metric(a)`` on the same test images, with a stratified paired bootstrap interval.

    Both models are scored on the same resamples (same draws), so positive
    means model b is better (for ``ece``, lower is better: positive means b
    is worse). Returns metric, a, b (values on the whole test set), diff,
    low, high, level, n_resamples (resamples defining the metric for both),
    share_le_0 (share of resamples in which b does not beat a: diff <= 0),
    p_two_sided (2 x the smaller of the shares <= 0 and >= 0, at most 1 and
    at least 1 / n_resamples, which is as small as the resamples can tell:
    the percentile-interval p-value, below 1 - level when the interval
    excludes 0, up to ties).
    """
    level = check_level(level)
    a, b = _paired_arrays(pred_a, pred_b)
    point_a, point_b = point_metrics(pred_a), point_metrics(pred_b)
    if metric not in point_a:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(point_a)}")
    w = stratified_counts(a.y_true, n_resamples, seed)
    diffs = _resampled_metrics(b, w)[metric] - _resampled_metrics(a, w)[metric]
    low, high, n_valid = percentile_interval(diffs, level)
    diffs = diffs[np.isfinite(diffs)]
    share_le = float((diffs <= 0).mean()) if diffs.size else np.nan
    share_ge = float((diffs >= 0).mean()) if diffs.size else np.nan
    return {"metric": metric, "a": point_a[metric], "b": point_b[metric], "diff": point_b[metric] - point_a[metric],
            "low": low, "high": high, "level": level, "n_resamples": n_valid, "share_le_0": share_le,
            "p_two_sided": min(1.0, max(2.0 * min(share_le, share_ge), 1.0 / diffs.size)) if diffs.size else np.nan}


def mcnemar(pred_a: pd.DataFrame, pred_b: pd.DataFrame, exact_below: int = 25) -> dict:
    """McNemar's test of per-image correctness of two models on the same test images.

    b: images model a gets right and model b wrong; c: images a gets wrong
    and b right (c > b favours model b). When b + c < ``exact_below`` the
    exact two-sided binomial test of b out of b + c at 1/2
    (``scipy.stats.binomtest``; statistic = min(b, c)); otherwise the
    chi-square statistic with continuity correction, (|b - c| - 1)^2 / (b + c),
    on 1 degree of freedom. b + c = 0 gives p = 1. Returns b, c, statistic,
    p_value, test.
    """
    a, bm = _paired_arrays(pred_a, pred_b)
    b = int((a.correct & ~bm.correct).sum())
    c = int((~a.correct & bm.correct).sum())
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "test": "none (the models agree on every image)"}
    if b + c < exact_below:
        p = sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(p), "test": "exact binomial"}
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(sps.chi2.sf(statistic, df=1)),
            "test": "chi-square with continuity correction"}


# ---------------------------------------------------------------------------------------------------------------
# Across training seeds


def seed_summary(metrics_by_seed: Mapping[int, Mapping]) -> pd.DataFrame:
    """Spread of each metric across training seeds: metric, mean, std (n - 1), min, max, n_seeds.

    Values per seed: a ``compute_metrics`` dict (flattened with
    ``evaluation.flat_metrics``) or an already flat ``{metric: value}`` dict
    (e.g. ``point_metrics``). A missing or None value is left out of that
    metric's numbers; std is NaN with fewer than two seeds.
    """
    if not metrics_by_seed:
        raise ValueError("seed_summary needs the metrics of at least one seed")
    flat: dict[int, dict] = {}
    for seed, metrics in metrics_by_seed.items():
        if "per_class" in metrics or any(isinstance(v, Mapping) for v in metrics.values()):
            metrics = evaluation.flat_metrics(metrics)
        flat[seed] = {name: (np.nan if value is None else float(value)) for name, value in metrics.items()
                      if value is None or isinstance(value, (int, float, np.number))}
    table = pd.DataFrame(flat)  # rows metric, columns seed; metric order of first appearance
    summary = pd.DataFrame({"metric": table.index, "mean": table.mean(axis=1).to_numpy(),
                            "std": table.std(axis=1, ddof=1).to_numpy(), "min": table.min(axis=1).to_numpy(),
                            "max": table.max(axis=1).to_numpy(), "n_seeds": table.notna().sum(axis=1).to_numpy()})
    summary["n_seeds"] = summary["n_seeds"].astype(int)
    return summary.reset_index(drop=True)


