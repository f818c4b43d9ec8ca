"""Score a model's test predictions: one predictions table in, every number of the book out.

Everything starts from the predictions frame (``image_id, dx, p_<dx>..., pred``)
that is also written to disk, so any metric can be recomputed from the CSV
without the model. Metrics come from scikit-learn; this module only fixes
the class order (``CLASSES``) and the handling of degenerate test sets:

* a class that is never predicted gets precision 0 (``zero_division=0``), no warning;
* precision, recall and F1 averages (macro, weighted) run over the classes
  present in the true or the predicted labels, as scikit-learn's
  ``classification_report`` does; a class in neither has no defined score;
* ROC-AUC (one class against the rest) is skipped for a class with no
  positive or no negative test image, and such classes are listed under
  ``roc_auc_skipped``; its macro and weighted averages use the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from lesionscan.core.classes import CLASSES

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{dx}" for dx in CLASSES)
PREDICTION_COLUMNS: tuple[str, ...] = ("image_id", "dx", *PROB_COLUMNS, "pred")
SUMMARY_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy",
    "precision_macro", "recall_macro", "f1_macro", "roc_auc_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc_weighted",
)
_ROW_SUM_TOLERANCE = 1e-3


def _as_dx(values: Sequence) -> list[str]:
    """Class codes from codes or integer class indices; anything else is an error."""
    out = []
    for i, value in enumerate(values):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(CLASSES):
                raise ValueError(f"true label at position {i} is class index {value}; expected 0..{len(CLASSES) - 1}")
            out.append(CLASSES[int(value)])
        elif str(value) in CLASSES:
            out.append(str(value))
        else:
            raise ValueError(f"true label at position {i} is {value!r}; expected one of {', '.join(CLASSES)}")
    return out


def _check_probabilities(probs: np.ndarray) -> None:
    """Probabilities must be an (N, 7) table of finite, non-negative rows summing to 1."""
    if probs.ndim != 2 or probs.shape[1] != len(CLASSES):
        raise ValueError(f"probabilities have shape {probs.shape}; expected (n_images, {len(CLASSES)}) "
                         f"with columns in the order {', '.join(CLASSES)}")
    if not np.all(np.isfinite(probs)):
        bad = int(np.flatnonzero(~np.isfinite(probs).all(axis=1))[0])
        raise ValueError(f"probabilities of row {bad} are not finite: {probs[bad].tolist()}")
    if np.any(probs < 0):
        bad = int(np.flatnonzero((probs < 0).any(axis=1))[0])
        raise ValueError(f"probabilities of row {bad} contain a negative value: {probs[bad].tolist()}")
    sums = probs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if off.size:
        raise ValueError(f"{off.size} probability row(s) do not sum to 1 (row {int(off[0])} sums to "
                         f"{sums[off[0]]:.4f}); pass softmax outputs, not logits")


def predictions_frame(image_ids: Sequence, y_true_dx: Sequence, probs) -> pd.DataFrame:
    """One row per test image: its id, true class, the 7 class probabilities and the predicted class.

    This is the table written to disk, so that every metric can be recomputed
    from it. ``y_true_dx`` holds class codes (or integer class indices);
    ``probs`` is the model's softmax output with columns in ``CLASSES`` order.
    Raises ValueError when lengths differ, a label is unknown or a row of
    probabilities is not a distribution.
    """
    probs = np.asarray(probs, dtype=np.float64)
    image_ids = list(image_ids)
    dx = _as_dx(list(y_true_dx))
    if len(image_ids) != len(dx) or len(dx) != len(probs):
        raise ValueError(f"got {len(image_ids)} image ids, {len(dx)} true labels and {len(probs)} probability "
                         "rows; they must be equally long")
    _check_probabilities(probs)
    frame = pd.DataFrame({"image_id": [str(i) for i in image_ids], "dx": dx})
    for k, column in enumerate(PROB_COLUMNS):
        frame[column] = probs[:, k]
    frame["pred"] = [CLASSES[k] for k in probs.argmax(axis=1)]
    return frame


def checked_predictions(pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True labels, predicted labels and probabilities of a predictions frame, checked."""
    missing = [c for c in ("dx", *PROB_COLUMNS, "pred") if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions frame lacks column(s) {', '.join(missing)}; "
                         "build it with evaluation.predictions_frame")
    if len(pred) == 0:
        raise ValueError("predictions frame is empty: there is nothing to score")
    y_true = np.array(_as_dx(pred["dx"].tolist()), dtype=object)
    probs = pred[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    _check_probabilities(probs)
    y_pred = np.array([str(v) for v in pred["pred"]], dtype=object)
    unknown = sorted(set(y_pred) - set(CLASSES))
    if unknown:
        raise ValueError(f"predicted class(es) {unknown} unknown; expected one of {', '.join(CLASSES)}")
    return y_true, y_pred, probs


def _labels_present(*label_arrays: np.ndarray) -> list[str]:
    """Classes seen in any of the arrays, in CLASSES order."""
    seen = set().union(*(set(a) for a in label_arrays))
    return [dx for dx in CLASSES if dx in seen]


def _per_class_auc(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """One-vs-rest ROC-AUC per class; None where the class has no positive or no negative image."""
    aucs: dict[str, float | None] = {}
    for k, dx in enumerate(CLASSES):
        positive = y_true == dx
        if positive.all() or not positive.any():
            aucs[dx] = None
        else:
            aucs[dx] = float(skm.roc_auc_score(positive, probs[:, k]))
    return aucs


def compute_metrics(pred: pd.DataFrame) -> dict:
    """Every test metric of one model as a JSON-able dict (see the module docstring for edge cases).

    Keys: n, accuracy, balanced_accuracy, precision/recall/f1/roc_auc
    {macro, weighted}, roc_auc_skipped, per_class {dx: precision, recall, f1,
    support, roc_auc}, confusion_matrix (rows true, columns predicted, CLASSES
    order), labels (classes the averages run over), majority_baseline
    {class, accuracy, balanced_accuracy}.
    """
    y_true, y_pred, probs = checked_predictions(pred)
    labels = _labels_present(y_true, y_pred)
    in_truth = _labels_present(y_true)

    result: dict = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # mean recall over the classes in y_true == sklearn's balanced_accuracy_score,
        # without its warning when a predicted class is absent from y_true
        "balanced_accuracy": float(skm.recall_score(y_true, y_pred, labels=in_truth, average="macro",
                                                    zero_division=0)),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                         zero_division=0)
        result.setdefault("precision", {})[average] = float(p)
        result.setdefault("recall", {})[average] = float(r)
        result.setdefault("f1", {})[average] = float(f)

    aucs = _per_class_auc(y_true, probs)
    scored = [dx for dx in CLASSES if aucs[dx] is not None]
    support = {dx: int((y_true == dx).sum()) for dx in CLASSES}
    if scored:
        values = np.array([aucs[dx] for dx in scored])
        weights = np.array([support[dx] for dx in scored], dtype=float)
        result["roc_auc"] = {"macro": float(values.mean()), "weighted": float(np.average(values, weights=weights))}
    else:
        result["roc_auc"] = {"macro": None, "weighted": None}
    result["roc_auc_skipped"] = [dx for dx in CLASSES if aucs[dx] is None]

    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=list(CLASSES), average=None,
                                                     zero_division=0)
    result["per_class"] = {
        dx: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k]),
             "roc_auc": aucs[dx]}
        for k, dx in enumerate(CLASSES)
    }
    result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=list(CLASSES)).astype(int).tolist()
    result["labels"] = labels
    result["majority_baseline"] = majority_baseline(y_true)
    return result


