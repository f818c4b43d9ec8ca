"""The report's claimed numbers, kept as data, and tables that set ours beside them.

The claims live in ``reference/report_claims.csv`` (claim, model, metric,
value, section, definition), so no chapter types a report number by hand;
the ISIC 2018 Task 3 leaderboard's reference entries, in
``reference/isic2018_task3.csv``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from lesionscan.analysis.evaluation import flat_metrics


def claims() -> pd.DataFrame:
    """Every number the report claims that our run can be compared with."""
    with resources.files("lesionscan").joinpath("reference/report_claims.csv").open() as handle:
        return pd.read_csv(handle)


def challenge_results() -> pd.DataFrame:
    """The ISIC 2018 Task 3 leaderboard's reference entries (entry, team, metric, value, note, source): what an
    external test on its 1,512 images is read against; kept as data like the report's claims."""
    with resources.files("lesionscan").joinpath("reference/isic2018_task3.csv").open() as handle:
        return pd.read_csv(handle)


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


def _per_class(model: str, prefix: str) -> pd.Series:
    """The report's per-class numbers of one kind (``count_`` or ``support_``), indexed by class."""
    table = claims()
    table = table[(table["model"] == model) & table["metric"].str.startswith(prefix)]
    return pd.Series(table["value"].to_numpy(), index=table["metric"].str.removeprefix(prefix).to_numpy())


def class_counts_beside_report(class_table: pd.DataFrame) -> pd.DataFrame:
    """Our class table (Table 4.1 form) with the report's counts beside it."""
    reported = _per_class("dataset", "count_")
    table = class_table.copy()
    table["report"] = table["class"].map(reported)
    table.loc[table["class"] == "total", "report"] = reported.sum()
    table["report"] = table["report"].astype("Int64")
    return table


def test_support_beside_report(support: pd.DataFrame) -> pd.DataFrame:
    """Test images per class of our split beside the report's classification-report support."""
    reported = _per_class("test_set", "support_")
    ours = support["test"]
    table = pd.DataFrame({"class": ours.index, "ours": ours.to_numpy()})
    table["report"] = table["class"].map(reported)
    table.loc[table["class"] == "total", "report"] = reported.sum()
    table["report"] = table["report"].astype("Int64")
    table["same"] = table["ours"] == table["report"]
    return table


INSIDE_COLUMN = "report inside our CI"


def comparison_with_intervals(metrics_by_model: dict[str, dict],
                              intervals_by_model: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``comparison`` plus our bootstrap interval, and whether the report's number falls inside it.

    ``intervals_by_model``: per model, a table with columns metric, low, high
    (``resampling.bootstrap_metrics``). Columns: model, metric, section, report,
    ours, low, high, difference (ours minus report), ``report inside our CI``
    (nullable boolean: low <= report <= high on the printed report value;
    <NA> where we have no interval for that model and metric). The interval
    covers test-set sampling of our model only, not training variation.
    """
    table = comparison(metrics_by_model)
    low, high = [], []
    for model, metric in zip(table["model"], table["metric"]):
        intervals = intervals_by_model.get(model)
        row = None if intervals is None else intervals[intervals["metric"] == metric]
        if row is None or row.empty:
            low.append(float("nan"))
            high.append(float("nan"))
        else:
            low.append(float(row["low"].iloc[0]))
            high.append(float(row["high"].iloc[0]))
    table["low"], table["high"] = low, high
    table["ours"] = table["ours"].astype(float)
    known = table["low"].notna() & table["high"].notna()
    inside = (table["report"] >= table["low"]) & (table["report"] <= table["high"])
    table[INSIDE_COLUMN] = pd.array([bool(v) if k else pd.NA for v, k in zip(inside, known)], dtype="boolean")
    return table[["model", "metric", "section", "report", "ours", "low", "high", "difference", INSIDE_COLUMN]]
