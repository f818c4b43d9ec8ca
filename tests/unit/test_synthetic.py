"""The synthetic generator: layout, determinism, class mix, lesions, masks."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionscan.core.classes import CLASSES, HAM10000_COUNTS
from lesionscan.core.errors import ParameterError
from lesionscan.data import synthetic


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(synthetic_set):
    return synthetic_set(n_images=400, size=64, seed=3)


def test_layout_matches_ham10000(synth):
    meta = pd.read_csv(synth / "HAM10000_metadata.csv")
    assert list(meta.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert len(meta) == 400 and meta["image_id"].is_unique
    for image_id in meta["image_id"]:
        image = Image.open(synth / "HAM10000_images_part_1" / f"{image_id}.jpg")
        assert image.format == "JPEG" and image.size == (64, 48)
        mask = np.asarray(Image.open(synth / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png"))
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 255}
        assert 0.02 < (mask > 0).mean() < 0.9  # a lesion, not the whole image


def test_class_proportions_follow_ham10000():
    assert synthetic.class_counts(10015, min_share=0) == HAM10000_COUNTS
    small = synthetic.class_counts(400)
    assert sum(small.values()) == 400 and min(small.values()) == 12
    lifted = synthetic.class_counts(2000)
    assert lifted["df"] == lifted["vasc"] == 50 and lifted["mel"] == round(2000 * 1113 / 10015)
    assert max(small, key=small.get) == "nv" and small["nv"] / 400 > 0.55
    with pytest.raises(ParameterError, match="images=50"):
        synthetic.class_counts(50)


def test_lesions_have_several_images_at_ham10000s_rate(synth):
    meta = pd.read_csv(synth / "HAM10000_metadata.csv")
    per_lesion = meta.groupby("lesion_id").size()
    assert 1.15 < per_lesion.mean() < 1.55  # HAM10000: 1.34
    assert (meta.groupby("lesion_id")["dx"].nunique() == 1).all()
    assert set(meta["dx"]) == set(CLASSES)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, synth):
    again = synthetic.generate(tmp_path / "again", n_images=400, size=64, seed=3)
    other = synthetic.generate(tmp_path / "other", n_images=400, size=64, seed=4)
    assert _digest(again) == _digest(synth)
    assert _digest(other) != _digest(synth)


def test_appearance_depends_on_class(synth):
    """Mean lesion colour differs between classes more than within (a learnable signal)."""
    meta = pd.read_csv(synth / "HAM10000_metadata.csv")
    means = {}
    for dx in ("mel", "vasc", "nv"):
        colours = []
        for image_id in meta.loc[meta["dx"] == dx, "image_id"][:12]:
            image = np.asarray(Image.open(synth / "HAM10000_images_part_1" / f"{image_id}.jpg"), dtype=float)
            mask_file = synth / "HAM10000_segmentations_lesion_tschandl" / f"{image_id}_segmentation.png"
            mask = np.asarray(Image.open(mask_file)) > 0
            colours.append(image[mask].mean(axis=0))
        means[dx] = np.array(colours)
    # vascular lesions are redder (R - B) than melanomas
    assert (means["vasc"][:, 0] - means["vasc"][:, 1]).mean() > (means["mel"][:, 0] - means["mel"][:, 1]).mean() + 20
    # melanomas are darker than nevi
    assert means["mel"].mean() < means["nv"].mean() - 10


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(ParameterError, match="not a LesionScan synthetic dataset"):
        synthetic.generate(tmp_path / "mine", n_images=200, size=64)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
