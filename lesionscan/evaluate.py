"""Score a saved model on any labelled folder: ``lesionscan evaluate --model M.keras --data DIR``.

The folder may be an external test set in the ISIC 2018 Task 3 layout or a
HAM10000 folder (the layouts ``lesionscan data check`` knows), read with its
labels and refused, every problem named, when they do not match its images.
The model file is checked as ``predict`` checks it, every image header before
any pixel is decoded, and the images go through the package's one decoder
(``predict.load_checked``: the whole image resized to the model's square
input, bilinear, ResNet50's preprocessing), as the test subset did in
training. Images are decoded and scored a batch at a time, so memory stays
bounded, and no overlays are drawn. Out come the metrics with stratified
bootstrap intervals and a predictions CSV in the format every chapter writes,
so any number can be recomputed without the model.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionscan.core import atomic
from lesionscan.core.classes import CLASSES, label
from lesionscan.core.errors import DataError, ParameterError

ISIC2018, HAM10000 = "ISIC 2018 Task 3", "HAM10000"
LAYOUTS = ("an ISIC 2018 Task 3 folder (ISIC_*.jpg images and the ground-truth CSV with the header "
           "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC) or a HAM10000 folder (HAM10000_metadata.csv beside its image "
           "folders)")
# The headline metrics, in the order they are printed; per-class recall follows.
HEADLINE = ("balanced_accuracy", "accuracy", "roc_auc_macro", "roc_auc_weighted")
CHUNK = 64  # images decoded and scored at a time: memory stays at a few batches whatever the folder's size
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class LabelledFolder:
    """A folder of labelled images: where, in which layout, the images (``image_id, dx, image_path``, and
    HAM10000's metadata columns where the layout has them) and the checksum of labels and images."""

    path: Path
    layout: str
    frame: pd.DataFrame
    checksum: str


def read_labelled_folder(data_dir, option: str = "--data") -> LabelledFolder:
    """The labelled images of ``data_dir`` in a layout the package knows; a DataError names what is wrong.

    ``option`` names the setting the folder came from in an error (``--data``, ``external_test_dir``).
    """
    from lesionscan.data import ham10000, isic2018

    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"{option} {path}: " + ("not found" if not path.exists() else "is a file")
                        + f"; expected {LAYOUTS}")
    path = path.resolve()
    if isic2018.is_layout(path):
        report = isic2018.check_report(path)
        report.raise_for_problems()
        frame, layout, checksum = report.frame, ISIC2018, report.checksum()
    else:
        try:
            ham10000.find_metadata(path)
        except DataError:
            raise DataError(f"{option} {path}: not a layout lesionscan knows; expected {LAYOUTS}") from None
        frame = ham10000.load_dataset(path, verify_images=False)
        layout, checksum = HAM10000, ham10000.data_checksum(frame)
    if frame.empty:
        raise DataError(f"{option} {path}: no labelled images ({layout} layout)")
    return LabelledFolder(path=path, layout=layout, frame=frame.reset_index(drop=True), checksum=checksum)


def predictions(model, frame: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """The predictions frame (``image_id, dx, p_<dx>..., pred``) of ``model`` on ``frame``'s images, in order.

    Headers are checked first (``predict.check_images``); then the images are
    decoded ``CHUNK`` at a time (in threads) and scored in inference mode.
    Prints a line every ``PROGRESS_SECONDS`` with the count and the rate.
    """
    from lesionscan.analysis import evaluation
    from lesionscan.model import saving
    from lesionscan.predict import check_images, class_probabilities, load_checked

    paths = frame["image_path"].tolist()
    check_images(paths)
    size = saving.input_size(model)
    parts, started, last = [], time.monotonic(), time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), CHUNK):
            images = np.stack(list(pool.map(lambda p: load_checked(p, size), paths[start:start + CHUNK])))
            parts.append(class_probabilities(model, images))
            done = start + len(images)
            if progress and (time.monotonic() - last >= PROGRESS_SECONDS or done == len(paths)):
                elapsed = time.monotonic() - started
                print(f"  scored {done:,} of {len(paths):,} images ({done / max(elapsed, 1e-9):.0f} images/s)",
                      flush=True)
                last = time.monotonic()
    probs = np.concatenate(parts) if parts else np.zeros((0, len(CLASSES)))
    return evaluation.predictions_frame(frame["image_id"].tolist(), frame["dx"].tolist(), probs)