def majority_baseline(y_true: Sequence) -> dict:
    """Scores of always predicting the most frequent true class (ties: first in CLASSES order).

    Every accuracy in the book has to beat this to mean anything: on the
    HAM10000 test set it is about 0.80 accuracy and 1/7 balanced accuracy.
    """
    y_true = np.asarray(_as_dx(list(y_true)), dtype=object)
    counts = {dx: int((y_true == dx).sum()) for dx in CLASSES}
    majority = max(CLASSES, key=lambda dx: counts[dx])  # max keeps the first of equal counts
    constant = np.full(len(y_true), majority, dtype=object)
    in_truth = _labels_present(y_true)
    return {
        "class": majority,
        "accuracy": float(skm.accuracy_score(y_true, constant)),
        "balanced_accuracy": float(skm.recall_score(y_true, constant, labels=in_truth, average="macro",
                                                    zero_division=0)),
    }


def classification_report_table(pred: pd.DataFrame) -> pd.DataFrame:
    """scikit-learn's classification report as a table (the report's section 4.4 layout).

    Columns: class, precision, recall, f1, support. One row per class present
    in the true or predicted labels (CLASSES order), then ``accuracy`` (its
    value in the f1 column, as scikit-learn prints it), ``macro avg`` and
    ``weighted avg``.
    """
    y_true, y_pred, _ = checked_predictions(pred)
    labels = _labels_present(y_true, y_pred)
    report = skm.classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    rows = []
    for dx in labels:
        r = report[dx]
        rows.append((dx, r["precision"], r["recall"], r["f1-score"], int(r["support"])))
    rows.append(("accuracy", np.nan, np.nan, float(report["accuracy"]), int(len(y_true))))
    for name in ("macro avg", "weighted avg"):
        r = report[name]
        rows.append((name, r["precision"], r["recall"], r["f1-score"], int(r["support"])))
    table = pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])
    table[["precision", "recall", "f1"]] = table[["precision", "recall", "f1"]].astype(float)
    return table


