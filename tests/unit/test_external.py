"""Chapter 7's external test: the images it shares with the run found by id and by content, its tables, its checks."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError, LesionScanError
from lesionscan.data import isic2018, overlap, synthetic
from lesionscan.study import external, preflight

from factories import isic2018_folder, random_predictions


def _photo(seed: int, size=(200, 150)) -> Image.Image:
    """A smooth random picture (a blurred field of blobs): what a resized copy must still be matched to."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _frame(folder, images: dict[str, Image.Image], **save) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id, image in images.items():
        paths.append(folder / f"{image_id}.jpg")
        image.save(paths[-1], **save)
    return pd.DataFrame({"image_id": list(images), "image_path": [str(p) for p in paths]})


def test_a_resized_re_encoded_copy_is_found_and_different_pictures_are_not(tmp_path):
    own = _frame(tmp_path / "own", {f"ISIC_{k:07d}": _photo(k) for k in range(40)})
    own["subset"] = ["train"] * 30 + ["test"] * 10
    ext = _frame(tmp_path / "ext", {"ISIC_9000001": _photo(3).resize((600, 450)),   # train image 3, enlarged
                                    "ISIC_9000002": _photo(35).resize((600, 450)),  # test image 35
                                    "ISIC_9000003": _photo(1000), "ISIC_9000004": _photo(1001)}, quality=70)
    shared = overlap.shared_images(ext, own, progress=False)
    assert shared[["external_id", "own_id", "subset", "match"]].values.tolist() == [
        ["ISIC_9000001", "ISIC_0000003", "train", "same content"],
        ["ISIC_9000002", "ISIC_0000035", "test", "same content"]]
    assert (shared["thumbnail_difference"] <= overlap.THUMBNAIL_DIFFERENCE).all()


def test_an_id_match_is_reported_whatever_the_picture(tmp_path):
    own = _frame(tmp_path / "own", {"ISIC_0000001": _photo(1), "ISIC_0000002": _photo(2)})
    ext = _frame(tmp_path / "ext", {"ISIC_0000002": _photo(77), "ISIC_0000001": _photo(1)})
    shared = overlap.shared_images(ext, own, progress=False)
    assert dict(zip(shared["external_id"], shared["match"])) == {"ISIC_0000002": "same id",
                                                                 "ISIC_0000001": "same id and content"}


def test_every_external_image_shared_is_refused_by_name(tmp_path, monkeypatch):
    own = _frame(tmp_path / "own", {"ISIC_0000001": _photo(1)})
    folder = isic2018_folder(tmp_path / "isic", {"ISIC_0000001": "mel"})

    class FakeRun:
        params = {"external_test_dir": str(folder)}
        data_dir = tmp_path / "own"

    monkeypatch.setattr(external, "own_images", lambda run: own.assign(subset="train"))
    with pytest.raises(DataError, match=r"external_test_dir .*isic: every one of its 1 images is also in the run"):
        external.read_external(FakeRun(), progress=False)


def test_a_synthetic_isic_set_is_the_official_layout_with_fresh_ids(tmp_path):
    folder = synthetic.generate_isic2018(tmp_path / "isic", n_images=200, size=64, seed=3)
    report = isic2018.check_report(folder)
    assert report.problems == [] and len(report.frame) == 200
    assert set(report.frame["dx"]) == set(CLASSES)
    assert min(int(i.split("_")[1]) for i in report.frame["image_id"]) == synthetic.ISIC2018_FIRST_ID
    again = synthetic.generate_isic2018(tmp_path / "again", n_images=200, size=64, seed=3)
    assert report.checksum() == isic2018.check_report(again).checksum()  # deterministic


def test_internal_against_external_tables_hold_both_sides_and_the_change():
    from lesionscan.analysis import resampling

    supports = {dx: 12 for dx in CLASSES}
    inside = {m: random_predictions(k, supports, skill=2.0) for k, m in enumerate(("baseline", "soft_attention"))}
    outside = {m: random_predictions(10 + k, supports, skill=0.5) for k, m in enumerate(inside)}
    boot = {m: resampling.bootstrap_metrics(p, n_resamples=30, seed=0) for m, p in inside.items()}
    boot_out = {m: resampling.bootstrap_metrics(p, n_resamples=30, seed=0) for m, p in outside.items()}
    table = external.comparison_table(boot, boot_out)
    assert len(table) == 2 * 4
    row = table[(table["model"] == "soft_attention") & (table["metric"] == "balanced_accuracy")].iloc[0]
    assert row["change"] == pytest.approx(row["external"] - row["internal"])
    assert row["internal_low"] <= row["internal"] <= row["internal_high"]
    per_class = external.per_class_table(inside, outside, boot, boot_out)
    assert len(per_class) == 7 * 2 and (per_class["external_images"] == 12).all()
    view = external.with_intervals(table, {"internal": "internal (95 % CI)", "external": "external (95 % CI)"})
    assert "internal_low" not in view.columns and view["internal (95 % CI)"].str.match(r"\d\.\d{3} \(").all()


def test_a_bad_external_folder_stops_the_study_before_it_writes(tmp_path):
    bad = isic2018_folder(tmp_path / "isic", {"ISIC_0000001": "mel"}, rows=["ISIC_0000002,1,1,0,0,0,0,0"])
    with pytest.raises(DataError, match="line 3: ISIC_0000002 is not exactly one-hot"):
        preflight.check_before_writing("smoke", tmp_path / "artifacts", None, [f"external_test_dir={bad}"])
    (tmp_path / "plain").mkdir()
    with pytest.raises(LesionScanError, match="external_test_dir .*plain: not a layout lesionscan knows"):
        preflight.check_before_writing("smoke", tmp_path / "artifacts", None, [f"external_test_dir={tmp_path}/plain"])
    assert not (tmp_path / "artifacts").exists()
