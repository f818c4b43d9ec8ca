"""Load and check a HAM10000-style dataset: metadata table, JPEG images, optional lesion masks.

Every later step trusts the frame that ``load_dataset`` returns, so all the
checks live here, and a broken dataset fails once, early, with one message
that lists every problem found (not just the first).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lesionscan.core.classes import CLASS_NAMES, CLASSES
from lesionscan.core.errors import DataError

METADATA_FILE = "HAM10000_metadata.csv"
# Dataverse serves the metadata as a tab-separated .tab with quoted strings.
METADATA_FILES = (METADATA_FILE, "HAM10000_metadata.tab")
IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
# The Kaggle copy repeats both folders in lower case, holding the same files.
KAGGLE_DIRS = ("ham10000_images_part_1", "ham10000_images_part_2")
FLAT_DIR = "images"
MASK_DIR = "HAM10000_segmentations_lesion_tschandl"

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
OPTIONAL_COLUMNS = ("dx_type", "age", "sex", "localization")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_LISTED_PROBLEMS = 20
MAX_LISTED_MISSING = 10


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
    """Map file stem -> absolute path with one directory listing per folder (fast on 10k files).

    The first folder holding a stem wins, and names are sorted within a folder,
    so Kaggle's duplicate folders always resolve to the same file.
    """
    found: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        root = os.path.abspath(folder)
        for name in sorted(os.listdir(root)):
            stem, suffix = os.path.splitext(name)
            if suffix_ok(suffix.lower()) and stem not in found:
                found[stem] = os.path.join(root, name)
    return found


def _inspect(path: str, decode: bool) -> tuple[tuple[int, int] | None, str | None]:
    """Return the file's (width, height) from its header and why it cannot be read (None if it can).

    With ``decode``, JPEGs are decoded in draft mode (1/8 scale), which still
    reads every byte of the compressed data, so truncated files are caught, yet
    costs about as little as ``Image.verify`` (which misses truncation).
    """
    try:
        with Image.open(path) as im:
            size = im.size  # before draft(), which shrinks it
            if decode:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
    except Exception as exc:  # PIL raises many types for broken files
        return None, f"{type(exc).__name__}: {exc}"
    return size, None


def find_metadata(data_dir: str | os.PathLike) -> Path:
    """The metadata file of a data directory: the CSV if present, else Dataverse's .tab."""
    data_dir = Path(data_dir)
    for name in METADATA_FILES:
        if (data_dir / name).is_file():
            return data_dir / name
    hint = ""
    if any(data_dir.glob("hmnist_*.csv")):
        hint = " (the hmnist_*.csv files there are pixel tables, not metadata)"
    raise DataError(f"metadata file not found in {data_dir}; looked for {', '.join(METADATA_FILES)}{hint}")


def _read_metadata(meta: Path) -> pd.DataFrame:
    """Read the metadata as text (ids must not become numbers) and check its columns."""
    try:
        frame = pd.read_csv(meta, sep="\t" if meta.suffix == ".tab" else ",", dtype=str,
                            keep_default_na=False, encoding="utf-8-sig")
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
            f"{meta.name} row {i + 2}: unknown class label dx={frame.at[i, 'dx']!r}; "
            f"expected one of {', '.join(CLASSES)}"
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


def _missing_problem(meta: Path, missing: list[tuple[int, str]], where: str) -> str:
    """One problem for all listed-but-absent images, so a missing folder cannot bury the others."""
    if len(missing) == 1:
        (i, image_id), = missing
        return f"{meta.name} row {i + 2}: image {image_id} not found in {where}"
    shown = ", ".join(f"{image_id} (row {i + 2})" for i, image_id in missing[:MAX_LISTED_MISSING])
    more = f" and {len(missing) - MAX_LISTED_MISSING} more" if len(missing) > MAX_LISTED_MISSING else ""
    return f"{meta.name}: {len(missing)} listed images not found in {where}: {shown}{more}"


def _layout(folders: list[str]) -> str:
    """Name the layout from the image folders present (exact case, so macOS cannot fool it)."""
    kinds = ["kaggle" if set(folders) & set(KAGGLE_DIRS) else "official" if set(folders) & set(IMAGE_DIRS) else "",
             "flat" if FLAT_DIR in folders else ""]
    return " + ".join(k for k in kinds if k) or "none"


