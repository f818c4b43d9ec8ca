"""Chapter 7's external test: both main models scored on a labelled folder outside the run's data.

The folder (parameter ``external_test_dir``; the ISIC 2018 Task 3 test set is
the field's standard) is read by ``evaluate.read_labelled_folder``, its images
that are also in the run's own data (by id or by content,
``data.overlap``) are named and left out, and each main model scores the rest
as ``lesionscan evaluate`` would. The tables set internal (the run's test
subset) against external, metric by metric and class by class, with the
same stratified bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lesionscan import evaluate
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError
from lesionscan.data import overlap
from lesionscan.study.results import MAIN_MODELS
from lesionscan.study.run_folder import Run

HOW_TO_GET = (
    "This run had no external test set (the parameter `external_test_dir` is empty), so this section has no "
    "numbers. To score both models on the ISIC 2018 Task 3 test set (1,512 dermoscopy images held out from "
    "HAM10000, the same seven classes), fetch it once and rerun with it:\n\n"
    "```\nlesionscan data download --isic2018 test data/isic2018-test\n"
    "lesionscan study --profile cpu --data-dir data/ham10000 --set external_test_dir=data/isic2018-test\n```\n\n"
    "Any labelled folder that `lesionscan data check` reads will do; `lesionscan evaluate --model M.keras "
    "--data DIR` scores one saved model on it without rerunning the study.")


def own_images(run: Run) -> pd.DataFrame:
    """The run's own images (``image_id, image_path, subset``): what an external image must not be."""
    frame = run.dataset[["image_id", "image_path"]].merge(run.split_table()[["image_id", "subset"]], on="image_id",
                                                           how="left")
    frame["subset"] = frame["subset"].fillna("not in the split")
    return frame


def read_external(run: Run, progress: bool = True) -> tuple[evaluate.LabelledFolder, pd.DataFrame]:
    """The external folder and the images it shares with the run (``overlap.shared_images``' table)."""
    folder = evaluate.read_labelled_folder(run.params["external_test_dir"], option="external_test_dir")
    shared = overlap.shared_images(folder.frame, own_images(run), progress=progress)
    if shared["external_id"].nunique() == len(folder.frame):
        raise DataError(f"external_test_dir {folder.path}: every one of its {len(folder.frame):,} images is also in "
                        f"the run's own data ({run.data_dir}); an external test needs images the run never saw")
    return folder, shared


def scored_images(folder: evaluate.LabelledFolder, shared: pd.DataFrame) -> pd.DataFrame:
    """The external images left once those the run also holds are taken out."""
    return folder.frame[~folder.frame["image_id"].isin(set(shared["external_id"]))].reset_index(drop=True)


def status(folder: evaluate.LabelledFolder, shared: pd.DataFrame, scored: pd.DataFrame) -> dict:
    """What the chapter records of the external test (the statement ``EXTERNAL_STATUS``)."""
    return {"ran": True, "data_dir": str(folder.path), "layout": folder.layout, "checksum": folder.checksum,
            "images": int(len(folder.frame)), "scored": int(len(scored)),
            "shared_with_run": int(shared["external_id"].nunique()),
            "images_per_class": {dx: int((scored["dx"] == dx).sum()) for dx in CLASSES}}


def not_run() -> dict:
    return {"ran": False, "reason": "no external test set: the parameter external_test_dir is empty"}