def score(pred: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Counts, headline metrics and per-class recall, each with its 95 % stratified bootstrap interval."""
    from lesionscan.analysis import resampling

    intervals = resampling.bootstrap_metrics(pred, n_resamples=n_resamples, seed=seed).set_index("metric")

    def entry(name: str) -> dict:
        row = intervals.loc[name]
        return {name_: (None if not np.isfinite(row[name_]) else float(row[name_])) for name_ in ("value", "low",
                                                                                                   "high")}

    counts = pred["dx"].value_counts()
    return {
        "images": int(len(pred)),
        "images_per_class": {dx: int(counts.get(dx, 0)) for dx in CLASSES},
        "metrics": {name: entry(name) for name in HEADLINE},
        "recall": {dx: entry(f"recall_{dx}") for dx in CLASSES if f"recall_{dx}" in intervals.index},
        "bootstrap": {"resamples": int(n_resamples), "seed": int(seed), "level": 0.95,
                      "scheme": "test images resampled within each true class"},
    }


def default_out(model_path, data_dir) -> Path:
    """``<model stem>.<folder name>.predictions.csv`` in the current folder (never inside the data)."""
    return Path(f"{Path(model_path).stem}.{Path(data_dir).resolve().name}.predictions.csv")


def _check_out(out: Path, model_path: Path, folder: LabelledFolder) -> Path:
    """Refuse an output path that is a folder, the model, or inside the data folder; its folder must exist."""
    out = Path(out)
    if out.is_dir():
        raise ParameterError(f"--out {out}: is a folder; expected a file name for the predictions CSV")
    if out.suffix.lower() != ".csv":
        raise ParameterError(f"--out {out}: expected a .csv file name")
    resolved = out.resolve()
    if resolved == Path(model_path).resolve():
        raise ParameterError(f"--out {out}: is the model file")
    if folder.path == resolved or folder.path in resolved.parents:
        raise ParameterError(f"--out {out}: inside the data folder {folder.path}; write the predictions elsewhere")
    if not resolved.parent.is_dir():
        raise ParameterError(f"--out {out}: the folder {resolved.parent} does not exist")
    return out


def run(model_path, data_dir, out=None, n_resamples: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """The ``evaluate`` command: check the inputs, score every image, write the predictions CSV; the report.

    Order: the model archive, the folder and its labels, the output path, the
    model loaded and checked, every image header, then the scoring; the CSV is
    written (atomically) only when every image has been scored.
    """
    from lesionscan.model import saving

    model_path = Path(model_path)
    saving.check_archive(model_path)
    folder = read_labelled_folder(data_dir)
    target = _check_out(Path(out) if out is not None else default_out(model_path, folder.path), model_path, folder)
    model = saving.load_model(model_path)
    if progress:
        print(f"scoring {len(folder.frame):,} images ({folder.layout}) with {model_path.name} at "
              f"{saving.input_size(model)} px", flush=True)
    started = time.monotonic()
    pred = predictions(model, folder.frame, progress=progress)
    seconds = time.monotonic() - started
    atomic.write_csv(target, pred)
    report = score(pred, n_resamples=n_resamples, seed=seed)
    report.update(model={"path": str(model_path), "kind": model.name, "input_size": saving.input_size(model)},
                  data={"path": str(folder.path), "layout": folder.layout, "checksum": folder.checksum},
                  predictions=str(target), seconds=round(seconds, 1))
    return report


def _interval(entry: dict) -> str:
    if entry["value"] is None:
        return "undefined"
    if entry["low"] is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} ({entry['low']:.3f} to {entry['high']:.3f})"


def format_text(report: dict) -> str:
    """The report for a terminal: the data, the headline metrics and per-class recall with intervals."""
    names = {"balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
             "roc_auc_macro": "ROC-AUC (macro)", "roc_auc_weighted": "ROC-AUC (weighted)"}
    data, model = report["data"], report["model"]
    width = max(len(label(dx)) for dx in CLASSES)
    lines = [f"{model['path']} ({model['kind']}, {model['input_size']} px) on {data['path']}",
             f"  {data['layout']}, {report['images']:,} images, checksum {data['checksum']}",
             f"  scored in {report['seconds']:.0f} s; predictions: {report['predictions']}", "",
             "metric (95 % interval: bootstrap within each class, "
             f"{report['bootstrap']['resamples']} resamples)"]
    lines += [f"  {names[name]:<20} {_interval(entry)}" for name, entry in report["metrics"].items()]
    lines += ["", f"  {'recall per class':<{width}}  {'images':>6}  recall (95 % interval)"]
    for dx in CLASSES:
        n = report["images_per_class"][dx]
        recall = _interval(report["recall"][dx]) if dx in report["recall"] else "no images"
        lines.append(f"  {label(dx):<{width}}  {n:>6,}  {recall}")
    return "\n".join(lines)


def format_json(report: dict) -> str:
    return json.dumps(report, indent=2)
