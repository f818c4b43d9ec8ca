"""Train/val/test splits of HAM10000 under three protocols, and checks of what they leak.

- ``seed``: the report's (and Datta et al.'s) test set: a stratified share of
  the images whose lesion has only one image; every multi-image lesion trains.
- ``lesion``: stratified 70/15/15 over lesions, so no lesion spans two subsets.
- ``image``: stratified 70/15/15 over images; it leaks lesions across subsets
  and exists to measure how much that flatters the scores.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from lesionscan.core.atomic import write_csv
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.data.ham10000 import METADATA_FILES

PROTOCOLS = ("seed", "lesion", "image")
SUBSETS = ("train", "val", "test")
SPLIT_COLUMNS = ("image_id", "lesion_id", "dx", "subset")


def _stratified(units: pd.DataFrame, fraction: float, seed: int, what: str, protocol: str):
    """Split ``units`` stratified by dx; turn sklearn's terse errors into a DataError that says what to fix."""
    try:
        return train_test_split(units, test_size=fraction, stratify=units["dx"], random_state=seed)
    except ValueError as exc:
        per_class = units["dx"].value_counts().reindex(CLASSES).dropna().astype(int)
        counts = ", ".join(f"{dx} {n}" for dx, n in per_class.items())
        raise DataError(
            f"protocol {protocol!r}: cannot split off a stratified {what} set of {fraction:g} from "
            f"{len(units)} units (class counts: {counts}): {exc}. Every class needs enough "
            f"images/lesions to appear in each subset; use more data or another protocol."
        ) from exc


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Fractions outside (0, 1) or summing to 1 or more leave no training data."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ParameterError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ParameterError(
            f"val_fraction + test_fraction must be below 1 to leave training data, got {val_fraction} + {test_fraction}"
        )


