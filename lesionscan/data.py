"""Load and check a HAM10000-style dataset: metadata CSV, JPEG images, optional lesion masks.

Every later step trusts the frame that ``load_dataset`` returns, so all the
checks live here, and a broken dataset fails once, early, with one message
that lists every problem found (not just the first).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lesionscan.classes import CLASS_NAMES, CLASSES
from lesionscan.errors import DataError

METADATA_FILE = "HAM10000_metadata.csv"
IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
MASK_DIR = "HAM10000_segmentations_lesion_tschandl"

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
OPTIONAL_COLUMNS = ("dx_type", "age", "sex", "localization")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_LISTED_PROBLEMS = 20


def _problem_message(data_dir: Path, problems: list[str]) -> str:
    """One message for all problems, capped so a wholly broken dataset stays readable."""
    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [f"{len(problems)} problem(s) in the dataset at {data_dir}:"] + [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def _rows(index) -> str:
    """Row numbers as a user sees them in the CSV file (header = line 1)."""
    return ", ".join(str(i + 2) for i in index)


def _index_files(folders: list[Path], suffix_ok) -> dict[str, str]:
    """Map file stem -> absolute path with one directory listing per folder (fast on 10k files)."""
    found: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        root = str(folder.resolve())
        with os.scandir(root) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix_ok(suffix.lower()) and stem not in found:
                    found[stem] = os.path.join(root, entry.name)
    return found


def _undecodable(path: str) -> str | None:
    """Return why ``path`` cannot be read as an image, or None if it can.

    JPEGs are decoded in draft mode (1/8 scale), which still reads every byte
    of the compressed data, so truncated files are caught, yet costs about as
    little as ``Image.verify`` (which misses truncation).
    """
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as exc:  # PIL raises many types for broken files
        return f"{type(exc).__name__}: {exc}"
    return None


def _read_metadata(meta: Path) -> pd.DataFrame:
    """Read the metadata CSV as text (ids must not become numbers) and check its columns."""
    try:
        frame = pd.read_csv(meta, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"cannot read metadata file {meta}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"metadata file {meta} lacks required column(s) {', '.join(missing)}; "
            f"expected at least {', '.join(REQUIRED_COLUMNS)}, found {', '.join(frame.columns) or 'none'}"
        )
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    return frame


def _table_problems(frame: pd.DataFrame, meta: Path) -> list[str]:
    """Problems visible in the metadata alone: empty ids, unknown labels, duplicates, mixed labels."""
    problems = []
    for column in ("lesion_id", "image_id"):
        for i in frame.index[frame[column] == ""]:
            problems.append(f"{meta.name} row {i + 2}: empty {column}")
    for i in frame.index[~frame["dx"].isin(CLASSES)]:
        problems.append(
            f"{meta.name} row {i + 2}: unknown class label dx={frame.at[i, 'dx']!r}; expected one of {', '.join(CLASSES)}"
        )
    # Find offenders vectorised first; looping over all 7,470 lesions costs about a second.
    duplicated = frame[(frame["image_id"] != "") & frame["image_id"].duplicated(keep=False)]
    for image_id, rows in duplicated.groupby("image_id", sort=True).groups.items():
        problems.append(f"{meta.name}: duplicate image_id {image_id} on rows {_rows(rows)}")
    labelled = frame[frame["lesion_id"] != ""]
    n_labels = labelled.groupby("lesion_id")["dx"].transform("nunique")
    for lesion_id, group in labelled[n_labels > 1].groupby("lesion_id", sort=True):
        labels = "; ".join(f"{dx} (rows {_rows(g.index)})" for dx, g in group.groupby("dx", sort=True))
        problems.append(f"{meta.name}: lesion {lesion_id} has more than one dx: {labels}")
    return problems


def load_dataset(data_dir: str | os.PathLike, verify_images: bool = True) -> pd.DataFrame:
    """Load the metadata, locate every image (and mask), and check that it all agrees.

    Returns one row per image, sorted by image_id so that downstream order never
    depends on the CSV's row order, with columns lesion_id, image_id, dx,
    dx_type, age (float), sex, localization, image_path (absolute str) and
    mask_path (absolute str, or None where no mask exists). Raises DataError
    listing every problem found.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist (or is not a directory)")
    meta = data_dir / METADATA_FILE
    if not meta.is_file():
        raise DataError(f"metadata file {meta} not found; a HAM10000 data directory holds {METADATA_FILE}")

    frame = _read_metadata(meta)
    if frame.empty:
        raise DataError(f"metadata file {meta} lists no images")
    problems = _table_problems(frame, meta)

    image_folders = [data_dir / name for name in IMAGE_DIRS]
    images = _index_files(image_folders, lambda s: s in IMAGE_SUFFIXES)
    masks = _index_files([data_dir / MASK_DIR], lambda s: s == ".png")
    image_paths, mask_paths = [], []
    for i, image_id in zip(frame.index, frame["image_id"]):
        path = images.get(image_id)
        if path is None and image_id:
            problems.append(
                f"{meta.name} row {i + 2}: image {image_id} not found in {', '.join(str(f) for f in image_folders)}"
            )
        elif path is not None and verify_images:
            why = _undecodable(path)
            if why:
                problems.append(f"image file {path} cannot be decoded ({why})")
        image_paths.append(path)
        mask_paths.append(masks.get(f"{image_id}_segmentation"))
    if problems:
        raise DataError(_problem_message(data_dir, problems))

    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    frame["image_path"] = image_paths
    frame["mask_path"] = pd.Series(mask_paths, index=frame.index, dtype=object)
    columns = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS) + ["image_path", "mask_path"]
    return frame[columns].sort_values("image_id", kind="stable").reset_index(drop=True)


