"""Load and check a HAM10000-style dataset: metadata table, JPEG images, optional lesion masks.

Every later step trusts the frame that ``load_dataset`` returns, so all the
checks live here, and a broken dataset fails once, early, with one message
that lists every problem found (not just the first). Messages name a
metadata row by its line in the file (header = line 1), as an editor shows it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from lesionscan.core.classes import CLASS_NAMES, CLASSES
from lesionscan.core.errors import DataError
from lesionscan.data.images import EXIF_ORIENTATION, to_rgb8

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
MAX_LISTED_MASKS = 3
# EXIF orientations that turn the picture a quarter turn, so width and height swap when it is shown upright.
QUARTER_TURNS = (5, 6, 7, 8)


def _problem_message(data_dir: Path, problems: list[str]) -> str:
    """One message for all problems, capped so a wholly broken dataset stays readable."""
    shown = problems[:MAX_LISTED_PROBLEMS]
    lines = [f"{len(problems)} problem(s) in the dataset at {data_dir}:"] + [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def _rows(index) -> str:
    """Lines of the metadata file (the frame's index holds each row's line, header = line 1)."""
    return ", ".join(str(i) for i in index)


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


def _unreadable(path: str, exc: Exception) -> str:
    """Why a file cannot be read, for a problem line: our own DataError says it in words already."""
    if isinstance(exc, DataError):
        return str(exc)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "the file is empty (0 bytes)"
    return f"{type(exc).__name__}: {exc}"


def _inspect(path: str) -> tuple[tuple[int, int] | None, str | None, bool]:
    """Return the image's (width, height) as shown upright, why it cannot be read (None if it can), and
    whether it carries an EXIF orientation (it is stored turned or mirrored).

    JPEGs are decoded in draft mode (1/8 scale), which still reads every byte
    of the compressed data, so truncated files are caught, yet costs about as
    little as ``Image.verify`` (which misses truncation). The pixels then go
    through ``to_rgb8``, so a mode or an animation that training would refuse
    is refused here. The size is the upright one (``to_rgb8`` applies the EXIF
    orientation), so a mask is compared with the picture the model sees.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size  # before draft(), which shrinks it
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            if orientation in QUARTER_TURNS:
                width, height = height, width
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            to_rgb8(im)
    except Exception as exc:  # PIL raises many types for broken files
        return None, _unreadable(path, exc), False
    return (width, height), None, orientation != 1


# What a mask can hold that the interpretability chapter would misread, or read in a way worth knowing.
# Masks feed only that chapter's scoring of attention maps against lesions (analysis.agreement.load_mask),
# which reads each mask as 8-bit grey and calls a pixel lesion where it is >= 128. So:
# - errors, because the chapter would score every map against a wrong lesion, silently, hours into a study:
#   lesion pixels that all stay below 128 (a 0/1 mask, a dark colour, low 16-bit values) read as no lesion
#   at all; transparency that marks the lesion differently from the grey is ignored by that reading.
# - warnings, because the reading is well defined and most likely what was meant: grey levels other than
#   0 and 255 (soft or resampled edges) are thresholded at 128; a colour, palette or alpha mask is read as
#   its grey luminance.
MASK_ERRORS = {
    "no lesion": "mark the lesion only with values below 128 (a 0/1 mask?), so it reads as no lesion at all "
                 "where masks are thresholded at 128 (8-bit grey); expected lesion 255, background 0",
    "alpha": "mark the lesion by transparency, which is ignored where masks are read (as 8-bit grey); "
             "expected lesion 255, background 0, no transparency",
}
MASK_WARNINGS = {
    "grey levels": "hold grey levels other than 0 and 255; they are read as lesion where >= 128",
    "channels": "have more than one channel or a palette (e.g. RGB, RGBA); they are read as 8-bit grey "
                "(luminance)",
}
ORIENTED_WARNING = ("carry an EXIF orientation (stored turned or mirrored); they are read upright, as viewers "
                    "show them, so a mask must be upright too")


def _mask_findings(im: Image.Image, grey: Image.Image) -> set[str]:
    """The MASK_ERRORS / MASK_WARNINGS kinds that apply to an opened mask ``im`` read as 8-bit ``grey``."""
    kinds = set()
    bands = im.getbands()
    if len(bands) > 1 or im.mode in ("P", "PA"):
        kinds.add("channels")
    histogram = grey.histogram()
    extrema = im.getextrema()  # of the stored values, before any reduction to 8 bits
    stored_max = max(high for _, high in extrema) if isinstance(extrema[0], tuple) else extrema[1]
    if stored_max > 0 and not any(histogram[128:]):
        kinds.add("no lesion")
    elif any(histogram[1:255]):
        kinds.add("grey levels")
    if "A" in bands or "transparency" in im.info:
        alpha = np.asarray(ImageOps.exif_transpose(im.convert("RGBA")).getchannel("A")) >= 128
        if not alpha.all() and (alpha != (np.asarray(grey) >= 128)).any():
            kinds.add("alpha")
    return kinds