def make_split(
    df: pd.DataFrame, protocol: str, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> pd.DataFrame:
    """Assign every image to train/val/test under ``protocol``; deterministic in ``seed``.

    Returns columns image_id, lesion_id, dx, subset, sorted by image_id. The
    input is sorted by image_id first, so the result does not depend on row order.
    """
    if protocol not in PROTOCOLS:
        raise ParameterError(f"unknown split protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    _check_fractions(val_fraction, test_fraction)
    missing = [c for c in SPLIT_COLUMNS[:3] if c not in df.columns]
    if missing:
        raise DataError(f"cannot split: the dataset frame lacks column(s) {', '.join(missing)}")
    images = df[["image_id", "lesion_id", "dx"]].sort_values("image_id", kind="stable").reset_index(drop=True)
    subset = pd.Series("train", index=images.index, dtype=object)

    if protocol == "seed":
        # Test and val come only from single-image lesions, so they never share a lesion with train.
        sizes = images.groupby("lesion_id")["image_id"].transform("size")
        pool = images[sizes == 1]
        rest, test = _stratified(pool, test_fraction, seed, "test", protocol)
        _, val = _stratified(rest, val_fraction, seed, "val", protocol)
        subset[test.index] = "test"
        subset[val.index] = "val"
    else:
        if protocol == "lesion":
            units = images.groupby("lesion_id", sort=True)["dx"].first().reset_index()
            key = "lesion_id"
        else:
            units, key = images, "image_id"
        rest, test = _stratified(units, test_fraction, seed, "test", protocol)
        # Rescale so val is val_fraction of all units, not of what test left.
        _, val = _stratified(rest, val_fraction / (1 - test_fraction), seed, "val", protocol)
        subset[images[key].isin(test[key]).to_numpy()] = "test"
        subset[images[key].isin(val[key]).to_numpy()] = "val"

    images["subset"] = subset
    return images.astype(str)


def support_table(split: pd.DataFrame) -> pd.DataFrame:
    """Images per class and subset (CLASSES order, plus totals): what each score is averaged over."""
    table = pd.crosstab(split["dx"], split["subset"]).reindex(index=list(CLASSES), columns=list(SUBSETS), fill_value=0)
    table = table.astype(int)
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "class"
    table.columns.name = None
    return table


def leakage_table(split: pd.DataFrame) -> pd.DataFrame:
    """Lesions present in two subsets at once: near-duplicate images that inflate test scores.

    One row per subset pair (a, b): shared_lesions counts lesions with images
    in both; shared_images_b counts the images of b that belong to them.
    """
    lesions = {s: set(split.loc[split["subset"] == s, "lesion_id"]) for s in SUBSETS}
    rows = []
    for a, b in combinations(SUBSETS, 2):
        shared = lesions[a] & lesions[b]
        in_b = (split["subset"] == b) & split["lesion_id"].isin(shared)
        rows.append({"subset_a": a, "subset_b": b, "shared_lesions": len(shared), "shared_images_b": int(in_b.sum())})
    return pd.DataFrame(rows)


def _validate(split: pd.DataFrame, source: str) -> None:
    """A split file feeds training and evaluation directly, so reject anything malformed."""
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise DataError(f"split {source} lacks column(s) {', '.join(missing)}; expected {', '.join(SPLIT_COLUMNS)}")
    problems = []
    for i in split.index[~split["subset"].isin(SUBSETS)]:
        problems.append(f"row {i + 2}: subset={split.at[i, 'subset']!r}, expected one of {', '.join(SUBSETS)}")
    for i in split.index[~split["dx"].isin(CLASSES)]:
        problems.append(f"row {i + 2}: dx={split.at[i, 'dx']!r}, expected one of {', '.join(CLASSES)}")
    for image_id in split.loc[split["image_id"].duplicated(), "image_id"].unique():
        problems.append(f"image_id {image_id} listed more than once")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError(f"split {source} is invalid:\n  - " + "\n  - ".join(shown))


def _is_split_file(path: Path) -> bool:
    """Whether an existing file is one ``write_split`` wrote (its header), or empty: safe to replace."""
    with open(path, "rb") as handle:
        first = handle.readline(4096)
    return not first or first.decode("utf-8", "replace").strip() == ",".join(SPLIT_COLUMNS)


def check_split_target(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Refuse a path where writing a split would destroy or change data; return it.

    Refused: a folder; a path named like a data set's metadata file, in any
    case (written there, a split replaces the metadata, or is read as it next
    time: the CSV is preferred over Dataverse's .tab); an existing file that
    is not a split (nothing but a split is ever replaced); and, when
    ``data_dir`` is given, any path inside the data directory (links
    resolved): a data set is input, fingerprinted by its checksum, and
    outputs belong elsewhere.
    """
    target = Path(path)
    if target.is_dir():
        raise ParameterError(f"split file {target} is a folder; expected a file path such as {target / 'split.csv'}")
    if target.name.lower() in {name.lower() for name in METADATA_FILES}:  # macOS and Windows ignore case
        raise ParameterError(f"split file {target} has the name of a data set's metadata file: written there it "
                             "would replace the metadata, or be read as it; choose another name, outside the data "
                             "directory")
    if data_dir is not None:
        root, resolved = Path(data_dir).resolve(), target.resolve()
        if resolved == root or root in resolved.parents:
            raise ParameterError(f"split file {target} is inside the data directory {root}; a data set is input: "
                                 "write the split outside it")
    if target.exists() and not _is_split_file(target):
        raise ParameterError(f"split file {target} exists and is not a split (its first line is not "
                             f"{','.join(SPLIT_COLUMNS)}); refusing to replace it: choose another path")
    return target


def write_split(split: pd.DataFrame, path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """Save a split as CSV (atomically), so every later step and the book read the same assignment.

    ``path`` must pass ``check_split_target`` (with ``data_dir``, the data set the split is of).
    """
    check_split_target(path, data_dir)
    _validate(split.reset_index(drop=True), "to write")
    return write_csv(path, split[list(SPLIT_COLUMNS)].sort_values("image_id", kind="stable"))


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split written by ``write_split``, checking columns, subset and class values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found")
    try:
        split = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from exc
    _validate(split, f"file {path}")
    split = split[list(SPLIT_COLUMNS)].astype(str)
    return split.sort_values("image_id", kind="stable").reset_index(drop=True)
