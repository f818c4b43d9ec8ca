"""Who does the model fail? Balanced accuracy and macro ROC-AUC by age band, sex, body site and ground-truth type.

Every number comes from the internal test set's predictions frames
(``evaluation.predictions_frame``) and the metadata of the run's data
(``data.ham10000.load_dataset``), joined on ``image_id``. Choices a reader
should know:

* **Rules as data.** How each variable is cut into groups is written once,
  in :data:`VARIABLES` (each with its rule in words, which the book prints
  through :func:`rules_text`): the age bands in :data:`AGE_BANDS`, the body
  sites pooled below :data:`MIN_SITE_IMAGES` test images, the readable names
  of the ground-truth types in :data:`DX_TYPE_NAMES`. A group without test
  images has no row.
* **The same metrics and intervals as the rest of the book.** A subgroup's
  values and intervals are ``resampling.bootstrap_metrics`` on its rows:
  ``evaluation.compute_metrics`` for the value, the stratified percentile
  bootstrap (within each true class of the subgroup) for the interval. Each
  subgroup is resampled from ``seed`` after sorting its rows by image id, so
  the table depends neither on the row order of the frames nor on the order
  of the models, and the models of one subgroup are scored on the same draws.
  The cost is that of ``bootstrap_metrics`` on each subgroup: two models on
  1,500 test images (four variables, about 24 subgroups each) with 1,000
  resamples take about 9 s on an idle 2-core CPU (24 s on a shared one),
  half of it the scikit-learn point values and most of the rest the ROC-AUC
  of the resamples, which are needed anyway: a smaller metric set would
  save little.
* **Balanced accuracy within a subgroup** is the mean recall over the classes
  *present in that subgroup*: a subgroup with one class (follow-up images are
  all nevi) scores that class's recall only, and its macro ROC-AUC is
  undefined (NaN).
* **Flagged, not hidden.** A value too uncertain to read is kept and flagged
  (``ba_wide``, ``auc_wide``, with the reasons in ``why``); the rule, in
  :func:`wide_rule_text`, is :data:`MAX_READABLE_WIDTH`,
  :data:`MIN_READABLE_IMAGES` and :data:`MIN_CLASS_IMAGES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lesionscan.analysis import evaluation, resampling, wording
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError

LEVEL = 0.95
UNKNOWN = "unknown"

# --- grouping rules ----------------------------------------------------------------------------------------------
# Age bands as (label, lowest age, first age of the next band); HAM10000 records ages in steps of 5 years.
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("under 30", -math.inf, 30.0),
    ("30–44", 30.0, 45.0),
    ("45–59", 45.0, 60.0),
    ("60–74", 60.0, 75.0),
    ("75 and over", 75.0, math.inf),
)
SEXES: tuple[str, ...] = ("female", "male")
MIN_SITE_IMAGES = 30
OTHER_SITES = f"other sites (each < {MIN_SITE_IMAGES} test images)"
DX_TYPE_NAMES: dict[str, str] = {"histo": "histopathology", "follow_up": "follow-up", "consensus": "consensus",
                                 "confocal": "confocal"}

# --- when a row is too uncertain to read --------------------------------------------------------------------------
MIN_READABLE_IMAGES = 30     # fewer images in the subgroup: flagged
MIN_CLASS_IMAGES = 2         # a class present with fewer images: its recall is 0 or 1 in every resample
MAX_READABLE_WIDTH = 0.20    # an interval wider than this (high - low): flagged
WIDE_MARK = "†"

OVERALL_VARIABLE = "all"
OVERALL_GROUP = "all test images"
METADATA_COLUMNS = ("image_id", "dx", "dx_type", "age", "sex", "localization")
TABLE_COLUMNS = ("model", "variable", "group", "members", "images", "classes", "rarest_class_images",
                 "balanced_accuracy", "ba_low", "ba_high", "roc_auc_macro", "auc_low", "auc_high", "ba_wide",
                 "auc_wide", "wide", "why")
# Per metric of the table: the columns of its interval's ends and of its flag.
METRIC_COLUMNS: dict[str, tuple[str, str, str]] = {"balanced_accuracy": ("ba_low", "ba_high", "ba_wide"),
                                                   "roc_auc_macro": ("auc_low", "auc_high", "auc_wide")}
_LISTED_IDS = 5


def _text(values: pd.Series) -> pd.Series:
    """Recorded values as stripped lower-case text; missing and blank become ``""``."""
    return values.astype(object).where(values.notna(), "").astype(str).str.strip().str.lower()


def _age_band(values: pd.Series) -> pd.Categorical:
    age = pd.to_numeric(values, errors="coerce").astype(float)
    labels = pd.Series(UNKNOWN, index=values.index, dtype=object)
    for name, low, high in AGE_BANDS:
        labels[(age >= low) & (age < high)] = name
    return pd.Categorical(labels, categories=[name for name, _, _ in AGE_BANDS] + [UNKNOWN])


def _sex(values: pd.Series) -> pd.Categorical:
    text = _text(values)
    return pd.Categorical(text.where(text.isin(SEXES), UNKNOWN), categories=[*SEXES, UNKNOWN])


def _body_site(values: pd.Series) -> pd.Categorical:
    text = _text(values).replace("", UNKNOWN)
    counts = text[text != UNKNOWN].value_counts()
    kept = sorted(counts.index[counts >= MIN_SITE_IMAGES], key=lambda site: (-counts[site], site))
    labels = text.where(text.isin(kept) | (text == UNKNOWN), OTHER_SITES)
    return pd.Categorical(labels, categories=[*kept, OTHER_SITES, UNKNOWN])


def _ground_truth(values: pd.Series) -> pd.Categorical:
    text = _text(values).replace("", UNKNOWN)
    labels = text.map(lambda v: DX_TYPE_NAMES.get(v, v))
    others = sorted(set(labels) - set(DX_TYPE_NAMES.values()) - {UNKNOWN})
    return pd.Categorical(labels, categories=[*DX_TYPE_NAMES.values(), *others, UNKNOWN])


@dataclass(frozen=True)
class Variable:
    """One way of cutting the test set: its name in the table, the metadata column, the rule in words, the cut."""

    name: str
    column: str
    rule: str
    groups: Callable[[pd.Series], pd.Categorical]


VARIABLES: tuple[Variable, ...] = (
    Variable("age band", "age",
             "age at the visit in bands of 15 years: " + ", ".join(name for name, _, _ in AGE_BANDS)
             + " (30–44 means 30 to under 45); images without a recorded age form the group \"unknown\"",
             _age_band),
    Variable("sex", "sex", "as recorded, female or male; any other entry (blank, \"unknown\") forms the group "
             "\"unknown\"", _sex),
    Variable("body site", "localization",
             f"the recorded site; sites with fewer than {MIN_SITE_IMAGES} images in this test set are pooled "
             f"into \"{OTHER_SITES}\" (too few for an interval of their own); a blank or \"unknown\" site forms "
             "the group \"unknown\", whatever its size",
             _body_site),
    Variable("ground truth", "dx_type",
             "how the diagnosis was confirmed (HAM10000's dx_type): "
             + ", ".join(f"{name} ({code})" for code, name in DX_TYPE_NAMES.items())
             + "; in HAM10000 follow-up images are all nevi and confocal ones all benign keratoses",
             _ground_truth),
)


def _members(values: pd.Series, labels: pd.Categorical) -> dict[str, str]:
    """Per group, the recorded values it holds with their image counts, most frequent first."""
    shown = values.map(lambda v: "missing" if pd.isna(v) or str(v).strip() == ""
                       else f"{v:g}" if isinstance(v, (float, np.floating)) else str(v))
    frame = pd.DataFrame({"group": np.asarray(labels, dtype=object), "value": shown.to_numpy()})
    out = {}
    for group, rows in frame.groupby("group", sort=False):
        counts = rows["value"].value_counts()
        counts = counts.iloc[np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))]
        out[str(group)] = ", ".join(f"{value} ({n})" for value, n in counts.items())
    return out


def _ids_text(ids: Sequence[str]) -> str:
    shown = ", ".join(str(i) for i in list(ids)[:_LISTED_IDS])
    return shown + (", ..." if len(ids) > _LISTED_IDS else "")


def _test_rows(metadata: pd.DataFrame, image_ids: Sequence[str]) -> pd.DataFrame:
    """The metadata rows of ``image_ids``, in that order (index reset), checked."""
    missing_columns = [c for c in METADATA_COLUMNS if c not in metadata.columns]
    if missing_columns:
        raise DataError(f"the metadata frame lacks column(s) {', '.join(missing_columns)}; expected the frame "
                        "data.ham10000.load_dataset returns")
    meta = metadata.assign(image_id=metadata["image_id"].astype(str))
    repeated = meta["image_id"][meta["image_id"].duplicated()].unique()
    if len(repeated):
        raise DataError(f"the metadata lists {len(repeated)} image id(s) more than once ({_ids_text(repeated)}); "
                        "expected one row per image")
    ids = pd.Index([str(i) for i in image_ids])
    absent = ids[~ids.isin(meta["image_id"])]
    if len(absent):
        raise DataError(f"{len(absent)} of the {len(ids)} test images are not in the metadata "
                        f"({_ids_text(absent)}); is it the metadata of the run's data?")
    return meta.set_index("image_id").loc[ids].reset_index()


def _groups(rows: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "dx": rows["dx"].astype(str).to_numpy()})
    for variable in VARIABLES:
        out[variable.name] = variable.groups(rows[variable.column])
    return out


def assign_groups(metadata: pd.DataFrame, image_ids: Sequence[str]) -> pd.DataFrame:
    """The group of each test image under every variable: columns image_id, dx, then one per variable name.

    Rows follow ``image_ids``; each variable column is categorical with its
    groups in display order (so empty categories may appear). Body sites are
    pooled by their counts among these images. Raises DataError when images
    are not in the metadata (naming how many and the first ids), when the
    metadata lacks a column or repeats an image id.
    """
    return _groups(_test_rows(metadata, image_ids))


def _checked_models(predictions_by_model: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each model's frame sorted by image id; all models must hold the same test images."""
    if not predictions_by_model:
        raise ValueError("subgroup_table needs the predictions of at least one model")
    frames = {}
    for name, pred in predictions_by_model.items():
        if "image_id" not in pred.columns:
            raise ValueError(f"the predictions of {name!r} lack an image_id column; build them with "
                             "evaluation.predictions_frame")
        evaluation.checked_predictions(pred)
        frame = pred.assign(image_id=pred["image_id"].astype(str))
        if frame["image_id"].duplicated().any():
            raise ValueError(f"the predictions of {name!r} list image(s) more than once: "
                             f"{_ids_text(frame['image_id'][frame['image_id'].duplicated()].tolist())}")
        frames[str(name)] = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    first_name, first = next(iter(frames.items()))
    for name, frame in frames.items():
        if not np.array_equal(frame["image_id"].to_numpy(), first["image_id"].to_numpy()):
            only = sorted(set(frame["image_id"]) ^ set(first["image_id"]))
            raise ValueError(f"the predictions of {name!r} and {first_name!r} are not on the same test images "
                             f"({len(only)} image(s) in one only: {_ids_text(only)})")
        if not np.array_equal(frame["dx"].astype(str).to_numpy(), first["dx"].astype(str).to_numpy()):
            raise ValueError(f"the predictions of {name!r} and {first_name!r} give different true classes")
    return frames


