"""The ISIC 2018 Task 3 layout (issue 14): images and a one-hot ground truth, every problem named at once."""

import pytest

from lesionscan import cli
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError
from lesionscan.data import isic2018

from factories import isic2018_folder

DX = list(isic2018.COLUMNS.values())


def test_the_columns_are_the_seven_classes():
    assert sorted(DX) == sorted(CLASSES) and len(DX) == 7


def test_a_folder_in_the_official_layout_is_read(tmp_path):
    labels = {f"ISIC_00{34000 + i}": dx for i, dx in enumerate(DX * 2)}
    folder = isic2018_folder(tmp_path / "isic", labels)
    assert isic2018.is_layout(folder)
    report = isic2018.check_report(folder)
    assert report.problems == []
    assert dict(zip(report.frame["image_id"], report.frame["dx"])) == labels
    assert all(path.endswith(".jpg") for path in report.frame["image_path"])
    assert "ISIC 2018 Task 3" in report.summary() and "14 labelled images" in report.summary()


def test_every_problem_is_named_at_once(tmp_path):
    labels = {"ISIC_0000001": "mel", "ISIC_0000002": "nv", "ISIC_0000003": "df"}
    rows = ["ISIC_0000004,1.0,1.0,0.0,0.0,0.0,0.0,0.0",  # two classes
            "ISIC_0000005,0.0,0.0,0.0,0.0,0.0,0.0,0.0",  # none
            "ISIC_0000006,0.5,0.5,0,0,0,0,0",  # soft labels
            "ISIC_0000001,0,1,0,0,0,0,0",  # labelled twice
            "ISIC_0000007,1,0"]  # a short row
    folder = isic2018_folder(tmp_path / "isic", labels, images=["ISIC_0000001", "ISIC_0000002", "ISIC_0000009"],
                             rows=rows)
    report = isic2018.check_report(folder)
    text = "\n".join(report.problems)
    for needle in ("line 5: ISIC_0000004 is not exactly one-hot", "line 6: ISIC_0000005 is not exactly one-hot",
                   "line 7: ISIC_0000006 is not exactly one-hot", "line 8: ISIC_0000001 is labelled again (first on "
                   "line 2)", "line 9: 3 fields, expected 8", "1 image(s) without a label", "ISIC_0000009",
                   "1 label(s) without an image", "ISIC_0000003"):
        assert needle in text, needle
    with pytest.raises(DataError, match=r"7 problem\(s\) in the ISIC 2018 set"):
        report.raise_for_problems()


def test_no_or_two_ground_truths_are_refused(tmp_path):
    folder = isic2018_folder(tmp_path / "isic", {"ISIC_0000001": "mel"})
    assert not isic2018.is_layout(tmp_path / "nothing")
    isic2018_folder(folder, {"ISIC_0000001": "mel"}, truth_dir="ISIC2018_Task3_Validation_GroundTruth")
    with pytest.raises(DataError, match="2 ISIC 2018 Task 3 ground-truth files"):
        isic2018.check_report(folder)


def test_data_check_recognises_the_layout(tmp_path, capsys):
    good = isic2018_folder(tmp_path / "good", {"ISIC_0000001": "mel", "ISIC_0000002": "vasc"})
    assert cli.main(["data", "check", str(good)]) == 0
    assert "layout:   ISIC 2018 Task 3" in capsys.readouterr().out
    bad = isic2018_folder(tmp_path / "bad", {"ISIC_0000001": "mel"}, rows=["ISIC_0000002,1,1,0,0,0,0,0"])
    assert cli.main(["data", "check", str(bad)]) == 2
    assert "ISIC_0000002 is not exactly one-hot" in capsys.readouterr().err