def class_table(df: pd.DataFrame) -> pd.DataFrame:
    """Images per class (CLASSES order) with percentages and a total row: the report's Table 4.1."""
    counts = df["dx"].value_counts().reindex(list(CLASSES), fill_value=0).astype(int)
    total = int(counts.sum())
    table = pd.DataFrame(
        {
            "class": list(CLASSES),
            "name": [CLASS_NAMES[c] for c in CLASSES],
            "count": counts.to_numpy(),
            "percent": (counts / total * 100).round(1).to_numpy() if total else 0.0,
        }
    )
    total_row = pd.DataFrame({"class": ["total"], "name": ["All classes"], "count": [total], "percent": [100.0 if total else 0.0]})
    return pd.concat([table, total_row], ignore_index=True)


def lesion_table(df: pd.DataFrame) -> pd.DataFrame:
    """How many lesions have 1, 2, 3... images: the reason image-level splits leak."""
    per_lesion = df.groupby("lesion_id").size()
    lesions = per_lesion.value_counts().sort_index()
    return pd.DataFrame(
        {
            "images_per_lesion": lesions.index.astype(int),
            "lesions": lesions.to_numpy(dtype=int),
            "images": (lesions.index * lesions).to_numpy(dtype=int),
        }
    )


def data_checksum(data: str | os.PathLike | pd.DataFrame) -> str:
    """Fingerprint of the exact data a result was computed from, so results can name it.

    Hashes the metadata file's bytes, then for each listed image in image_id
    order its id, length and bytes (the id and length keep file boundaries
    unambiguous). Accepts a data directory or a frame from ``load_dataset``;
    for a frame the metadata file is found beside the image folders, so both
    forms give the same value.
    """
    if isinstance(data, pd.DataFrame):
        frame = data
        if frame.empty:
            raise DataError("cannot checksum an empty dataset frame")
        data_dir = Path(frame["image_path"].iloc[0]).parent.parent
    else:
        data_dir = Path(data)
        frame = load_dataset(data_dir, verify_images=False)
    digest = hashlib.sha256()
    digest.update((data_dir / METADATA_FILE).read_bytes())
    for image_id, path in sorted(zip(frame["image_id"], frame["image_path"])):
        content = Path(path).read_bytes()
        digest.update(f"\0{image_id}\0{len(content)}\0".encode())
        digest.update(content)
    return f"sha256:{digest.hexdigest()}"


def sample_images(df: pd.DataFrame, per_class: int = 5, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """A few images of each class, chosen reproducibly, as RGB arrays for an example grid."""
    samples = {}
    for dx in CLASSES:
        rows = df[df["dx"] == dx]
        chosen = rows.sample(min(per_class, len(rows)), random_state=seed) if len(rows) else rows
        samples[dx] = [np.asarray(Image.open(path).convert("RGB")) for path in chosen["image_path"]]
    return samples