def _inspect_mask(path: str) -> tuple[tuple[int, int] | None, str | None, set[str]]:
    """A mask's (width, height), why it cannot be read (None if it can) and what it holds (``_mask_findings``).

    Decodes the whole mask, by the images' rule (``to_rgb8``) then to grey; a lesion mask is
    small (HAM10000's 10,015 at 200 x 150 take about 2 s).
    """
    try:
        with Image.open(path) as im:
            grey = to_rgb8(im).convert("L")
            return grey.size, None, _mask_findings(im, grey)
    except Exception as exc:  # PIL raises many types for broken files
        return None, _unreadable(path, exc), set()


def _file_messages(kinds: dict[str, list[str]], texts: dict[str, str], what: str = "mask") -> list[str]:
    """One line per kind of trouble, naming the first few files, so 10,000 alike stay one line."""
    lines = []
    for kind, text in texts.items():
        paths = kinds.get(kind, [])
        if paths:
            shown = ", ".join(paths[:MAX_LISTED_MASKS])
            more = f" and {len(paths) - MAX_LISTED_MASKS} more" if len(paths) > MAX_LISTED_MASKS else ""
            lines.append(f"{len(paths)} {what} file(s) {text}: {shown}{more}")
    return lines


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


def _metadata_text(meta: Path) -> str:
    """The metadata file as text: UTF-8, with or without the byte-order mark that 'CSV UTF-8' exports write.

    Other encodings are refused rather than guessed: a wrong guess would turn ids into other ids.
    """
    try:
        data = meta.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read metadata file {meta}: {exc.strerror or exc}") from exc
    save_as = "save it as 'CSV UTF-8' (comma-separated)"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"metadata file {meta} is UTF-16 text (a spreadsheet's 'Unicode text'); "
                        f"expected UTF-8: {save_as}")
    if b"\0" in data.split(b"\n", 1)[0]:
        raise DataError(f"metadata file {meta} line 1 holds NUL bytes (UTF-16 text without a byte-order "
                        f"mark?); expected UTF-8 text: {save_as}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"metadata file {meta} line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 "
                        f"(Latin-1 or Windows-1252 text?); expected UTF-8: {save_as}") from exc


def _records(meta: Path, text: str) -> list[tuple[int, list[str]]]:
    """(line, fields) for every record of the file, numbered by the line where it starts.

    The csv module is used, not pandas, because it tells where each record
    starts: pandas skips blank lines and counts a quoted field's line breaks
    as nothing, so its row numbers drift from the lines an editor shows.
    Quoting is strict (RFC 4180), so a quote left open is an error on its
    line, not the rest of the file read into one field.
    """
    delimiter = "\t" if meta.suffix == ".tab" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records, line = [], 1
    try:
        for fields in reader:
            records.append((line, [f.strip() for f in fields]))
            line = reader.line_num + 1
    except csv.Error as exc:
        kind = "tab" if delimiter == "\t" else "comma"
        raise DataError(f"metadata file {meta} line {line}: not valid {kind}-separated text ({exc}); "
                        f"expected a field holding {delimiter!r}, a quote or a line break to be quoted "
                        f'("back, upper"), with quotes inside it doubled') from exc
    return records


