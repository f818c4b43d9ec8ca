"""Tests for lesionscan.data: layouts, loading, the checks that reject bad datasets, the report, tables, checksum."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError
from lesionscan.data import ham10000

COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def write_dataset(root: Path, rows, masks=(), skip_images=(), size=(12, 9)) -> Path:
    """Write a tiny HAM10000-style dataset: CSV + one small JPEG per row (alternating folders).

    rows: (lesion_id, image_id, dx) tuples; masks: image_ids that get a mask;
    skip_images: image_ids listed in the CSV but given no file.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ham10000.METADATA_FILE, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for k, (lesion_id, image_id, dx) in enumerate(rows):
            writer.writerow([lesion_id, image_id, dx, "histo", 40 + k, "female", "back"])
    for k, (_, image_id, _) in enumerate(rows):
        if image_id in skip_images:
            continue
        folder = root / ham10000.IMAGE_DIRS[k % 2]
        folder.mkdir(exist_ok=True)
        Image.new("RGB", size, (10 * (k % 25), 100, 200)).save(folder / f"{image_id}.jpg", quality=90)
    if masks:
        (root / ham10000.MASK_DIR).mkdir(exist_ok=True)
        for image_id in masks:
            Image.new("L", size, 255).save(root / ham10000.MASK_DIR / f"{image_id}_segmentation.png")
    return root


def valid_rows():
    """One lesion per class, plus a two-image nv lesion: 8 images, 7 lesions."""
    rows = [(f"HAM_{i:07d}", f"ISIC_{i:07d}", dx) for i, dx in enumerate(CLASSES)]
    rows.append(("HAM_0000005", "ISIC_0000099", "nv"))
    return rows


def image_path(root: Path, image_id: str) -> Path:
    return next(p for d in ham10000.IMAGE_DIRS for p in [root / d / f"{image_id}.jpg"] if p.exists())