def _reasons(images: int, class_counts: pd.Series,
             values: Mapping[str, tuple[float, float, float]]) -> tuple[list[str], dict[str, bool]]:
    """Why a row is too uncertain to read (empty: readable), and for which metric; the rule: :func:`wide_rule_text`."""
    shared = []
    if images < MIN_READABLE_IMAGES:
        shared.append(f"{images} images (fewer than {MIN_READABLE_IMAGES})")
    one_class = len(class_counts) == 1
    if one_class:
        shared.append(f"one class only ({class_counts.index[0]}): balanced accuracy is its recall, macro ROC-AUC "
                      "undefined")
    rare = [f"{dx} ({n})" for dx, n in class_counts.items() if n < MIN_CLASS_IMAGES]
    if rare and not one_class:
        shared.append(f"class(es) with fewer than {MIN_CLASS_IMAGES} images: {', '.join(rare)}")
    own: dict[str, list[str]] = {}
    for metric, (value, low, high) in values.items():
        own[metric] = []
        if metric == "roc_auc_macro" and one_class:
            continue
        if not (np.isfinite(value) and np.isfinite(low) and np.isfinite(high)):
            own[metric].append(f"{wording.metric_label(metric)} or its interval undefined")
        elif high - low > MAX_READABLE_WIDTH:
            own[metric].append(f"{wording.metric_label(metric)} interval {high - low:.3f} wide (more than "
                               f"{MAX_READABLE_WIDTH:.2f})")
    flags = {metric: bool(shared or reasons) for metric, reasons in own.items()}
    return shared + [r for reasons in own.values() for r in reasons], flags