def _header(meta: Path, fields: list[str]) -> list[str]:
    """The column names, refused when a required column is missing or a column we read appears twice."""
    duplicated = {c: [k + 1 for k, name in enumerate(fields) if name == c] for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    duplicated = {c: where for c, where in duplicated.items() if len(where) > 1}
    if duplicated:
        which = "; ".join(f"{c} is columns {', '.join(map(str, where))}" for c, where in duplicated.items())
        raise DataError(f"metadata file {meta} names a column more than once ({which}); "
                        "expected each column once, so that it is clear which one holds the values")
    missing = [c for c in REQUIRED_COLUMNS if c not in fields]
    if missing:
        delimiter = "\t" if meta.suffix == ".tab" else ","
        others = [d for d in (";", "\t", ",", "|") if d != delimiter and d in "".join(fields)]
        hint = (f" (the header looks separated by {others[0]!r}; expected {delimiter!r})"
                if others and len(fields) == 1 else "")
        raise DataError(
            f"metadata file {meta} lacks required column(s) {', '.join(missing)}; "
            f"expected at least {', '.join(REQUIRED_COLUMNS)}, found {', '.join(fields) or 'none'}{hint}"
        )
    return fields


def _read_metadata(meta: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read the metadata as text (ids must not become numbers); return it and the problems of its rows.

    The frame's index is each row's line in the file. Blank lines, and rows
    whose every field is empty (a spreadsheet's empty row), carry nothing and
    are skipped, as blank lines always were.

    A trailing delimiter on every line (``...,localization,``, a common export)
    adds a column with no name: it is accepted without a word, as it holds
    nothing; ``pd.read_csv`` took the rows' extra empty field for an index,
    which shifted every column. A value under no column name is a problem of
    its row: it means the row has a field too many (a stray delimiter, an
    unquoted comma) and its values sit under the wrong columns. So is a row
    with fewer fields than the header names: an unquoted line break splits a
    row in two, and padding the halves would invent two rows.
    """
    records = [(line, fields) for line, fields in _records(meta, _metadata_text(meta)) if any(fields)]
    if not records:
        raise DataError(f"metadata file {meta} is empty; expected a header line naming the columns "
                        f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}, then one line per image")
    (_, header), body = records[0], records[1:]
    names = _header(meta, header)
    named = [k for k, name in enumerate(names) if name]
    width = named[-1] + 1
    lines, rows, problems = [], [], []
    for line, fields in body:
        stray = [(k + 1, v) for k, v in enumerate(fields) if v and (k >= len(names) or not names[k])]
        if len(fields) < width:
            problems.append(f"{meta.name} line {line}: {len(fields)} field(s), but the header names {width} "
                            "columns; expected one value per column (a line break in an unquoted field?)")
        elif stray:
            column, value = stray[0]
            problems.append(f"{meta.name} line {line}: value {value!r} in field {column}, which has no column "
                            "name in the header; expected values only under named columns (a stray delimiter "
                            "or an unquoted comma shifts the row)")
        else:
            lines.append(line)
            rows.append([fields[k] for k in named])
    frame = pd.DataFrame(rows, columns=[names[k] for k in named], index=pd.Index(lines, dtype=int), dtype=str)
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    return frame, problems


def _printable(value: str) -> bool:
    """An id a user can read and a file name can hold: no NUL, control or invisible characters."""
    return value.isprintable()


def _table_problems(frame: pd.DataFrame, meta: Path) -> list[str]:
    """Problems visible in the metadata alone: empty or unprintable ids, unknown labels, duplicates, mixed labels.

    ``frame``'s index holds each row's line in the file.
    """
    problems = []
    for column in ("lesion_id", "image_id"):
        for i in frame.index[frame[column] == ""]:
            problems.append(f"{meta.name} line {i}: empty {column}")
        for i in frame.index[~frame[column].map(_printable)]:
            value = frame.at[i, column]
            codes = ", ".join(sorted({f"U+{ord(c):04X}" for c in value if not c.isprintable()}))
            problems.append(f"{meta.name} line {i}: {column} {value!r} holds a NUL, control or invisible "
                            f"character ({codes}); expected printable text, as in file names")
    for i in frame.index[~frame["dx"].isin(CLASSES)]:
        dx = frame.at[i, "dx"]
        hint = f" (labels are lower case: {dx.lower()!r})" if dx.lower() in CLASSES else ""
        problems.append(
            f"{meta.name} line {i}: unknown class label dx={dx!r}; expected one of {', '.join(CLASSES)}{hint}"
        )
    # Find offenders vectorised first; looping over all 7,470 lesions costs about a second.
    duplicated = frame[(frame["image_id"] != "") & frame["image_id"].duplicated(keep=False)]
    for image_id, rows in duplicated.groupby("image_id", sort=True).groups.items():
        problems.append(f"{meta.name}: duplicate image_id {image_id} on lines {_rows(rows)}")
    labelled = frame[frame["lesion_id"] != ""]
    n_labels = labelled.groupby("lesion_id")["dx"].transform("nunique")
    for lesion_id, group in labelled[n_labels > 1].groupby("lesion_id", sort=True):
        labels = "; ".join(f"{dx} (lines {_rows(g.index)})" for dx, g in group.groupby("dx", sort=True))
        problems.append(f"{meta.name}: lesion {lesion_id} has more than one dx: {labels}")
    return problems


def _missing_problem(meta: Path, missing: list[tuple[int, str]], where: str) -> str:
    """One problem for all listed-but-absent images, so a missing folder cannot bury the others."""
    if len(missing) == 1:
        (i, image_id), = missing
        return f"{meta.name} line {i}: image {image_id} not found in {where}"
    shown = ", ".join(f"{image_id} (line {i})" for i, image_id in missing[:MAX_LISTED_MISSING])
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
    warnings: list[str] = field(default_factory=list)  # worth knowing, but no reason to refuse the data

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
            f"  warnings: {len(self.warnings) or 'none'}",
            *(f"    - {w}" for w in self.warnings),
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


def _data_dir(data_dir: str | os.PathLike) -> Path:
    """The data directory with symbolic links resolved, so a link to the data is the data."""
    path = Path(data_dir)
    if path.is_symlink() and not path.exists():
        raise DataError(f"data directory {path} is a symbolic link to {os.readlink(path)}, which does not exist")
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist (or is not a directory)")
    return path.resolve()


def _scan(data_dir: str | os.PathLike, verify_images: bool) -> CheckReport:
    """Read the metadata, find every image and mask, and collect every problem without raising on them."""
    data_dir = _data_dir(data_dir)
    meta = find_metadata(data_dir)
    frame, problems = _read_metadata(meta)
    if frame.empty:
        if problems:
            raise DataError(_problem_message(data_dir, problems))
        raise DataError(f"metadata file {meta} lists no images")
    problems += _table_problems(frame, meta)

    entries = {e.name: e.is_dir() for e in os.scandir(data_dir)}
    folders = [name for name in IMAGE_DIRS + KAGGLE_DIRS + (FLAT_DIR,) if entries.get(name)]
    ignored = sorted(n for n, is_dir in entries.items()
                     if not is_dir and n.lower().endswith((".csv", ".tab")) and n != meta.name)
    images = _index_files([data_dir / f for f in folders], lambda s: s in IMAGE_SUFFIXES)
    masks = _index_files([data_dir / MASK_DIR], lambda s: s == ".png")
    image_paths, mask_paths, missing, sizes = [], [], [], Counter()
    file_problems, mask_kinds, image_kinds = [], defaultdict(list), defaultdict(list)
    for i, image_id in zip(frame.index, frame["image_id"]):
        path = images.get(image_id)
        mask = masks.get(f"{image_id}_segmentation")
        if path is None and image_id and _printable(image_id):  # unprintable ids are a problem already
            missing.append((i, image_id))
        elif path is not None and verify_images:
            size, why, oriented = _inspect(path)
            if why:
                file_problems.append(f"image file {path} cannot be decoded ({why})")
            else:
                sizes[f"{size[0]}x{size[1]}"] += 1
            if oriented:
                image_kinds["oriented"].append(path)
            if mask is not None:
                mask_size, why, kinds = _inspect_mask(mask)
                if why:
                    file_problems.append(f"mask file {mask} cannot be read ({why})")
                elif size is not None and mask_size != size:
                    upright = " upright (after its EXIF orientation)" if oriented else ""
                    file_problems.append(f"mask file {mask} is {mask_size[0]}x{mask_size[1]} "
                                         f"but its image {path} is {size[0]}x{size[1]}{upright}")
                for kind in kinds:
                    mask_kinds[kind].append(mask)
        image_paths.append(path)
        mask_paths.append(mask)
    if missing:
        where = (", ".join(str(data_dir / f) for f in folders)
                 or f"{data_dir}, which has no image folder (looked for "
                    f"{', '.join(IMAGE_DIRS + KAGGLE_DIRS + (FLAT_DIR,))})")
        problems.append(_missing_problem(meta, missing, where))
    problems += file_problems + _file_messages(mask_kinds, MASK_ERRORS)
    warnings = (_file_messages(image_kinds, {"oriented": ORIENTED_WARNING}, "image")
                + _file_messages(mask_kinds, MASK_WARNINGS))

    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    frame["image_path"] = pd.Series(image_paths, index=frame.index, dtype=object)
    frame["mask_path"] = pd.Series(mask_paths, index=frame.index, dtype=object)
    columns = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS) + ["image_path", "mask_path"]
    frame = frame[columns].sort_values("image_id", kind="stable").reset_index(drop=True)
    n_masks = int(frame["mask_path"].notna().sum())
    return CheckReport(data_dir, _layout(folders), meta, folders, ignored, frame, class_table(frame),
                       lesion_table(frame), dict(sizes.most_common()), n_masks, len(frame) - n_masks, problems,
                       warnings)


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
    only when there is nothing to report on (no directory, metadata, required columns or
    readable row). Warnings (``CheckReport.warnings``) never stop a run.
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
    return labelled_files_checksum(find_metadata(data_dir), frame)


def labelled_files_checksum(labels_file: Path, frame: pd.DataFrame) -> str:
    """sha256 of a labels file's bytes, then each image's id, length and bytes in image_id order.

    The checksum of every layout the package reads (HAM10000's metadata, ISIC 2018's ground truth).
    """
    digest = hashlib.sha256()
    digest.update(Path(labels_file).read_bytes())
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
        samples[dx] = [_rgb_array(path) for path in chosen["image_path"]]
    return samples


def _rgb_array(path) -> np.ndarray:
    """An image file as a uint8 RGB array, by the package's one decoding rule (``to_rgb8``)."""
    with Image.open(path) as image:
        return np.asarray(to_rgb8(image, source=path))