@dataclass
class CheckReport:
    """What ``check_report`` found in a data directory, so a user can judge it before a long run."""

    data_dir: Path
    layout: str  # "official", "kaggle", "flat" (or e.g. "official + flat"; "none" without image folders)
    metadata: Path
    image_folders: list[str]
    ignored: list[str]  # table files beside the metadata that were not read (Kaggle's hmnist_*.csv)
    frame: pd.DataFrame  # as load_dataset returns it; image_path is None for missing images
    classes: pd.DataFrame  # class_table(frame)
    lesions: pd.DataFrame  # lesion_table(frame)
    image_sizes: dict[str, int]  # "WxH" -> images, most common first
    masks_found: int
    masks_missing: int
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The report as text for the terminal (problems are raised separately)."""
        sizes = list(self.image_sizes.items())
        size_text = ", ".join(f"{wh} ({n:,})" for wh, n in sizes[:5])
        if len(sizes) > 5:
            size_text += f", and {len(sizes) - 5} other sizes ({sum(n for _, n in sizes[5:]):,} images)"
        lines = [
            f"{self.data_dir}",
            f"  layout:   {self.layout} ({', '.join(self.image_folders) or 'no image folder'})",
            f"  metadata: {self.metadata.name}" + (f" (ignored: {', '.join(self.ignored)})" if self.ignored else ""),
            f"  {len(self.frame):,} images, {self.frame['lesion_id'].nunique():,} lesions",
            f"  sizes:    {size_text or 'none read'}",
            f"  masks:    {self.masks_found:,} found, {self.masks_missing:,} missing"
            + ("" if self.masks_found else f" (no {MASK_DIR}/; masks are optional)"),
            f"  problems: {len(self.problems) or 'none'}",
            "",
            self.classes.to_string(index=False),
            "",
            self.lesions.to_string(index=False),
        ]
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        """Raise one DataError listing every problem, if there are any."""
        if self.problems:
            raise DataError(_problem_message(self.data_dir, self.problems))


def _scan(data_dir: str | os.PathLike, verify_images: bool) -> CheckReport:
    """Read the metadata, find every image and mask, and collect every problem without raising on them."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist (or is not a directory)")
    meta = find_metadata(data_dir)
    frame = _read_metadata(meta)
    if frame.empty:
        raise DataError(f"metadata file {meta} lists no images")
    problems = _table_problems(frame, meta)

    entries = {e.name: e.is_dir() for e in os.scandir(data_dir)}
    folders = [name for name in IMAGE_DIRS + KAGGLE_DIRS + (FLAT_DIR,) if entries.get(name)]
    ignored = sorted(n for n, is_dir in entries.items()
                     if not is_dir and n.lower().endswith((".csv", ".tab")) and n != meta.name)
    images = _index_files([data_dir / f for f in folders], lambda s: s in IMAGE_SUFFIXES)
    masks = _index_files([data_dir / MASK_DIR], lambda s: s == ".png")
    image_paths, mask_paths, missing, sizes = [], [], [], Counter()
    file_problems = []
    for i, image_id in zip(frame.index, frame["image_id"]):
        path = images.get(image_id)
        mask = masks.get(f"{image_id}_segmentation")
        if path is None and image_id:
            missing.append((i, image_id))
        elif path is not None and verify_images:
            size, why = _inspect(path, decode=True)
            if why:
                file_problems.append(f"image file {path} cannot be decoded ({why})")
            else:
                sizes[f"{size[0]}x{size[1]}"] += 1
            if mask is not None and size is not None:
                mask_size, why = _inspect(mask, decode=False)
                if why:
                    file_problems.append(f"mask file {mask} cannot be read ({why})")
                elif mask_size != size:
                    file_problems.append(f"mask file {mask} is {mask_size[0]}x{mask_size[1]} "
                                         f"but its image {path} is {size[0]}x{size[1]}")
        image_paths.append(path)
        mask_paths.append(mask)
    if missing:
        where = (", ".join(str(data_dir / f) for f in folders)
                 or f"{data_dir}, which has no image folder (looked for "
                    f"{', '.join(IMAGE_DIRS + KAGGLE_DIRS + (FLAT_DIR,))})")
        problems.append(_missing_problem(meta, missing, where))
    problems += file_problems

    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    frame["image_path"] = pd.Series(image_paths, index=frame.index, dtype=object)
    frame["mask_path"] = pd.Series(mask_paths, index=frame.index, dtype=object)
    columns = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS) + ["image_path", "mask_path"]
    frame = frame[columns].sort_values("image_id", kind="stable").reset_index(drop=True)
    n_masks = int(frame["mask_path"].notna().sum())
    return CheckReport(data_dir, _layout(folders), meta, folders, ignored, frame, class_table(frame),
                       lesion_table(frame), dict(sizes.most_common()), n_masks, len(frame) - n_masks, problems)


def load_dataset(data_dir: str | os.PathLike, verify_images: bool = True) -> pd.DataFrame:
    """Load the metadata, locate every image (and mask), and check that it all agrees.

    Accepts the official layout (CSV or Dataverse .tab metadata), the Kaggle
    copy (duplicate lower-case folders, hmnist_*.csv ignored) and a flat
    ``images/`` folder. Returns one row per image, sorted by image_id so that
    downstream order never depends on the metadata's row order, with columns
    lesion_id, image_id, dx, dx_type, age (float), sex, localization,
    image_path (absolute str) and mask_path (absolute str, or None where no
    mask exists). ``verify_images`` decodes every image and compares each
    mask's size with its image's. Raises DataError listing every problem found.
    """
    report = _scan(data_dir, verify_images)
    report.raise_for_problems()
    return report.frame


def check_report(data_dir: str | os.PathLike) -> CheckReport:
    """Everything ``data check`` shows: layout, metadata, tables, sizes, masks and all problems.

    Does not raise for problems in the files (see ``CheckReport.raise_for_problems``),
    only when there is nothing to report on (no directory, metadata or required columns).
    """
    return _scan(data_dir, verify_images=True)


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
    total_row = pd.DataFrame({"class": ["total"], "name": ["All classes"], "count": [total],
                              "percent": [100.0 if total else 0.0]})
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
    digest.update(find_metadata(data_dir).read_bytes())
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