def confusion(pred: pd.DataFrame, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix, rows = true class, columns = predicted class, both in CLASSES order.

    ``normalize=True`` divides each row by its true count (a row of a class
    absent from the test set stays 0), so the diagonal is per-class recall.
    """
    y_true, y_pred, _ = checked_predictions(pred)
    matrix = skm.confusion_matrix(y_true, y_pred, labels=list(CLASSES), normalize="true" if normalize else None)
    frame = pd.DataFrame(matrix, index=pd.Index(CLASSES, name="true"), columns=pd.Index(CLASSES, name="predicted"))
    return frame.astype(float if normalize else int)


def flat_metrics(metrics: Mapping) -> dict[str, float | None]:
    """A metrics dict flattened to ``{"accuracy": .., "f1_macro": .., "f1_mel": ..}`` for tables."""
    flat: dict[str, float | None] = {}
    for name in SUMMARY_METRICS:
        if name in ("accuracy", "balanced_accuracy"):
            flat[name] = metrics.get(name)
        else:
            family, average = name.rsplit("_", 1)
            flat[name] = (metrics.get(family) or {}).get(average)
    for dx in CLASSES:
        flat[f"f1_{dx}"] = ((metrics.get("per_class") or {}).get(dx) or {}).get("f1")
    return flat


def comparison_table(metrics_by_model: Mapping[str, Mapping]) -> pd.DataFrame:
    """Models side by side: a ``metric`` column, then one column per model (in the dict's order).

    Rows: the summary metrics (accuracy, balanced accuracy, macro and weighted
    precision/recall/F1/ROC-AUC), then per-class F1 (``f1_<dx>``, the
    report's Table 4.3). A metric a model lacks is NaN.
    """
    if not metrics_by_model:
        raise ValueError("comparison_table needs the metrics of at least one model")
    flat = {name: flat_metrics(m) for name, m in metrics_by_model.items()}
    rows = list(next(iter(flat.values())))
    table = pd.DataFrame({"metric": rows})
    for name, values in flat.items():
        table[str(name)] = [np.nan if values.get(r) is None else float(values[r]) for r in rows]
    return table