def load_error(root: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        ham10000.load_dataset(root, **kwargs)
    return str(info.value)


def test_valid_dataset_loads(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    df = ham10000.load_dataset(root)
    assert list(df.columns) == COLUMNS + ["image_path", "mask_path"]
    assert len(df) == 8
    assert list(df["image_id"]) == sorted(df["image_id"])
    assert df["age"].dtype == float
    for image_id, path in zip(df["image_id"], df["image_path"]):
        assert isinstance(path, str) and os.path.isabs(path) and Path(path).is_file()
        assert Path(path).name == f"{image_id}.jpg"
    assert {Path(p).parent.name for p in df["image_path"]} == set(ham10000.IMAGE_DIRS)
    assert df["mask_path"].isna().all()
    assert df.set_index("image_id").at["ISIC_0000099", "lesion_id"] == "HAM_0000005"


def test_masks_found_when_present(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001", "ISIC_0000004"])
    df = ham10000.load_dataset(root).set_index("image_id")
    for image_id in ("ISIC_0000001", "ISIC_0000004"):
        path = df.at[image_id, "mask_path"]
        assert os.path.isabs(path) and path.endswith(f"{ham10000.MASK_DIR}/{image_id}_segmentation.png")
    others = df.drop(index=["ISIC_0000001", "ISIC_0000004"])["mask_path"]
    assert all(p is None for p in others)


def test_class_table(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    table = ham10000.class_table(ham10000.load_dataset(root))
    assert list(table.columns) == ["class", "name", "count", "percent"]
    assert list(table["class"]) == list(CLASSES) + ["total"]
    counts = dict(zip(table["class"], table["count"]))
    assert counts["nv"] == 2 and counts["mel"] == 1 and counts["total"] == 8
    percent = dict(zip(table["class"], table["percent"]))
    assert percent["nv"] == 25.0 and percent["df"] == 12.5 and percent["total"] == 100.0


def test_lesion_table(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    table = ham10000.lesion_table(ham10000.load_dataset(root))
    assert table.to_dict("list") == {"images_per_lesion": [1, 2], "lesions": [6, 1], "images": [6, 2]}


def test_missing_directory(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere" in message and "does not exist" in message


def test_missing_metadata_file(tmp_path):
    (tmp_path / "ham").mkdir()
    message = load_error(tmp_path / "ham")
    assert ham10000.METADATA_FILE in message and "not found" in message


def test_metadata_missing_required_column(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    meta = root / ham10000.METADATA_FILE
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
    assert re.search(r"line 4\b.*'melanoma'", message)
    assert ham10000.METADATA_FILE in message and "akiec" in message


def test_image_listed_but_missing(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), skip_images=["ISIC_0000003"])
    message = load_error(root)
    assert "ISIC_0000003" in message and "not found" in message and ham10000.IMAGE_DIRS[1] in message


def test_undecodable_image(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    bad = image_path(root, "ISIC_0000002")
    bad.write_text("this is not a JPEG")
    message = load_error(root)
    assert str(bad) in message and "cannot be decoded" in message
    assert len(ham10000.load_dataset(root, verify_images=False)) == 8  # the check is what catches it


def test_truncated_jpeg_is_caught(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), size=(64, 48))
    bad = image_path(root, "ISIC_0000006")
    content = bad.read_bytes()
    bad.write_bytes(content[: len(content) // 2])
    assert str(bad) in load_error(root)


def test_duplicate_image_id(tmp_path):
    rows = valid_rows() + [("HAM_0000009", "ISIC_0000001", "bcc")]
    message = load_error(write_dataset(tmp_path / "ham", rows))
    assert "duplicate image_id ISIC_0000001" in message and "lines 3, 10" in message


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
    assert message.count("\n  - ") == ham10000.MAX_LISTED_PROBLEMS
    assert message.endswith("and 10 more")


def test_checksum_deterministic_and_sensitive(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    first = ham10000.data_checksum(root)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert ham10000.data_checksum(root) == first
    assert ham10000.data_checksum(ham10000.load_dataset(root)) == first  # frame and folder agree
    copy = write_dataset(tmp_path / "copy", valid_rows())
    assert ham10000.data_checksum(copy) == first  # depends on content, not location

    target = image_path(root, "ISIC_0000004")
    content = bytearray(target.read_bytes())
    content[-3] ^= 0x01
    target.write_bytes(bytes(content))
    assert ham10000.data_checksum(root) != first


def test_checksum_changes_with_metadata(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    first = ham10000.data_checksum(root)
    meta = root / ham10000.METADATA_FILE
    meta.write_text(meta.read_text().replace("back", "face", 1))
    assert ham10000.data_checksum(root) != first


def write_tab(root: Path) -> None:
    """Replace the CSV by the Dataverse form: tab-separated, strings quoted, numbers bare."""
    frame = pd.read_csv(root / ham10000.METADATA_FILE, dtype=str, keep_default_na=False)
    lines = ["\t".join(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("\t".join(v if re.fullmatch(r"[\d.]+", v) else f'"{v}"' for v in row))
    (root / "HAM10000_metadata.tab").write_text("\n".join(lines) + "\n")
    (root / ham10000.METADATA_FILE).unlink()


def write_hmnist(root: Path) -> None:
    """Kaggle's pixel tables: CSVs beside the metadata that must not be read as metadata."""
    for name in ("hmnist_8_8_L.csv", "hmnist_28_28_RGB.csv"):
        (root / name).write_text(",".join(f"pixel{i:04d}" for i in range(4)) + ",label\n1,2,3,4,0\n")


def make_layout(root: Path, layout: str, rows=None, masks=("ISIC_0000001",)) -> Path:
    """The same tiny dataset in one of the layouts people have."""
    write_dataset(root, rows or valid_rows(), masks=masks)
    if layout == "official-tab":
        write_tab(root)
    elif layout == "kaggle":
        for upper, lower in zip(ham10000.IMAGE_DIRS, ham10000.KAGGLE_DIRS):
            shutil.copytree(root / upper, root / lower)
        write_hmnist(root)
    elif layout == "flat":
        (root / ham10000.FLAT_DIR).mkdir()
        for folder in ham10000.IMAGE_DIRS:
            for path in (root / folder).iterdir():
                path.rename(root / ham10000.FLAT_DIR / path.name)
            (root / folder).rmdir()
    return root


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """The frame without where files live: what must not depend on the layout."""
    return df.assign(image_path=[Path(p).name for p in df["image_path"]],
                     mask_path=[p and Path(p).name for p in df["mask_path"]])


@pytest.mark.parametrize("layout, name, metadata", [
    ("official-tab", "official", "HAM10000_metadata.tab"),
    ("kaggle", "kaggle", ham10000.METADATA_FILE),
    ("flat", "flat", ham10000.METADATA_FILE),
])
def test_layouts_load_the_same_frame(tmp_path, layout, name, metadata):
    expected = ham10000.load_dataset(make_layout(tmp_path / "official", "official"))
    root = make_layout(tmp_path / layout, layout)
    df = ham10000.load_dataset(root)
    assert list(df.columns) == COLUMNS + ["image_path", "mask_path"]
    pd.testing.assert_frame_equal(comparable(df), comparable(expected))
    report = ham10000.check_report(root)
    assert report.layout == name and report.metadata.name == metadata and not report.problems
    if layout == "kaggle":  # duplicates resolve to the upper-case folders, hmnist tables are left alone
        assert {Path(p).parent.name for p in df["image_path"]} == set(ham10000.IMAGE_DIRS)
        assert report.ignored == ["hmnist_28_28_RGB.csv", "hmnist_8_8_L.csv"]
        assert ham10000.data_checksum(root) == ham10000.data_checksum(tmp_path / "official")


def test_tab_metadata_with_quotes_and_missing_age(tmp_path):
    root = make_layout(tmp_path / "ham", "official-tab")
    tab = root / "HAM10000_metadata.tab"
    tab.write_text(tab.read_text().replace('"back"', '"back, upper"', 1).replace("\t40\t", "\tNA\t", 1))
    df = ham10000.load_dataset(root).set_index("image_id")
    assert df.at["ISIC_0000000", "localization"] == "back, upper"
    assert pd.isna(df.at["ISIC_0000000", "age"])


def test_same_image_in_two_folders_is_taken_once(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    shutil.copy(image_path(root, "ISIC_0000000"), root / ham10000.IMAGE_DIRS[1])
    df = ham10000.load_dataset(root)
    assert len(df) == 8 and Path(df["image_path"].iloc[0]).parent.name == ham10000.IMAGE_DIRS[0]


def test_check_report_on_a_valid_dataset(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001", "ISIC_0000004"])
    report = ham10000.check_report(root)
    assert report.layout == "official" and report.image_folders == list(ham10000.IMAGE_DIRS)
    assert report.image_sizes == {"12x9": 8}
    assert (report.masks_found, report.masks_missing) == (2, 6)
    assert report.classes.equals(ham10000.class_table(report.frame))
    assert report.lesions.to_dict("list")["lesions"] == [6, 1]
    text = report.summary()
    assert "layout:   official" in text and "12x9 (8)" in text and "2 found, 6 missing" in text
    assert "problems: none" in text
    report.raise_for_problems()  # nothing to raise


def test_many_missing_images_are_one_capped_problem(tmp_path):
    extra = [(f"HAM_2{i:06d}", f"ISIC_2{i:06d}", "nv") for i in range(14)]
    root = write_dataset(tmp_path / "ham", valid_rows() + extra, skip_images=[r[1] for r in extra])
    message = load_error(root)
    assert message.startswith("1 problem(s)")
    assert f"{ham10000.METADATA_FILE}: 14 listed images not found" in message
    assert "ISIC_2000000 (line 10)" in message and "ISIC_2000009 (line 19)" in message
    assert "ISIC_2000010" not in message and message.endswith("and 4 more")


def test_mask_of_the_wrong_size(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001", "ISIC_0000004"])
    mask = root / ham10000.MASK_DIR / "ISIC_0000004_segmentation.png"
    Image.new("L", (6, 4), 255).save(mask)
    message = load_error(root)
    assert message.startswith("1 problem(s)")
    assert f"mask file {mask} is 6x4" in message and str(image_path(root, "ISIC_0000004")) in message
    assert "is 12x9" in message
    assert len(ham10000.load_dataset(root, verify_images=False)) == 8  # a header check, skipped on request


def test_duplicate_image_id_in_tab_names_the_file(tmp_path):
    rows = valid_rows() + [("HAM_0000009", "ISIC_0000001", "bcc")]
    root = make_layout(tmp_path / "ham", "official-tab", rows=rows)
    assert "HAM10000_metadata.tab: duplicate image_id ISIC_0000001 on lines 3, 10" in load_error(root)


def test_no_metadata_says_what_was_looked_for(tmp_path):
    root = make_layout(tmp_path / "ham", "kaggle")
    (root / ham10000.METADATA_FILE).unlink()
    message = load_error(root)
    assert "not found" in message and all(name in message for name in ham10000.METADATA_FILES)
    assert "hmnist_*.csv" in message and "not metadata" in message


def test_no_image_folder(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    for folder in ham10000.IMAGE_DIRS:
        shutil.rmtree(root / folder)
    message = load_error(root)
    assert "8 listed images not found" in message and "no image folder" in message
    assert ham10000.FLAT_DIR in message and ham10000.KAGGLE_DIRS[0] in message


def test_three_different_problems_reported_at_once(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000002"], skip_images=["ISIC_0000003"],
                         size=(64, 48))
    Image.new("L", (10, 10)).save(root / ham10000.MASK_DIR / "ISIC_0000002_segmentation.png")
    truncated = image_path(root, "ISIC_0000006")
    truncated.write_bytes(truncated.read_bytes()[:300])
    report = ham10000.check_report(root)
    assert len(report.problems) == 3 and report.image_sizes == {"64x48": 6}
    message = load_error(root)
    assert message.startswith("3 problem(s)")
    assert "image ISIC_0000003 not found" in message
    assert f"image file {truncated} cannot be decoded" in message
    assert "ISIC_0000002_segmentation.png is 10x10" in message


def test_real_dataset_loads(real_data_dir):
    df = ham10000.load_dataset(real_data_dir)
    assert len(df) == 10015 and df["lesion_id"].nunique() == 7470
    assert df["mask_path"].notna().all()


def test_real_check_report(real_data_dir):
    report = ham10000.check_report(real_data_dir)
    assert report.problems == [] and report.layout == "official"
    assert len(report.frame) == 10015 and report.frame["lesion_id"].nunique() == 7470
    counts = dict(zip(report.classes["class"], report.classes["count"]))
    assert counts == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115,
                      "total": 10015}
    assert report.image_sizes == {"200x150": 10015}
    assert (report.masks_found, report.masks_missing) == (10015, 0)


def test_real_data_in_other_layouts(real_data_dir, tmp_path):
    """Kaggle, Dataverse .tab and flat copies of the real data, built from symlinks, load the same frame."""
    expected = comparable(ham10000.load_dataset(real_data_dir, verify_images=False))
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    for upper, lower in zip(ham10000.IMAGE_DIRS, ham10000.KAGGLE_DIRS):
        (kaggle / upper).symlink_to(real_data_dir / upper)
        (kaggle / lower).symlink_to(real_data_dir / upper)
    (kaggle / ham10000.METADATA_FILE).symlink_to(real_data_dir / ham10000.METADATA_FILE)
    write_hmnist(kaggle)
    tab = tmp_path / "tab"
    tab.mkdir()
    for name in ham10000.IMAGE_DIRS + (ham10000.MASK_DIR,):
        (tab / name).symlink_to(real_data_dir / name)
    shutil.copy(real_data_dir / ham10000.METADATA_FILE, tab / ham10000.METADATA_FILE)
    write_tab(tab)
    flat = tmp_path / "flat"
    (flat / ham10000.FLAT_DIR).mkdir(parents=True)
    for folder in ham10000.IMAGE_DIRS:
        for path in (real_data_dir / folder).iterdir():
            (flat / ham10000.FLAT_DIR / path.name).symlink_to(path)
    (flat / ham10000.METADATA_FILE).symlink_to(real_data_dir / ham10000.METADATA_FILE)
    (flat / ham10000.MASK_DIR).symlink_to(real_data_dir / ham10000.MASK_DIR)
    for root in (kaggle, tab, flat):
        df = ham10000.load_dataset(root, verify_images=False)
        masked = expected.assign(mask_path=None) if root is kaggle else expected
        pd.testing.assert_frame_equal(comparable(df), masked)
    assert ham10000.check_report(kaggle).layout == "kaggle"


# Issue 13: metadata as spreadsheets export it, line numbers, ids, columns, links, masks, image modes.

def rewrite_metadata(root: Path, edit) -> Path:
    """Apply ``edit`` to the metadata file's bytes."""
    meta = root / ham10000.METADATA_FILE
    meta.write_bytes(edit(meta.read_bytes()))
    return meta


def metadata_lines(root: Path) -> list[str]:
    return (root / ham10000.METADATA_FILE).read_text().splitlines()


def write_lines(root: Path, lines: list[str]) -> None:
    (root / ham10000.METADATA_FILE).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header_too", [True, False])
def test_trailing_comma_on_every_row_loads(tmp_path, header_too):
    """A spreadsheet export ends every row (and often the header) with a comma: it loads as the clean file."""
    expected = comparable(ham10000.load_dataset(write_dataset(tmp_path / "clean", valid_rows())))
    root = write_dataset(tmp_path / "ham", valid_rows())
    lines = metadata_lines(root)
    write_lines(root, [line + ("," if header_too or k else "") for k, line in enumerate(lines)])
    pd.testing.assert_frame_equal(comparable(ham10000.load_dataset(root)), expected)
    assert not ham10000.check_report(root).problems


def test_a_value_under_no_column_name_or_a_short_row_is_a_problem_of_its_line(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows())
    lines = metadata_lines(root)
    lines[3] += ",extra"
    lines[5] = ",".join(lines[5].split(",")[:3])
    write_lines(root, lines)
    message = load_error(root)
    assert message.startswith("2 problem(s)")
    assert "line 4: value 'extra' in field 8, which has no column name in the header" in message
    assert "line 6: 3 field(s), but the header names 7 columns" in message


def test_line_numbers_count_blank_lines_quoted_line_breaks_and_empty_rows(tmp_path):
    """Messages name the line an editor shows, whatever pandas would have skipped or joined."""
    def build(root: Path, bad_dx: bool) -> None:
        header, *rows = metadata_lines(root)
        first = rows[0].split(",")
        first[6] = '"back,\nupper"'
        fourth = rows[3].split(",")
        fourth[2] = "melanoma" if bad_dx else fourth[2]
        write_lines(root, [header,                  # line 1
                           ",".join(first),         # lines 2-3: a quoted field with a line break
                           rows[1],                 # line 4
                           "",                      # line 5: blank
                           rows[2],                 # line 6
                           ",,,,,,",                # line 7: a spreadsheet's empty row
                           ",".join(fourth),        # line 8
                           *rows[4:]])

    root = write_dataset(tmp_path / "ham", valid_rows())
    build(root, bad_dx=True)
    assert "melanoma" in metadata_lines(root)[7]  # line 8 as an editor shows it
    message = load_error(root)
    assert message.startswith("1 problem(s)")
    assert f"{ham10000.METADATA_FILE} line 8: unknown class label dx='melanoma'" in message
    ok = write_dataset(tmp_path / "ok", valid_rows())
    build(ok, bad_dx=False)
    df = ham10000.load_dataset(ok).set_index("image_id")
    assert len(df) == 8 and df.at["ISIC_0000000", "localization"] == "back,\nupper"


@pytest.mark.parametrize("column, value", [("image_id", "ISIC_00\x0000001"), ("lesion_id", "HAM_\x00001"),
                                           ("image_id", "ISIC_0000001\u200b"), ("lesion_id", "HAM\x01_1")])
def test_nul_control_and_invisible_characters_in_ids_are_refused(tmp_path, column, value):
    rows = valid_rows()
    k = 1
    rows[k] = (value, rows[k][1], rows[k][2]) if column == "lesion_id" else (rows[k][0], value, rows[k][2])
    message = load_error(write_dataset(tmp_path / "ham", rows, skip_images=[value]))  # no such file name
    assert f"line 3: {column} {value!r} holds a NUL, control or invisible character" in message
    assert "\x00" not in message


@pytest.mark.parametrize("column", ["dx", "image_id", "lesion_id", "age"])
def test_a_column_named_twice_is_refused_by_name(tmp_path, column):
    root = write_dataset(tmp_path / "ham", valid_rows())
    position = COLUMNS.index(column)
    write_lines(root, [f"{line},{line.split(',')[position]}" for line in metadata_lines(root)])
    message = load_error(root)
    assert f"names a column more than once ({column} is columns {position + 1}, 8)" in message
    assert str(root / ham10000.METADATA_FILE) in message


def test_a_symbolic_link_to_the_data_directory_is_the_data(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001"])
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    pd.testing.assert_frame_equal(comparable(ham10000.load_dataset(link)), comparable(ham10000.load_dataset(root)))
    assert not ham10000.check_report(link).problems
    assert ham10000.data_checksum(link) == ham10000.data_checksum(root)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    assert f"data directory {dangling} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in \
        load_error(dangling)


def write_mask(root: Path, image_id: str, image: Image.Image) -> Path:
    path = root / ham10000.MASK_DIR / f"{image_id}_segmentation.png"
    image.save(path)
    return path


def lesion(shape=(9, 12), inside=255, outside=0, dtype=np.uint8) -> np.ndarray:
    """A mask array: a block of ``inside`` (the lesion) on ``outside``."""
    mask = np.full(shape, outside, dtype=dtype)
    mask[2:6, 3:8] = inside
    return mask


MASK_CASES = {  # name: (mask image, expected error kind or None, expected warning kinds)
    "binary": (lambda: Image.fromarray(lesion()), None, ()),
    "1-bit": (lambda: Image.fromarray(lesion() > 0), None, ()),
    "0/1": (lambda: Image.fromarray(lesion(inside=1)), "no lesion", ()),
    "16-bit 0/65535": (lambda: Image.fromarray(lesion(inside=65535, dtype=np.uint16)), None, ()),
    "16-bit 0/1": (lambda: Image.fromarray(lesion(inside=1, dtype=np.uint16)), "no lesion", ()),
    "grey levels": (lambda: Image.fromarray(lesion(inside=200, outside=30)), None, ("grey levels",)),
    "RGB white": (lambda: Image.fromarray(lesion()).convert("RGB"), None, ("channels",)),
    "RGB red": (lambda: Image.fromarray(np.dstack([lesion(), lesion(inside=0), lesion(inside=0)])), "no lesion",
                ("channels",)),
    "RGBA opaque": (lambda: Image.fromarray(lesion()).convert("RGBA"), None, ("channels",)),
    "RGBA by alpha": (lambda: Image.fromarray(np.dstack([lesion(outside=255)] * 3 + [lesion()]), "RGBA"), "alpha",
                      ("channels",)),
}


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_masks_the_chapter_would_misread_are_problems_others_warnings(tmp_path, case):
    make, error, warnings = MASK_CASES[case]
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000001", "ISIC_0000004"])
    mask = write_mask(root, "ISIC_0000004", make())
    report = ham10000.check_report(root)
    if error:
        assert len(report.problems) == 1
        assert report.problems[0] == f"1 mask file(s) {ham10000.MASK_ERRORS[error]}: {mask}"
    else:
        assert report.problems == []
    assert report.warnings == [f"1 mask file(s) {ham10000.MASK_WARNINGS[w]}: {mask}" for w in warnings]
    assert f"warnings: {len(warnings) or 'none'}" in report.summary()
    assert all(w in report.summary() for w in report.warnings)


def test_many_alike_masks_make_one_capped_line(tmp_path):
    ids = [r[1] for r in valid_rows()]
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=ids)
    for image_id in ids:
        write_mask(root, image_id, Image.fromarray(lesion(inside=1)))
    problems = ham10000.check_report(root).problems
    assert len(problems) == 1 and problems[0].startswith("8 mask file(s) mark the lesion only with values below 128")
    assert problems[0].endswith("and 5 more")


def replace_image(root: Path, image_id: str, save) -> Path:
    """Replace an image's JPEG by the file ``save(path)`` writes (a .png beside it)."""
    old = image_path(root, image_id)
    old.unlink()
    new = old.with_suffix(".png")
    save(new)
    return new


def test_a_16_bit_png_image_is_read_by_the_rule_not_as_white(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000002"])
    replace_image(root, "ISIC_0000002", lambda p: Image.fromarray(np.full((9, 12), 0x4000, np.uint16)).save(p))
    report = ham10000.check_report(root)
    assert report.problems == [] and report.image_sizes == {"12x9": 8}
    samples = ham10000.sample_images(report.frame, per_class=1)
    assert np.unique(samples["bkl"][0]).tolist() == [0x40]


@pytest.mark.parametrize("kind, expected", [
    ("float", "cannot be decoded (pixel mode F (32-bit floating point"),
    ("animated gif named .png", "cannot be decoded (GIF file holds 2 frames"),
    ("empty file", "cannot be decoded (the file is empty (0 bytes))"),
])
def test_images_training_would_refuse_are_problems(tmp_path, kind, expected):
    root = write_dataset(tmp_path / "ham", valid_rows())

    def save(path):
        if kind == "float":
            Image.fromarray(np.zeros((9, 12), np.float32), "F").save(path, format="TIFF")
        elif kind == "empty file":
            path.write_bytes(b"")
        else:
            frames = [Image.new("RGB", (12, 9), c) for c in ("red", "blue")]
            frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])

    path = replace_image(root, "ISIC_0000003", save)
    assert f"image file {path} {expected}" in load_error(root)


def test_an_exif_turned_image_is_read_upright_and_its_mask_must_be_too(tmp_path):
    root = write_dataset(tmp_path / "ham", valid_rows(), masks=["ISIC_0000005"])
    path = image_path(root, "ISIC_0000005")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored a quarter turn anticlockwise: shown 9 wide, 12 high
    Image.new("RGB", (12, 9), "red").save(path, exif=exif)
    report = ham10000.check_report(root)
    assert report.image_sizes == {"12x9": 7, "9x12": 1}
    assert report.problems == [f"mask file {root / ham10000.MASK_DIR / 'ISIC_0000005_segmentation.png'} is 12x9 "
                               f"but its image {path} is 9x12 upright (after its EXIF orientation)"]
    assert report.warnings == [f"1 image file(s) {ham10000.ORIENTED_WARNING}: {path}"]
    write_mask(root, "ISIC_0000005", Image.new("L", (9, 12)))
    assert ham10000.check_report(root).problems == []


@pytest.mark.parametrize("edit", ["bom", "lf", "cr", "spaces around values"])
def test_metadata_variants_that_load_as_the_clean_file(tmp_path, edit):
    expected = comparable(ham10000.load_dataset(write_dataset(tmp_path / "clean", valid_rows())))
    root = write_dataset(tmp_path / "ham", valid_rows())
    assert b"\r\n" in (root / ham10000.METADATA_FILE).read_bytes()  # csv.writer's line ends, as Windows'
    rewrite_metadata(root, {"bom": lambda b: b"\xef\xbb\xbf" + b,
                            "lf": lambda b: b.replace(b"\r\n", b"\n"),
                            "cr": lambda b: b.replace(b"\r\n", b"\r"),
                            "spaces around values": lambda b: b.replace(b",", b" , ")}[edit])
    pd.testing.assert_frame_equal(comparable(ham10000.load_dataset(root)), expected)


@pytest.mark.parametrize("edit, expected", [
    (lambda b: b.decode().encode("utf-16"), "is UTF-16 text (a spreadsheet's 'Unicode text'); expected UTF-8"),
    (lambda b: b.decode().encode("utf-16-le"), "line 1 holds NUL bytes (UTF-16 text without a byte-order mark?)"),
    (lambda b: b.replace(b"back", b"b\xe9ck", 2), "line 2: byte 0xe9 is not UTF-8"),
    (lambda b: b"", "is empty; expected a header line naming the columns lesion_id, image_id, dx"),
    (lambda b: b"\n\n", "is empty; expected a header line"),
    (lambda b: b.replace(b",", b";"), "(the header looks separated by ';'; expected ',')"),
    (lambda b: b.replace(b"female,back", b'female,"back', 1), "line 2: not valid comma-separated text"),
])
def test_metadata_that_cannot_be_read_says_why_and_where(tmp_path, edit, expected):
    root = write_dataset(tmp_path / "ham", valid_rows())
    meta = rewrite_metadata(root, edit)
    message = load_error(root)
    assert f"metadata file {meta}" in message and expected in message


def test_an_upper_case_label_is_refused_with_a_hint(tmp_path):
    rows = valid_rows()
    rows[0] = (rows[0][0], rows[0][1], "AKIEC")
    message = load_error(write_dataset(tmp_path / "ham", rows))
    assert "line 2: unknown class label dx='AKIEC'" in message and "(labels are lower case: 'akiec')" in message


def test_an_unreadable_metadata_file_is_one_line_naming_it(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "ham", valid_rows())
    real = Path.read_bytes

    def refuse(path):
        if path.name == ham10000.METADATA_FILE:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert load_error(root) == f"cannot read metadata file {root / ham10000.METADATA_FILE}: Permission denied"