def predictions(run: Run, scored: pd.DataFrame, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Each main model's predictions on the scored external images (its saved file, as ``evaluate`` reads it)."""
    from lesionscan.model import saving

    out = {}
    for name in MAIN_MODELS:
        if progress:
            print(f"{name}: scoring {len(scored):,} external images", flush=True)
        out[name] = evaluate.predictions(saving.load_model(run.model_path(name)), scored, progress=progress)
    return out


@dataclass(frozen=True)
class ExternalTest:
    """Chapter 7's external test, scored: what the chapter saves and shows."""

    shared: pd.DataFrame                  # external images also in the run's data (left out)
    predictions: dict[str, pd.DataFrame]  # by main model, on the images left
    intervals: dict[str, pd.DataFrame]    # ``resampling.bootstrap_metrics`` of each
    status: dict                          # the statement EXTERNAL_STATUS


def score_external(run: Run, progress: bool = True) -> ExternalTest:
    """Read ``external_test_dir``, leave out what the run shares, score both main models with intervals."""
    from lesionscan.analysis import resampling

    folder, shared = read_external(run, progress=progress)
    scored = scored_images(folder, shared)
    pred = predictions(run, scored, progress=progress)
    intervals = {name: resampling.bootstrap_metrics(p, **run.parameters.bootstrap) for name, p in pred.items()}
    return ExternalTest(shared=shared, predictions=pred, intervals=intervals, status=status(folder, shared, scored))


def predictions_table(predictions_by_model: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """All models' external predictions in one table, a ``model`` column first."""
    return pd.concat([pred.assign(model=name)[["model", *pred.columns]] for name, pred in predictions_by_model.items()],
                     ignore_index=True)


def _interval(intervals: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    row = intervals.set_index("metric").reindex([metric]).iloc[0]
    return float(row["value"]), float(row["low"]), float(row["high"])


def comparison_table(internal: Mapping[str, pd.DataFrame], external: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and headline metric: internal and external value with intervals, and the change.

    ``internal``/``external``: ``resampling.bootstrap_metrics`` tables by model.
    """
    rows = []
    for model in external:
        for metric in evaluate.HEADLINE:
            inside, outside = _interval(internal[model], metric), _interval(external[model], metric)
            rows.append({"model": model, "metric": metric, "internal": inside[0], "internal_low": inside[1],
                         "internal_high": inside[2], "external": outside[0], "external_low": outside[1],
                         "external_high": outside[2], "change": outside[0] - inside[0]})
    return pd.DataFrame(rows)


def per_class_table(internal_pred: Mapping[str, pd.DataFrame], external_pred: Mapping[str, pd.DataFrame],
                    internal: Mapping[str, pd.DataFrame], external: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per class and model: images and recall (with its interval) inside and outside, and the change."""
    rows = []
    for dx in CLASSES:
        for model in external_pred:
            inside = _interval(internal[model], f"recall_{dx}")
            outside = _interval(external[model], f"recall_{dx}")
            rows.append({"class": dx, "model": model,
                         "internal_images": int((internal_pred[model]["dx"] == dx).sum()),
                         "internal_recall": inside[0], "internal_low": inside[1], "internal_high": inside[2],
                         "external_images": int((external_pred[model]["dx"] == dx).sum()),
                         "external_recall": outside[0], "external_low": outside[1], "external_high": outside[2],
                         "change": outside[0] - inside[0]})
    return pd.DataFrame(rows)


def _with_interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.3f} ({low:.3f}–{high:.3f})" if np.isfinite(low) else f"{value:.3f}"


def with_intervals(table: pd.DataFrame, values: Mapping[str, str]) -> pd.DataFrame:
    """A reader's view: each value column (key) as "0.612 (0.571–0.650)", renamed to its label (value);
    metrics and classes in words, the change signed, the other column names without underscores.

    A value column's interval is in ``<side>_low`` and ``<side>_high``, ``side`` being its first word
    (``internal``, ``external``), as :func:`comparison_table` and :func:`per_class_table` name them.
    """
    from lesionscan.analysis import wording
    from lesionscan.core.classes import label

    out = table.copy()
    for value, title in values.items():
        side = value.split("_")[0]
        low, high = out.pop(f"{side}_low"), out.pop(f"{side}_high")
        out[value] = [_with_interval(v, lo, hi) for v, lo, hi in zip(out[value], low, high)]
        out = out.rename(columns={value: title})
    if "metric" in out.columns:
        out["metric"] = out["metric"].map(wording.metric_label)
    if "class" in out.columns:
        out["class"] = out["class"].map(label)
    out["change"] = [("–" if not np.isfinite(v) else f"{v:+.3f}") for v in out["change"]]
    return out.rename(columns={c: c.replace("_", " ") for c in out.columns})


def shared_table(shared: pd.DataFrame) -> pd.DataFrame:
    """The shared images for the book: external image, the run's image, its subset, how they match."""
    view = shared[["external_id", "own_id", "subset", "match", "thumbnail_difference"]].copy()
    return view.rename(columns={"external_id": "external image", "own_id": "the run's image",
                                "thumbnail_difference": "thumbnail difference (0-255)"})