def _score(model: str, variable: str, group: str, members: str, pred: pd.DataFrame, n_resamples: int, seed: int,
           level: float) -> dict:
    boot = resampling.bootstrap_metrics(pred, n_resamples=n_resamples, seed=seed, level=level).set_index("metric")
    counts = pred["dx"].astype(str).value_counts()
    counts = counts.reindex([dx for dx in CLASSES if dx in counts.index])
    values = {metric: tuple(float(boot.loc[metric, c]) for c in ("value", "low", "high")) for metric in METRIC_COLUMNS}
    row = {"model": model, "variable": variable, "group": group, "members": members, "images": int(len(pred)),
           "classes": int(len(counts)), "rarest_class_images": int(counts.min())}
    reasons, flags = _reasons(len(pred), counts, values)
    for metric, (low_name, high_name, _) in METRIC_COLUMNS.items():
        row[metric], row[low_name], row[high_name] = values[metric]
    for metric, flag in flags.items():
        row[METRIC_COLUMNS[metric][2]] = flag
    row["wide"] = any(flags.values())
    row["why"] = "; ".join(reasons)
    return row


def subgroup_table(predictions_by_model: Mapping[str, pd.DataFrame], metadata: pd.DataFrame,
                   n_resamples: int = 1000, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Balanced accuracy and macro ROC-AUC with bootstrap intervals, per model and subgroup of the test set.

    ``predictions_by_model``: {model: predictions frame}, all on the same test
    images; ``metadata``: the run's data (``load_dataset``), holding every test
    image. One row per model (in the mapping's order) for the whole test set
    (variable ``"all"``), then per variable of :data:`VARIABLES` and group
    (in the rule's order; groups without images are left out). Columns:
    model, variable, group, members (the recorded values in the group, with
    their image counts), images, classes (true classes present),
    rarest_class_images (images of the rarest of them), balanced_accuracy,
    ba_low, ba_high, roc_auc_macro, auc_low, auc_high (NaN where undefined),
    ba_wide and auc_wide (that metric too uncertain to read, see
    :func:`wide_rule_text`), wide (either) and why (the reasons, ``""`` for
    a readable row).
    Same inputs and seed, same table. Raises DataError when test images are
    missing from the metadata or their true class differs from it.
    """
    level = resampling.check_level(level)
    frames = _checked_models(predictions_by_model)
    first = next(iter(frames.values()))
    rows = _test_rows(metadata, first["image_id"].tolist())
    groups = _groups(rows)
    differ = np.flatnonzero(groups["dx"].to_numpy() != first["dx"].astype(str).to_numpy())
    if differ.size:
        shown = ", ".join(f"{groups['image_id'][i]} ({first['dx'][i]} in the predictions, {groups['dx'][i]} in "
                          "the metadata)" for i in differ[:_LISTED_IDS])
        raise DataError(f"{differ.size} test image(s) have another true class in the metadata than in the "
                        f"predictions: {shown}; is it the metadata of the run's data?")
    cuts = []
    for variable in VARIABLES:
        labels = groups[variable.name]
        members = _members(rows[variable.column], labels.array)
        for group in labels.cat.categories:
            mask = (labels == group).to_numpy()
            if mask.any():
                cuts.append((variable.name, str(group), members[str(group)], mask))
    scored = []
    for model, pred in frames.items():
        scored.append(_score(model, OVERALL_VARIABLE, OVERALL_GROUP, "", pred, n_resamples, seed, level))
        for variable, group, members, mask in cuts:
            scored.append(_score(model, variable, group, members, pred[mask].reset_index(drop=True), n_resamples,
                                 seed, level))
    return pd.DataFrame(scored, columns=list(TABLE_COLUMNS))


# --- in words and in a compact table ------------------------------------------------------------------------------


def wide_rule_text() -> str:
    """When a value is flagged as too uncertain to read, in words (the book prints it)."""
    return (f"a value is flagged {WIDE_MARK} when its {100 * LEVEL:g} % interval is more than "
            f"{MAX_READABLE_WIDTH:.2f} wide (about ±{MAX_READABLE_WIDTH / 2:.2f} around the value, too loose to read "
            "differences of a few points between subgroups) or undefined; both metrics of a subgroup are flagged "
            f"when it has fewer than {MIN_READABLE_IMAGES} images, when it holds one true class only (balanced "
            "accuracy is then that class's recall and macro ROC-AUC undefined), or when one of its classes has "
            f"fewer than {MIN_CLASS_IMAGES} images (the bootstrap resamples within each class, so such a class "
            "never varies and the interval looks narrower than it is)")


def rules_text(table: pd.DataFrame | None = None) -> str:
    """Markdown bullet lines, one per variable's grouping rule, then the flag rule and how intervals are drawn.

    With a :func:`subgroup_table`, the body-site line also names the sites
    pooled in this test set.
    """
    lines = []
    for variable in VARIABLES:
        rule = variable.rule
        if variable.name == "body site" and table is not None:
            pooled = table[(table["variable"] == variable.name) & (table["group"] == OTHER_SITES)]
            rule += (f"; pooled here: {pooled['members'].iloc[0]}" if len(pooled)
                     else "; no site was pooled in this test set")
        lines.append(f"- **{variable.name.capitalize()}**: {rule}.")
    lines.append(f"- **Flag**: {wide_rule_text()}.")
    lines.append("- **Intervals**: stratified percentile bootstrap within each subgroup (resampling within each "
                 "true class, so every class keeps its count), as for the whole test set; balanced accuracy is "
                 "the mean recall over the classes present in the subgroup.")
    return "\n".join(lines)


def _cell(row: pd.Series, metric: str, digits: int) -> str:
    value = float(row[metric])
    low_name, high_name, flag = METRIC_COLUMNS[metric]
    low, high = float(row[low_name]), float(row[high_name])
    mark = f" {WIDE_MARK}" if bool(row[flag]) else ""
    if not np.isfinite(value):
        return "n/a" + mark
    interval = f"{low:.{digits}f}–{high:.{digits}f}" if np.isfinite(low) and np.isfinite(high) else "n/a"
    return f"{value:.{digits}f} ({interval}){mark}"


def compact_table(table: pd.DataFrame, metrics: Sequence[str] = ("balanced_accuracy", "roc_auc_macro"),
                  digits: int = 2) -> pd.DataFrame:
    """The book's view of :func:`subgroup_table`: one row per variable and group, one column per model and metric.

    Columns: variable, group, images, then ``"<model>: <metric in words>"``
    holding ``"0.61 (0.55–0.67)"``, with :data:`WIDE_MARK` after a value
    flagged as too uncertain to read (``ba_wide``, ``auc_wide``) and
    ``"n/a"`` where a metric is undefined.
    """
    unknown = [m for m in metrics if m not in METRIC_COLUMNS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; expected some of {', '.join(METRIC_COLUMNS)}")
    keys = ["variable", "group"]
    out = table.drop_duplicates(keys)[[*keys, "images"]].reset_index(drop=True)
    for model, rows in table.groupby("model", sort=False):
        rows = rows.set_index(keys)
        for metric in metrics:
            cells = {key: _cell(row, metric, digits) for key, row in rows.iterrows()}
            out[f"{model}: {wording.metric_label(metric)}"] = [cells.get(key, "") for key in zip(out["variable"],
                                                                                           out["group"])]
    return out
