"""The report's claimed numbers, kept as data, and tables that set ours beside them.

The claims live in ``reference/report_claims.csv`` (claim, model, metric,
value, section, definition), so no chapter types a report number by hand.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from lesionscan.classes import CLASSES


def claims() -> pd.DataFrame:
    """Every number the report claims that our run can be compared with."""
    with resources.files("lesionscan").joinpath("reference/report_claims.csv").open() as handle:
        return pd.read_csv(handle)


def flat_metrics(metrics: dict) -> dict[str, float]:
    """Our metrics under the claim file's names (accuracy, f1_macro, f1_mel, ...)."""
    flat = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"]}
    for family in ("precision", "recall", "f1", "roc_auc"):
        for average in ("macro", "weighted"):
            value = metrics.get(family, {}).get(average)
            if value is not None:
                flat[f"{family}_{average}"] = value
    for dx in CLASSES:
        for name, value in metrics.get("per_class", {}).get(dx, {}).items():
            if name != "support" and value is not None:
                flat[f"{name}_{dx}"] = value
    return flat


def comparison(metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Report value beside ours for every claim about a model we trained.

    Columns: model, metric, section, report (the report's value), ours,
    difference (ours minus report). Claims about models not in
    ``metrics_by_model`` are left out.
    """
    table = claims()
    table = table[table["model"].isin(list(metrics_by_model))].copy()
    ours = {model: flat_metrics(m) for model, m in metrics_by_model.items()}
    table["ours"] = [ours[m].get(metric) for m, metric in zip(table["model"], table["metric"])]
    table["difference"] = table["ours"] - table["value"]
    table = table.rename(columns={"value": "report"})
    return table[["model", "metric", "section", "report", "ours", "difference"]].reset_index(drop=True)
