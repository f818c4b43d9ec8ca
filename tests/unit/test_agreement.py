"""Explanation maps against lesion masks: metrics on maps with known answers, mask loading, intervals, words, chart."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lesionscan.analysis import agreement
from lesionscan.analysis.agreement import (
    METRICS,
    REFERENCE_METHODS,
    agreement_scores,
    agreement_table,
    centre_gaussian,
    energy_inside,
    load_mask,
    load_masks,
    paired_difference,
    pointing_game,
    topk_iou,
    uniform_map,
)
from lesionscan.analysis.resampling import stratified_counts
from lesionscan.analysis.wording import map_agreement_verdict
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.figures import explanations, style


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def _disc(size, centre, radius):
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _masks(n=6, size=24, seed=0):
    """Discs of random centre and radius, none empty or full."""
    rng = np.random.default_rng(seed)
    return np.stack([_disc(size, rng.uniform(6, size - 6, 2), rng.uniform(3, 7)) for _ in range(n)])


def _all_metrics(maps, masks):
    return {"pointing_game": pointing_game(maps, masks), "energy_inside": energy_inside(maps, masks),
            "topk_iou": topk_iou(maps, masks)}


# --------------------------------------------------------------------------------------------- metrics


def test_map_equal_to_the_mask_scores_one_everywhere():
    masks = _masks()
    for maps in (masks, masks.astype(np.float32) * 0.7):
        for name, score in _all_metrics(maps, masks).items():
            assert score.shape == (len(masks),)
            np.testing.assert_array_equal(score, 1.0, err_msg=name)


def test_complement_of_the_mask_scores_zero_everywhere():
    masks = _masks()
    for name, score in _all_metrics((~masks).astype(float), masks).items():
        np.testing.assert_array_equal(score, 0.0, err_msg=name)


def test_unique_maximum_scores_exactly_hit_or_miss():
    mask = _disc(20, (10, 10), 4)
    inside, outside = np.zeros((20, 20)), np.zeros((20, 20))
    inside[10, 11], outside[1, 1] = 1.0, 1.0
    assert pointing_game(np.stack([inside, outside]), np.stack([mask, mask])).tolist() == [1.0, 0.0]


def test_uniform_and_flat_maps_score_the_area_share():
    masks = _masks()
    share = masks.mean(axis=(1, 2))
    for value in (1.0, 3.5, 0.0, -2.0):  # 0 and negative: no positive mass, the limit of a flat map
        maps = np.full(masks.shape, value, dtype=np.float32)
        np.testing.assert_allclose(energy_inside(maps, masks), share, rtol=1e-12, atol=0)
        np.testing.assert_allclose(pointing_game(maps, masks), share, rtol=1e-12, atol=0)
    assert not np.allclose(share, share[0])  # the masks differ, so a constant answer would fail


def test_topk_iou_of_a_uniform_map_is_a_random_subset():
    size, rng = 24, np.random.default_rng(3)
    masks = np.stack([_disc(size, rng.uniform(8, 16, 2), r) for r in rng.uniform(5, 9, 60)])
    uniform = np.broadcast_to(uniform_map((size, size)), masks.shape)
    a = masks.mean(axis=(1, 2))
    expected = np.mean(a / (2 - a))
    means = [np.mean(topk_iou(uniform, masks, seed=s)) for s in range(4)]
    assert np.mean(means) == pytest.approx(expected, abs=0.03)
    # the order is fixed by the seed: same seed, same pixels; another seed, other pixels
    np.testing.assert_array_equal(topk_iou(uniform, masks, seed=1), topk_iou(uniform, masks, seed=1))
    assert not np.array_equal(topk_iou(uniform, masks, seed=1), topk_iou(uniform, masks, seed=2))


def test_topk_iou_breaks_partial_ties_among_the_tied_pixels_only():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, :3] = True                       # k = 30
    heat = np.zeros((10, 10))
    heat[:, :2] = 2.0                        # 20 pixels surely in the top k, all inside
    heat[:, 2:4] = 1.0                       # 20 tied pixels compete for the last 10 places
    scores = np.array([topk_iou(heat, mask, seed=s)[0] for s in range(12)])
    # 20 + x of the 30 chosen pixels are inside, x of the 10 tied ones (column 2): IoU (20 + x) / (40 - x)
    inside = np.round((40 * scores - 20) / (1 + scores)).astype(int)
    np.testing.assert_allclose(scores, (20 + inside) / (40 - inside), rtol=1e-12)
    assert (inside >= 0).all() and (inside <= 10).all()
    assert len(set(inside)) > 1  # a fresh random mix per seed, not a fixed (e.g. raster) order
    assert abs(inside.mean() - 5) < 2  # half of the tied pixels are inside


def test_centre_prior_beats_uniform_on_a_centred_lesion():
    masks = np.stack([_disc(32, (15.5, 15.5), r) for r in (5, 8, 11)])
    gaussian = np.broadcast_to(centre_gaussian((32, 32)), masks.shape)
    uniform = np.broadcast_to(uniform_map((32, 32)), masks.shape)
    g, u = _all_metrics(gaussian, masks), _all_metrics(uniform, masks)
    for metric in METRICS:
        assert (g[metric] > u[metric]).all(), metric
    assert centre_gaussian((32, 40)).shape == (32, 40) and centre_gaussian((32, 40)).dtype == np.float32
    assert np.unravel_index(np.argmax(centre_gaussian((31, 41))), (31, 41)) == (15, 20)


def test_empty_and_full_masks_give_nan_in_every_metric():
    masks = _masks(3)
    masks[0] = False
    masks[2] = True
    maps = np.random.default_rng(0).random(masks.shape)
    for name, score in _all_metrics(maps, masks).items():
        assert np.isnan(score[0]) and np.isnan(score[2]), name
        assert np.isfinite(score[1]), name


def test_shape_mismatch_is_a_parameter_error_naming_both_shapes():
    masks = _masks(3, size=24)
    for maps in (np.zeros((2, 24, 24)), np.zeros((3, 12, 12))):
        for metric in (pointing_game, energy_inside, topk_iou):
            with pytest.raises(ParameterError) as info:
                metric(maps, masks)
            assert str(maps.shape) in str(info.value) and str(masks.shape) in str(info.value)


def test_non_finite_maps_are_refused():
    masks = _masks(2)
    maps = np.ones(masks.shape)
    maps[1, 3, 3] = np.nan
    with pytest.raises(ParameterError, match="image 1"):
        energy_inside(maps, masks)


# --------------------------------------------------------------------------------------------- masks on disk


def _asymmetric_mask():
    """8 x 8, off-centre and not symmetric: a flip or a transpose would show."""
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:4, 2:7] = True
    mask[4:7, 5] = True
    return mask


def test_load_mask_puts_the_mask_on_the_image_grid(tmp_path):
    mask = _asymmetric_mask()
    big = np.kron(mask, np.ones((2, 3), dtype=bool))  # 16 rows x 24 columns on disk
    path = tmp_path / "ISIC_0000000_segmentation.png"
    Image.fromarray(big.astype(np.uint8) * 255, mode="L").save(path)
    loaded = load_mask(path, 8)
    assert loaded.dtype == bool and loaded.shape == (8, 8)
    np.testing.assert_array_equal(loaded, mask)  # squeezed to a square, as load_image squeezes the image
    np.testing.assert_array_equal(load_mask(path, 16), np.kron(mask, np.ones((2, 2), dtype=bool)))
    stacked = load_masks([path, str(path)], 8)
    assert stacked.shape == (2, 8, 8)
    np.testing.assert_array_equal(stacked[1], mask)


def test_corrupt_or_missing_mask_is_a_data_error_naming_it(tmp_path):
    bad = tmp_path / "broken_segmentation.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken_segmentation.png"):
        load_mask(bad, 8)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(good)
    with pytest.raises(DataError, match="row 1"):
        load_masks([good, None], 8)


# --------------------------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def scored():
    """30 images of three classes, df with a single image, two with empty masks; a good and a poor map."""
    rng = np.random.default_rng(7)
    masks = _masks(30, size=20, seed=1)
    masks[[3, 17]] = False
    labels = ["nv"] * 18 + ["mel"] * 11 + ["df"]
    good = masks.astype(float) + 0.3 * rng.random(masks.shape)
    poor = rng.random(masks.shape)
    scores = agreement_scores({"good": good, "poor": poor}, masks, [f"ISIC_{i:07d}" for i in range(30)], labels)
    return scores, masks


def test_agreement_scores_long_format_keeps_nan_rows(scored):
    scores, masks = scored
    assert list(scores.columns) == ["image_id", "dx", "method", "metric", "score"]
    assert list(dict.fromkeys(scores["method"])) == ["good", "poor", *REFERENCE_METHODS]
    assert len(scores) == 30 * 4 * 3
    assert scores["score"].isna().sum() == 2 * 4 * 3
    with pytest.raises(ParameterError, match="reserved"):
        agreement_scores({"uniform": masks}, masks, range(30), ["nv"] * 30)


def test_agreement_table_counts_intervals_and_single_image_class(scored):
    scores, _ = scored
    table = agreement_table(scores, n_resamples=200, seed=0)
    assert list(table.columns) == ["method", "metric", "class", "n", "mean", "low", "high"]
    first = table[(table["method"] == "good") & (table["metric"] == "energy_inside")]
    assert list(first["class"]) == ["all", "df", "mel", "nv"]
    assert dict(zip(first["class"], first["n"])) == {"all": 28, "df": 1, "mel": 11, "nv": 16}
    assert (table["low"] <= table["mean"] + 1e-12).all() and (table["mean"] <= table["high"] + 1e-12).all()
    assert (table["low"] < table["high"])[table["class"] != "df"].any()
    df_rows = table[table["class"] == "df"]
    assert (df_rows["low"] == df_rows["mean"]).all() and (df_rows["high"] == df_rows["mean"]).all()
    means = scores.groupby(["method", "metric"])["score"].mean()
    alls = table[table["class"] == "all"].set_index(["method", "metric"])["mean"]
    np.testing.assert_allclose(alls.loc[means.index], means, rtol=1e-12)
    pd.testing.assert_frame_equal(table, agreement_table(scores, n_resamples=200, seed=0))


def test_agreement_table_interval_matches_a_plain_resampling_loop(scored):
    scores, _ = scored
    table = agreement_table(scores, n_resamples=50, seed=4, level=0.9)
    rows = scores[(scores["method"] == "poor") & (scores["metric"] == "topk_iou")]
    y = np.array([agreement.CLASSES.index(dx) for dx in rows["dx"]])
    counts = stratified_counts(y, 50, 4)
    values = rows["score"].to_numpy()
    means = [np.nanmean(np.repeat(values, c.astype(int))) for c in counts]
    row = table[(table["method"] == "poor") & (table["metric"] == "topk_iou") & (table["class"] == "all")]
    np.testing.assert_allclose([row["low"].iloc[0], row["high"].iloc[0]], np.quantile(means, [0.05, 0.95]),
                               rtol=1e-12)


def test_paired_difference_signs(scored):
    scores, _ = scored
    better = paired_difference(scores, "good", "uniform", "energy_inside", n_resamples=200)
    assert better["n"] == 28 and better["difference"] > 0 and better["low"] > 0
    assert better["difference"] == pytest.approx(better["mean_method"] - better["mean_reference"])
    worse = paired_difference(scores, "uniform", "good", "topk_iou", n_resamples=200)
    assert worse["high"] < 0
    with pytest.raises(ParameterError, match="missing"):
        paired_difference(scores, "missing", "uniform", "topk_iou")


def _diff(low, high, metric="energy_inside", reference="centre prior (Gaussian)"):
    return {"method": "soft attention", "reference": reference, "metric": metric, "n": 100,
            "mean_method": 0.61, "mean_reference": 0.61 - (low + high) / 2, "difference": (low + high) / 2,
            "low": low, "high": high, "level": 0.95}


def test_verdict_wording_follows_the_interval():
    more = map_agreement_verdict([_diff(0.03, 0.09)], "soft attention")
    assert more.startswith("Soft attention points at the lesion more than the centre prior does")
    assert "energy inside the mask is 0.61 against 0.55" in more and "+0.03 to +0.09" in more
    less = map_agreement_verdict([_diff(-0.09, -0.03, reference="uniform")], "soft attention")
    assert "less than a uniform map" in less and "more" not in less
    unclear = map_agreement_verdict([_diff(-0.02, 0.04, metric="topk_iou")], "Grad-CAM")
    assert "no clearer than the centre prior" in unclear and "includes zero" in unclear
    assert "IoU of the top-k pixels" in unclear
    both = map_agreement_verdict([_diff(0.03, 0.09), _diff(-0.02, 0.04, metric="pointing_game")], "soft attention")
    assert "more" in both and "no clearer" in both and "pointing game" in both


def test_verdict_from_real_differences(scored):
    scores, _ = scored
    differences = [paired_difference(scores, "good", "uniform", m, n_resamples=200) for m in METRICS]
    text = map_agreement_verdict(differences, "the good map")
    assert text.startswith("The good map points at the lesion more than a uniform map does")
    for metric in METRICS:
        assert agreement.METRIC_LABELS[metric] in text


def test_agreement_chart_one_panel_per_metric(scored):
    scores, _ = scored
    fig = explanations.agreement_chart(agreement_table(scores, n_resamples=100))
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == len(METRICS)
        assert fig.get_size_inches()[0] <= style.PAGE_WIDTH
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert sum("(reference)" in t for t in labels) == 2 and len(labels) == 4
        assert all(ax.get_xlim() == (0.0, 1.0) for ax in fig.axes)
        hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
        assert len(hatched) == 2
    finally:
        plt.close(fig)


def test_summary_reads_as_one_row_per_method():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:6, 2:6] = True
    masks = np.repeat(mask, 4, axis=0)
    scores = agreement.agreement_scores({"perfect": masks.astype(float)}, masks, ["a", "b", "c", "d"],
                                        ["mel", "mel", "nv", "nv"])
    table = agreement.agreement_table(scores, n_resamples=50, seed=0)
    wide = agreement.summary(table)
    assert list(wide.index) == ["perfect", *agreement.REFERENCE_METHODS]
    assert list(wide.columns) == [agreement.METRIC_LABELS[m] for m in agreement.METRICS] + ["images"]
    assert wide.loc["perfect", "energy inside the mask"] == "1.000 (1.000 to 1.000)"
    assert wide.loc["uniform", "images"] == 4
    with pytest.raises(ParameterError, match="df"):
        agreement.summary(table, "df")
    diff = agreement.paired_difference(scores, "perfect", "uniform", "energy_inside", n_resamples=50)
    row = agreement.differences_summary([diff]).iloc[0]
    assert row["difference"] == "+0.750" and row["95 % interval"] == "+0.750 to +0.750"


def test_likeness_to_average_tells_a_fixed_pattern_from_maps_that_follow_the_lesion():
    rng = np.random.default_rng(0)
    fixed = np.tile(np.linspace(0, 1, 16), (16, 1))
    same = np.stack([fixed + 0.01 * rng.random((16, 16)) for _ in range(20)])
    assert agreement.likeness_to_average(same).min() > 0.99
    moving = np.zeros((20, 16, 16))
    for i in range(20):
        y, x = rng.integers(0, 12, 2)
        moving[i, y:y + 4, x:x + 4] = 1.0
    assert np.median(agreement.likeness_to_average(moving)) < 0.6
    assert np.isnan(agreement.likeness_to_average(np.ones((2, 4, 4)))).all()
    table = agreement.likeness_table({"fixed": agreement.likeness_to_average(same),
                                      "moving": agreement.likeness_to_average(moving)}).set_index("method")
    assert table.loc["fixed", "median correlation with the average map"] > 0.99
    assert table.loc["moving", "lowest 10 %"] <= table.loc["moving", "median correlation with the average map"]
    small = agreement.shrink(np.ones((3, 96, 96)), side=24)
    assert small.shape == (3, 24, 24) and np.allclose(small, 1)
