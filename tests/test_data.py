"""Tests for lesionscan.data: loading, the checks that reject bad datasets, tables, checksum."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from lesionscan import data
from lesionscan.classes import CLASSES
from lesionscan.errors import DataError

COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def write_dataset(root: Path, rows, masks=(), skip_images=(), size=(12, 9)) -> Path:
    """Write a tiny HAM10000-style dataset: CSV + one small JPEG per row (alternating folders).

    rows: (lesion_id, image_id, dx) tuples; masks: image_ids that get a mask;
    skip_images: image_ids listed in the CSV but given no file.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / data.METADATA_FILE, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for k, (lesion_id, image_id, dx) in enumerate(rows):
            writer.writerow([lesion_id, image_id, dx, "histo", 40 + k, "female", "back"])
    for k, (_, image_id, _) in enumerate(rows):
        if image_id in skip_images:
            continue
        folder = root / data.IMAGE_DIRS[k % 2]
        folder.mkdir(exist_ok=True)
        Image.new("RGB", size, (10 * (k % 25), 100, 200)).save(folder / f"{image_id}.jpg", quality=90)
    if masks:
        (root / data.MASK_DIR).mkdir(exist_ok=True)
        for image_id in masks:
            Image.new("L", size, 255).save(root / data.MASK_DIR / f"{image_id}_segmentation.png")
    return root


def valid_rows():
    """One lesion per class, plus a two-image nv lesion: 8 images, 7 lesions."""
    rows = [(f"HAM_{i:07d}", f"ISIC_{i:07d}", dx) for i, dx in enumerate(CLASSES)]
    rows.append(("HAM_0000005", "ISIC_0000099", "nv"))
    return rows


def image_path(root: Path, image_id: str) -> Path:
    return next(p for d in data.IMAGE_DIRS for p in [root / d / f"{image_id}.jpg"] if p.exists())


