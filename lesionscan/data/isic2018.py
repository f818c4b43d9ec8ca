"""The ISIC 2018 Task 3 layout: an external test set of the same seven classes, held out from HAM10000.

The challenge publishes its images (``ISIC2018_Task3_Test_Input/``,
``ISIC2018_Task3_Validation_Input/``: a folder of ``ISIC_*.jpg``) and, in a
separate archive, a one-hot ground truth (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``,
one row per image, a 1.0 under its class). A folder holding both, at most two
levels down (as the two archives unpack side by side), is read here into the
frame the rest of the package knows (``image_id``, ``dx``, ``image_path``),
with every problem named at once: a row that is not exactly one-hot, an image
without a label, a label without an image, an id given twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError

# The challenge's column for each of our class codes, in the ground truth's order.
COLUMNS = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc"}
HEADER = ("image", *COLUMNS)
IMAGE_PATTERN = "ISIC_*.jpg"
MAX_DEPTH = 2  # DIR/ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv
MAX_LISTED = 20


def _within(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder`` and up to :data:`MAX_DEPTH` levels below it, sorted."""
    found = []
    for depth in range(MAX_DEPTH + 1):
        found += folder.glob("/".join(["*"] * depth + [pattern]))
    return sorted(p for p in found if p.is_file())


def _header(path: Path) -> tuple[str, ...]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return tuple(cell.strip() for cell in next(csv.reader(handle), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()


def ground_truth_files(folder: str | Path) -> list[Path]:
    """The CSV files under ``folder`` whose header is the ISIC 2018 Task 3 ground truth's."""
    return [p for p in _within(Path(folder), "*.csv") if _header(p) == HEADER]


def is_layout(folder: str | Path) -> bool:
    """Whether ``folder`` holds an ISIC 2018 Task 3 ground truth (then it is read as that layout)."""
    return Path(folder).is_dir() and bool(ground_truth_files(folder))


def _one_hot_class(values: list[str]) -> str | None:
    """The class code of a row's seven values if exactly one is 1 and the rest 0, else None."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    if sorted(numbers) != [0.0] * (len(COLUMNS) - 1) + [1.0]:
        return None
    return list(COLUMNS.values())[numbers.index(1.0)]


def _read_labels(path: Path, problems: list[str]) -> dict[str, str]:
    """image id -> class code, from the ground truth; each bad row is a problem naming its line."""
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)  # the header, checked by ground_truth_files
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(HEADER):
            problems.append(f"{path.name} line {line}: {len(record)} fields, expected {len(HEADER)} "
                            f"({','.join(HEADER)})")
            continue
        image_id, values = record[0].strip(), [cell.strip() for cell in record[1:]]
        dx = _one_hot_class(values)
        if dx is None:
            problems.append(f"{path.name} line {line}: {image_id} is not exactly one-hot ({','.join(values)}); "
                            "expected one 1 and six 0s")
            continue
        if image_id in labels:
            problems.append(f"{path.name} line {line}: {image_id} is labelled again (first on line "
                            f"{lines[image_id]})")
            continue
        labels[image_id], lines[image_id] = dx, line
    return labels


@dataclass
class CheckReport:
    """What ``check_report`` found in an ISIC 2018 Task 3 folder."""

    data_dir: Path
    ground_truth: Path
    frame: pd.DataFrame  # image_id, dx, image_path: labelled images that were found
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = self.frame["dx"].value_counts()
        classes = ", ".join(f"{dx} {int(counts.get(dx, 0)):,}" for dx in CLASSES)
        return "\n".join([f"{self.data_dir}", "  layout:   ISIC 2018 Task 3 (an external test set)",
                          f"  labels:   {self.ground_truth.relative_to(self.data_dir)}",
                          f"  {len(self.frame):,} labelled images: {classes}",
                          f"  problems: {len(self.problems) or 'none'}"])

    def checksum(self) -> str:
        """The fingerprint of these labels and images (``ham10000.labelled_files_checksum``)."""
        from lesionscan.data.ham10000 import labelled_files_checksum

        return labelled_files_checksum(self.ground_truth, self.frame)

    def raise_for_problems(self) -> None:
        if self.problems:
            shown = self.problems[:MAX_LISTED]
            more = [f"  ... and {len(self.problems) - len(shown)} more"] if len(self.problems) > len(shown) else []
            raise DataError("\n".join([f"{len(self.problems)} problem(s) in the ISIC 2018 set at {self.data_dir}:"]
                                      + [f"  - {p}" for p in shown] + more))


def check_report(folder: str | Path) -> CheckReport:
    """Read an ISIC 2018 Task 3 folder: its labels, its images, and every problem between them."""
    folder = Path(folder).resolve()
    truths = ground_truth_files(folder)
    if len(truths) != 1:
        raise DataError(f"{folder}: {len(truths)} ISIC 2018 Task 3 ground-truth files "
                        f"({', '.join(str(p.relative_to(folder)) for p in truths) or 'none'}); expected one, with "
                        f"the header {','.join(HEADER)}")
    problems: list[str] = []
    labels = _read_labels(truths[0], problems)
    images: dict[str, Path] = {}
    for path in _within(folder, IMAGE_PATTERN):
        if path.stem in images:
            problems.append(f"image {path.stem} is in two places: {images[path.stem]} and {path}")
            continue
        images[path.stem] = path
    unlabelled = sorted(set(images) - set(labels))
    missing = sorted(set(labels) - set(images))
    if unlabelled:
        problems.append(f"{len(unlabelled)} image(s) without a label in {truths[0].name}: "
                        + ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else ""))
    if missing:
        problems.append(f"{len(missing)} label(s) without an image ({IMAGE_PATTERN} under {folder}): "
                        + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    found = sorted(set(labels) & set(images))
    frame = pd.DataFrame({"image_id": found, "dx": [labels[i] for i in found],
                          "image_path": [str(images[i]) for i in found]})
    return CheckReport(data_dir=folder, ground_truth=truths[0], frame=frame, problems=problems)
