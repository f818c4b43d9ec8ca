"""Results in words: metric names as a reader reads them, and the verdict sentences the book prints.

One table of metric labels serves every table, figure and sentence; the two
verdicts (two models compared on the same test images; a map compared with
reference maps on the same masks) follow the same rule: a difference is
claimed only when its whole interval lies on one side of zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError

METRIC_LABELS: dict[str, str] = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
    "precision_macro": "macro precision", "recall_macro": "macro recall", "f1_macro": "macro F1",
    "roc_auc_macro": "macro ROC-AUC", "precision_weighted": "weighted precision",
    "recall_weighted": "weighted recall", "f1_weighted": "weighted F1", "roc_auc_weighted": "weighted ROC-AUC",
    "ece": "expected calibration error",
    # agreement of explanation maps with lesion masks (analysis.agreement)
    "pointing_game": "pointing game (hit rate)", "energy_inside": "energy inside the mask",
    "topk_iou": "IoU of the top-k pixels",
}


def metric_label(metric: str) -> str:
    """Words for a metric name, for sentences and figure labels (``f1_mel`` -> ``F1 of mel``)."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    for prefix, words in (("f1_", "F1"), ("roc_auc_", "ROC-AUC")):
        if metric.startswith(prefix) and metric[len(prefix):] in CLASSES:
            return f"{words} of {metric[len(prefix):]}"
    if metric.startswith("mel_sensitivity_at_spec"):
        return f"melanoma sensitivity at {metric.removeprefix('mel_sensitivity_at_spec')} % specificity"
    return metric


# How a sentence names each reference ("more than the centre prior does").
_REFERENCE_PHRASES = {"centre prior (Gaussian)": "the centre prior", "uniform": "a uniform map"}


def p_text(p: float) -> str:
    """A p-value as a sentence gives it: ``p = 0.21`` or ``p < 0.001``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def capital(text: str) -> str:
    """``text`` with its first letter in upper case (the rest untouched, unlike ``str.capitalize``)."""
    return text[:1].upper() + text[1:]


def model_comparison_verdict(paired: Mapping, mcnemar_result: Mapping, name_a: str = "the baseline",
            name_b: str = "the soft-attention model", alpha: float = 0.05, digits: int = 3) -> str:
    """The comparison in words, from ``paired_bootstrap`` (metric(b) - metric(a)) and ``mcnemar`` results.

    The conclusion follows the interval of the difference: it says model b
    beats model a only when the whole interval lies above 0 (below 0 for the
    calibration error, where lower is better), and says whether McNemar's
    test of per-image correctness agrees. It speaks of this test set only:
    run-to-run spread across training seeds is a separate question.
    """
    metric = str(paired["metric"])
    words = metric_label(metric)
    lower_is_better = metric == "ece"
    diff, low, high = float(paired["diff"]), float(paired["low"]), float(paired["high"])
    level = 100 * float(paired.get("level", 0.95))
    f = f".{digits}f"
    if np.isnan(diff):
        return (f"The {words} is undefined on this test set for at least one model, so the models cannot be "
                "compared on it.")
    direction = "higher" if diff > 0 else "lower" if diff < 0 else "no different"
    size = f"{abs(diff):{f}} {direction}" if diff != 0 else "no different"
    first = (f"{capital(name_b)}'s {words} is {size} than {name_a}'s ({float(paired['b']):{f}} vs "
             f"{float(paired['a']):{f}}; {level:g} % CI of the difference {low:{f}} to {high:{f}}, "
             f"{int(paired.get('n_resamples', 0))} stratified bootstrap resamples)")
    b, c, p = int(mcnemar_result["b"]), int(mcnemar_result["c"]), float(mcnemar_result["p_value"])
    second = (f"McNemar's test on per-image correctness: {c} images only {name_b} gets right, {b} only "
              f"{name_a}, {p_text(p)}")
    b_wins_acc = p < alpha and c > b
    a_wins_acc = p < alpha and b > c
    b_better = (high < 0) if lower_is_better else (low > 0)
    a_better = (low > 0) if lower_is_better else (high < 0)
    if b_better:
        if b_wins_acc:
            end = (f"evidence that {name_b} beats {name_a} on this test set: the interval excludes zero and "
                   "McNemar's test agrees.")
        elif a_wins_acc:
            end = (f"{name_b} is better on {words} (the interval excludes zero), but {name_a} gets significantly "
                   "more images right: the two measures disagree on this test set.")
        else:
            end = (f"{name_b} is better on {words} (the interval excludes zero), but McNemar's test finds no "
                   "significant difference in which images each model gets right: modest evidence on this test set.")
    elif a_better:
        if a_wins_acc:
            end = f"{name_b} does not beat {name_a}: {name_a} is better on this test set, and McNemar's test agrees."
        else:
            end = (f"{name_b} does not beat {name_a}: it is worse on {words} (the interval excludes zero), though "
                   "McNemar's test finds no significant difference in which images each model gets right.")
    else:
        end = f"no evidence that {name_b} beats {name_a} on this test set"
        if b_wins_acc:
            end += f" on {words}, although {name_b} gets significantly more images right."
        elif a_wins_acc:
            end += f"; {name_a} even gets significantly more images right."
        else:
            end += "."
    return f"{first}. {second}. Verdict: {end}"


def map_agreement_verdict(differences: Sequence[Mapping], method_label: str, digits: int = 2) -> str:
    """The comparisons in words, from ``paired_difference`` results: one sentence per reference and direction.

    "More" or "less" only when the whole interval lies above or below zero;
    otherwise the method is "no clearer than" the reference (the interval
    includes zero). Every metric given is named with its two means, the
    difference and the interval, so the sentence can be checked against the
    table.
    """
    if not differences:
        raise ParameterError("map_agreement_verdict needs at least one paired_difference result")
    f = f".{int(digits)}f"
    groups: dict[tuple[str, str], list[str]] = {}
    for d in differences:
        reference, metric = str(d["reference"]), str(d["metric"])
        words = METRIC_LABELS.get(metric, metric)
        diff, low, high = float(d["difference"]), float(d["low"]), float(d["high"])
        if not (np.isfinite(diff) and np.isfinite(low) and np.isfinite(high)):
            groups.setdefault((reference, "undefined"), []).append(words)
            continue
        direction = "more" if low > 0 else "less" if high < 0 else "no clearer"
        level = 100 * float(d.get("level", 0.95))
        groups.setdefault((reference, direction), []).append(
            f"its {words} is {float(d['mean_method']):{f}} against {float(d['mean_reference']):{f}} "
            f"(difference {diff:+{f}}, {level:g} % interval {low:+{f}} to {high:+{f}})")
    subject = capital(method_label)
    sentences = []
    for (reference, direction), parts in groups.items():
        ref = _REFERENCE_PHRASES.get(reference, reference)
        if direction == "undefined":
            sentences.append(f"{subject} cannot be compared with {ref} on {' or '.join(parts)}: no image has a "
                             "finite score for both.")
        elif direction == "no clearer":
            why = "the interval includes zero" if len(parts) == 1 else "each interval includes zero"
            sentences.append(f"{subject} points at the lesion no clearer than {ref} does ({why}): "
                             f"{'; '.join(parts)}.")
        else:
            sentences.append(f"{subject} points at the lesion {direction} than {ref} does: {'; '.join(parts)}.")
    return " ".join(sentences)