def load_error(root: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        data.load_dataset(root, **kwargs)
    return str(info.value)


def test_valid_dataset_loads(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    df = data.load_dataset(root)
    assert list(df.columns) == COLUMNS + ["image_path", "mask_path"]
    assert len(df) == 8
    assert list(df["image_id"]) == sorted(df["image_id"])
    assert df["age"].dtype == float
    for image_id, path in zip(df["image_id"], df["image_path"]):
        assert isinstance(path, str) and os.path.isabs(path) and Path(path).is_file()
        assert Path(path).name == f"{image_id}.jpg"
    assert {Path(p).parent.name for p in df["image_path"]} == set(data.IMAGE_DIRS)
    assert df["mask_path"].isna().all()
    assert df.set_index("image_id").at["ISIC_0000099", "lesion_id"] == "HAM_0000005"


def test_masks_found_when_present(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001", "ISIC_0000004"])
    df = data.load_dataset(root).set_index("image_id")
    for image_id in ("ISIC_0000001", "ISIC_0000004"):
        path = df.at[image_id, "mask_path"]
        assert os.path.isabs(path) and path.endswith(f"{data.MASK_DIR}/{image_id}_segmentation.png")
    others = df.drop(index=["ISIC_0000001", "ISIC_0000004"])["mask_path"]
    assert all(p is None for p in others)


def test_class_table(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    table = data.class_table(data.load_dataset(root))
    assert list(table.columns) == ["class", "name", "count", "percent"]
    assert list(table["class"]) == list(CLASSES) + ["total"]
    counts = dict(zip(table["class"], table["count"]))
    assert counts["nv"] == 2 and counts["mel"] == 1 and counts["total"] == 8
    percent = dict(zip(table["class"], table["percent"]))
    assert percent["nv"] == 25.0 and percent["df"] == 12.5 and percent["total"] == 100.0


def test_lesion_table(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    table = data.lesion_table(data.load_dataset(root))
    assert table.to_dict("list") == {"images_per_lesion": [1, 2], "lesions": [6, 1], "images": [6, 2]}


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message


def test_missing_metadata_file(tmp_path):
    (tmp_path / "ham").mkdir()
    message = load_error(tmp_path / "ham")
    assert data.METADATA_FILE in message and "not found" in message


def test_metadata_missing_required_column(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    meta = root / data.METADATA_FILE
    pd.read_csv(meta).drop(columns=["dx", "lesion_id"]).to_csv(meta, index=False)
    message = load_error(root)
    assert str(meta) in message and "lesion_id" in message and "dx" in message


def test_empty_metadata(tmp_path):
    root = write_dataset(tmp_path / "ham", [])
    assert "lists no images" in load_error(root)


def test_unknown_class_label_names_row_and_value(tmp_path):
    rows = valid_rows()
    rows[2] = (rows[2][0], rows[2][1], "melanoma")
    message = load_error(write_dataset(tmp_path / "ham", rows))
    # Data row index 2 is line 4 of the file (header is line 1).
    assert re.search(r"row 4\b.*'melanoma'", message)
    assert data.METADATA_FILE in message and "akiec" in message


def test_image_listed_but_missing(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), skip_images=["ISIC_0000003"])
    message = load_error(root)
    assert "ISIC_0000003" in message and "not found" in message and data.IMAGE_DIRS[1] in message


def test_undecodable_image(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    bad = image_path(root, "ISIC_0000002")
    bad.write_text("this is not a JPEG")
    message = load_error(root)
    assert str(bad) in message and "cannot be decoded" in message
    assert len(data.load_dataset(root, verify_images=False)) == 8  # the check is what catches it


def test_truncated_jpeg_is_caught(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), size=(64, 48))
    bad = image_path(root, "ISIC_0000006")
    content = bad.read_bytes()
    bad.write_bytes(content[: len(content) // 2])
    assert str(bad) in load_error(root)


def test_duplicate_image_id(tmp_path):
    rows = valid_rows() + [("HAM_0000009", "ISIC_0000001", "bcc")]
    message = load_error(write_dataset(tmp_path / "ham", rows))
    assert "duplicate image_id ISIC_0000001" in message and "rows 3, 10" in message


def test_lesion_with_two_labels(tmp_path):
    rows = valid_rows()
    rows[-1] = ("HAM_0000005", "ISIC_0000099", "mel")  # same lesion as the nv row
    message = load_error(write_dataset(tmp_path / "ham", rows))
    assert "HAM_0000005" in message and "more than one dx" in message
    assert "mel" in message and "nv" in message


def test_all_problems_reported_together(tmp_path):
    rows = valid_rows() + [("HAM_0000008", "ISIC_0000008", "bad"), ("HAM_0000009", "ISIC_0000001", "bcc")]
    message = load_error(write_dataset(tmp_path / "ham", rows, skip_images=["ISIC_0000000"]))
    assert message.startswith("3 problem(s)")
    assert "'bad'" in message and "duplicate image_id ISIC_0000001" in message
    assert "image ISIC_0000000 not found" in message


def test_problem_list_is_capped(tmp_path):
    rows = valid_rows() + [(f"HAM_1{i:06d}", f"ISIC_1{i:06d}", "bad") for i in range(30)]
    message = load_error(write_dataset(tmp_path / "ham", rows))
    assert message.startswith("30 problem(s)")
    assert message.count("\n  - ") == data.MAX_LISTED_PROBLEMS
    assert message.endswith("and 10 more")


def test_checksum_deterministic_and_sensitive(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    first = data.data_checksum(root)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert data.data_checksum(root) == first
    assert data.data_checksum(data.load_dataset(root)) == first  # frame and folder agree
    copy = write_dataset(tmp_path / "copy", valid_rows())
    assert data.data_checksum(copy) == first  # depends on content, not location

    target = image_path(root, "ISIC_0000004")
    content = bytearray(target.read_bytes())
    content[-3] ^= 0x01
    target.write_bytes(bytes(content))
    assert data.data_checksum(root) != first


def test_checksum_changes_with_metadata(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    first = data.data_checksum(root)
    meta = root / data.METADATA_FILE
    meta.write_text(meta.read_text().replace("back", "face", 1))
    assert data.data_checksum(root) != first


def test_real_dataset_loads(real_data_dir):
    df = data.load_dataset(real_data_dir)
    assert len(df) == 10015 and df["lesion_id"].nunique() == 7470
    assert df["mask_path"].notna().all()
