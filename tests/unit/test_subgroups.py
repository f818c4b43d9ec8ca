"""Subgroup results: the grouping rules, the values against compute_metrics, the flags, determinism, bad metadata.

Synthetic frames and few resamples: the whole file runs in a few seconds.
"""

import io
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lesionscan.analysis import evaluation
from lesionscan.analysis import subgroups as sg
from lesionscan.core.errors import DataError
from lesionscan.figures import style
from lesionscan.figures import subgroups as figures

from factories import make_predictions, random_predictions

RESAMPLES = 40
VARIABLE_NAMES = [v.name for v in sg.VARIABLES]


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def _metadata(ids, dx, **columns) -> pd.DataFrame:
    """A load_dataset-like frame; each keyword gives a column's values (one per image) or one value for all."""
    n = len(ids)
    defaults = {"dx_type": "histo", "age": 50.0, "sex": "female", "localization": "back"}
    frame = pd.DataFrame({"lesion_id": [f"L{i}" for i in range(n)], "image_id": list(ids), "dx": list(dx)})
    for column, default in defaults.items():
        value = columns.get(column, default)
        frame[column] = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n
    frame["age"] = frame["age"].astype(float)
    return frame


def _blocks(*blocks):
    """Predictions and metadata from blocks (n, true class, images predicted wrong (as nv, or as bcc for nv),
    metadata keywords for all n); image ids img0000, img0001, ... in block order."""
    true, predicted, meta = [], [], {"dx_type": [], "age": [], "sex": [], "localization": []}
    defaults = {"dx_type": "histo", "age": 50.0, "sex": "female", "localization": "back"}
    for n, dx, wrong, columns in blocks:
        other = "bcc" if dx == "nv" else "nv"
        true += [dx] * n
        predicted += [other] * wrong + [dx] * (n - wrong)
        for column in meta:
            meta[column] += [columns.get(column, defaults[column])] * n
    ids = [f"img{i:04d}" for i in range(len(true))]
    confidence = np.linspace(0.5, 0.9, len(true))  # varied scores, so ROC-AUC is not all ties
    return make_predictions(true, predicted, confidence, ids=ids), _metadata(ids, true, **meta)


@pytest.fixture(scope="module")
def realistic():
    """Two models on 240 test images of all seven classes, with HAM10000-like metadata, plus 20 images of the
    metadata that are not in the test set (so site counts must come from the test images only)."""
    supports = {"akiec": 12, "bcc": 20, "bkl": 30, "df": 6, "mel": 30, "nv": 130, "vasc": 12}
    models = {"baseline": random_predictions(1, supports, skill=1.5),
              "soft_attention": random_predictions(2, supports, skill=2.0)}
    first = models["baseline"]
    rng = np.random.default_rng(7)
    n = len(first)
    age = rng.choice(np.arange(0, 90, 5), size=n).astype(float)
    age[rng.choice(n, 6, replace=False)] = np.nan
    sex = rng.choice(["male", "female", "unknown"], size=n, p=[0.5, 0.46, 0.04])
    sites = ["back", "lower extremity", "trunk", "face", "ear", "hand", "unknown"]
    localization = rng.choice(sites, size=n, p=[0.3, 0.3, 0.2, 0.1, 0.03, 0.03, 0.04])
    dx = first["dx"].to_numpy()
    dx_type = np.where(dx == "nv", rng.choice(["follow_up", "histo", "consensus"], size=n, p=[0.5, 0.4, 0.1]),
                       np.where(dx == "bkl", rng.choice(["histo", "confocal"], size=n, p=[0.8, 0.2]), "histo"))
    meta = _metadata(first["image_id"], dx, age=age, sex=sex, localization=localization, dx_type=dx_type)
    extra = _metadata([f"other{i}" for i in range(20)], ["nv"] * 20, localization="ear")
    meta = pd.concat([meta, extra], ignore_index=True)
    table = sg.subgroup_table(models, meta, n_resamples=RESAMPLES, seed=3)
    return models, meta, table


# --------------------------------------------------------------------------------------------- grouping rules


def test_age_band_edges_and_unknown_age():
    ages = [0, 25, 29.9, 30, 44, 45, 59, 60, 74, 75, 85, np.nan]
    expected = ["under 30"] * 3 + ["30–44"] * 2 + ["45–59"] * 2 + ["60–74"] * 2 + ["75 and over"] * 2 + ["unknown"]
    ids = [f"a{i}" for i in range(len(ages))]
    groups = sg.assign_groups(_metadata(ids, ["nv"] * len(ages), age=ages), ids)
    assert groups["age band"].astype(str).tolist() == expected
    assert list(groups["age band"].cat.categories) == [name for name, _, _ in sg.AGE_BANDS] + ["unknown"]


def test_sex_groups_normalise_case_and_call_the_rest_unknown():
    values = ["male", "Female ", "unknown", "", np.nan, "MALE"]
    ids = [f"s{i}" for i in range(len(values))]
    groups = sg.assign_groups(_metadata(ids, ["nv"] * len(values), sex=values), ids)
    assert groups["sex"].astype(str).tolist() == ["male", "female", "unknown", "unknown", "unknown", "male"]


def test_body_sites_are_pooled_by_their_count_among_the_test_images():
    sites = (["back"] * sg.MIN_SITE_IMAGES + ["face"] * (sg.MIN_SITE_IMAGES - 1) + ["ear"] + ["unknown"] * 2
             + [""] + ["trunk"] * (sg.MIN_SITE_IMAGES + 5))
    ids = [f"b{i}" for i in range(len(sites))]
    # ten more face images outside the test set: pooling counts the test images only
    meta = pd.concat([_metadata(ids, ["nv"] * len(sites), localization=sites),
                      _metadata([f"x{i}" for i in range(10)], ["nv"] * 10, localization="face")], ignore_index=True)
    groups = sg.assign_groups(meta, ids)["body site"]
    by_site = pd.Series(groups.astype(str).to_numpy(), index=sites)
    assert set(by_site[["back"]]) == {"back"} and set(by_site[["trunk"]]) == {"trunk"}
    assert set(by_site[["face", "ear"]]) == {sg.OTHER_SITES}
    assert set(by_site[["unknown", ""]]) == {"unknown"}  # kept apart however few
    # most images first, then the pooled sites, then unknown
    assert list(groups.cat.categories) == ["trunk", "back", sg.OTHER_SITES, "unknown"]
    assert str(sg.MIN_SITE_IMAGES) in sg.OTHER_SITES


def test_ground_truth_types_get_readable_names():
    codes = ["histo", "follow_up", "consensus", "confocal", ""]
    ids = [f"d{i}" for i in range(len(codes))]
    groups = sg.assign_groups(_metadata(ids, ["nv"] * len(codes), dx_type=codes), ids)["ground truth"]
    assert groups.astype(str).tolist() == ["histopathology", "follow-up", "consensus", "confocal", "unknown"]


def test_groups_follow_the_order_of_the_image_ids_asked_for():
    ids = ["z", "y", "x"]
    meta = _metadata(["x", "y", "z"], ["nv", "mel", "bcc"], age=[20.0, 50.0, 80.0])
    groups = sg.assign_groups(meta, ids)
    assert groups["image_id"].tolist() == ids and groups["dx"].tolist() == ["bcc", "mel", "nv"]
    assert groups["age band"].astype(str).tolist() == ["75 and over", "45–59", "under 30"]


# --------------------------------------------------------------------------------------------- the table


def test_table_has_a_row_per_model_variable_and_group(realistic):
    models, _, table = realistic
    assert list(table.columns) == list(sg.TABLE_COLUMNS)
    assert list(dict.fromkeys(table["model"])) == list(models)
    assert list(dict.fromkeys(table["variable"])) == [sg.OVERALL_VARIABLE, *VARIABLE_NAMES]
    assert not table.duplicated(["model", "variable", "group"]).any()
    assert (table["images"] > 0).all()  # empty groups are left out
    overall = table[table["variable"] == sg.OVERALL_VARIABLE]
    assert overall["group"].tolist() == [sg.OVERALL_GROUP] * 2 and (overall["images"] == 240).all()


def test_counts_add_up_to_the_test_set_for_every_variable(realistic):
    models, _, table = realistic
    n = len(models["baseline"])
    sums = table[table["variable"] != sg.OVERALL_VARIABLE].groupby(["model", "variable"])["images"].sum()
    assert len(sums) == 2 * len(sg.VARIABLES)
    assert (sums == n).all(), sums


def test_each_subgroup_value_is_compute_metrics_on_its_rows(realistic):
    models, meta, table = realistic
    groups = sg.assign_groups(meta, models["baseline"]["image_id"])
    for _, row in table[table["model"] == "soft_attention"].iterrows():
        pred = models[row["model"]]
        if row["variable"] == sg.OVERALL_VARIABLE:
            rows = pred
        else:
            ids = set(groups.loc[groups[row["variable"]].astype(str) == row["group"], "image_id"])
            rows = pred[pred["image_id"].isin(ids)]
        metrics = evaluation.compute_metrics(rows)
        assert row["images"] == len(rows)
        assert row["classes"] == rows["dx"].nunique()
        assert row["rarest_class_images"] == rows["dx"].value_counts().min()
        assert row["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"], abs=1e-12)
        auc = metrics["roc_auc"]["macro"]
        if auc is None:
            assert math.isnan(row["roc_auc_macro"])
        else:
            assert row["roc_auc_macro"] == pytest.approx(auc, abs=1e-12)
        for low, high, _ in sg.METRIC_COLUMNS.values():
            if np.isfinite(row[low]):
                assert row[low] <= row[high] and 0.0 <= row[low] and row[high] <= 1.0


def test_members_list_what_each_group_holds(realistic):
    models, meta, table = realistic
    sites = meta.set_index("image_id").loc[models["baseline"]["image_id"], "localization"].value_counts()
    small = sites[(sites < sg.MIN_SITE_IMAGES) & (sites.index != "unknown")]
    assert len(small) >= 2  # the fixture pools some sites
    row = table[(table["model"] == "baseline") & (table["variable"] == "body site")
                & (table["group"] == sg.OTHER_SITES)].iloc[0]
    counts = {item.rsplit(" (", 1)[0]: int(item.rsplit(" (", 1)[1].rstrip(")")) for item in row["members"].split(", ")}
    assert counts == small.to_dict() and sum(counts.values()) == row["images"]
    assert "pooled here: " + row["members"] in sg.rules_text(table)


# --------------------------------------------------------------------------------------------- too wide to read


def test_a_readable_group_is_not_flagged_and_a_wide_interval_is():
    """Sex female: 60 images, 29 of 30 right per class (narrow); male: 30 images, half right (wide)."""
    pred, meta = _blocks((30, "mel", 1, {"sex": "female"}), (30, "bcc", 1, {"sex": "female"}),
                         (16, "mel", 8, {"sex": "male"}), (16, "bkl", 8, {"sex": "male"}))
    table = sg.subgroup_table({"m": pred}, meta, n_resamples=200, seed=0).set_index(["variable", "group"])
    female, male = table.loc[("sex", "female")], table.loc[("sex", "male")]
    assert not female["wide"] and not female["ba_wide"] and not female["auc_wide"] and female["why"] == ""
    assert female["ba_high"] - female["ba_low"] <= sg.MAX_READABLE_WIDTH
    assert male["ba_high"] - male["ba_low"] > sg.MAX_READABLE_WIDTH
    assert male["ba_wide"] and male["wide"] and "balanced accuracy interval" in male["why"]


def test_a_tiny_group_is_flagged():
    pred, meta = _blocks((30, "mel", 1, {}), (30, "nv", 1, {}), (2, "mel", 0, {"age": np.nan}),
                         (2, "nv", 0, {"age": np.nan}))
    row = sg.subgroup_table({"m": pred}, meta, n_resamples=50, seed=0).set_index(["variable", "group"]).loc[
        ("age band", "unknown")]
    assert row["images"] == 4
    assert row["ba_high"] - row["ba_low"] <= sg.MAX_READABLE_WIDTH  # all right: a zero-width interval ...
    assert row["ba_wide"] and row["auc_wide"]                     # ... flagged all the same, for its size
    assert f"4 images (fewer than {sg.MIN_READABLE_IMAGES})" in row["why"]


def test_a_class_with_a_single_image_flags_its_group():
    pred, meta = _blocks((40, "nv", 2, {}), (1, "mel", 0, {}))
    row = sg.subgroup_table({"m": pred}, meta, n_resamples=50, seed=0).iloc[0]
    assert row["images"] == 41 and row["rarest_class_images"] == 1
    assert row["ba_wide"] and row["auc_wide"] and "mel (1)" in row["why"]


def test_a_one_class_group_has_no_auc_and_is_flagged_without_crashing():
    """Follow-up images are all nevi: balanced accuracy is nv recall, macro ROC-AUC undefined."""
    pred, meta = _blocks((40, "mel", 4, {}), (40, "nv", 10, {"dx_type": "follow_up"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = sg.subgroup_table({"m": pred}, meta, n_resamples=50, seed=0)
    row = table.set_index(["variable", "group"]).loc[("ground truth", "follow-up")]
    assert row["classes"] == 1 and row["balanced_accuracy"] == pytest.approx(30 / 40)
    assert math.isnan(row["roc_auc_macro"]) and math.isnan(row["auc_low"]) and math.isnan(row["auc_high"])
    assert row["auc_wide"] and row["ba_wide"] and "one class only (nv)" in row["why"]
    compact = sg.compact_table(table).set_index(["variable", "group"])
    assert compact.loc[("ground truth", "follow-up"), "m: macro ROC-AUC"] == f"n/a {sg.WIDE_MARK}"


# --------------------------------------------------------------------------------------------- determinism


def test_same_inputs_and_seed_give_the_same_rows_whatever_the_other_models(realistic):
    """A model's rows are the same when it is scored again, alone (its subgroups are drawn from the seed only)."""
    models, meta, table = realistic
    alone = sg.subgroup_table({"soft_attention": models["soft_attention"]}, meta, n_resamples=RESAMPLES, seed=3)
    pd.testing.assert_frame_equal(table[table["model"] == "soft_attention"].reset_index(drop=True), alone)


def test_the_table_does_not_depend_on_the_row_order(realistic):
    models, meta, table = realistic
    shuffled = {"baseline": models["baseline"].sample(frac=1.0, random_state=5)}
    again = sg.subgroup_table(shuffled, meta.sample(frac=1.0, random_state=6), n_resamples=RESAMPLES, seed=3)
    pd.testing.assert_frame_equal(table[table["model"] == "baseline"].reset_index(drop=True), again)


def test_another_seed_draws_other_intervals(realistic):
    models, meta, table = realistic
    other = sg.subgroup_table({"baseline": models["baseline"]}, meta, n_resamples=RESAMPLES, seed=4)
    same = table[table["model"] == "baseline"].reset_index(drop=True)
    pd.testing.assert_series_equal(same["balanced_accuracy"], other["balanced_accuracy"])
    assert not np.allclose(same["ba_low"], other["ba_low"])


# --------------------------------------------------------------------------------------------- bad inputs


def test_images_missing_from_the_metadata_are_an_error_naming_them():
    pred, meta = _blocks((20, "mel", 1, {}), (20, "nv", 1, {}))
    gone = ["img0003", "img0007", "img0030"]
    with pytest.raises(DataError, match=r"3 of the 40 test images are not in the metadata \(img0003, img0007, "
                                        r"img0030\)"):
        sg.subgroup_table({"m": pred}, meta[~meta["image_id"].isin(gone)], n_resamples=10)
    many = [f"img{i:04d}" for i in range(8)]
    with pytest.raises(DataError, match=r"8 of the 40 .*\(img0000, img0001, img0002, img0003, img0004, \.\.\.\)"):
        sg.subgroup_table({"m": pred}, meta[~meta["image_id"].isin(many)], n_resamples=10)


def test_metadata_that_disagrees_or_lacks_a_column_is_an_error():
    pred, meta = _blocks((20, "mel", 1, {}), (20, "nv", 1, {}))
    wrong = meta.assign(dx=meta["dx"].where(meta["image_id"] != "img0002", "bcc"))
    with pytest.raises(DataError, match=r"1 test image\(s\) have another true class .*img0002 \(mel in the "
                                        r"predictions, bcc in the metadata\)"):
        sg.subgroup_table({"m": pred}, wrong, n_resamples=10)
    with pytest.raises(DataError, match="lacks column.*localization"):
        sg.subgroup_table({"m": pred}, meta.drop(columns="localization"), n_resamples=10)
    with pytest.raises(DataError, match="more than once.*img0001"):
        sg.subgroup_table({"m": pred}, pd.concat([meta, meta.iloc[[1]]]), n_resamples=10)


def test_models_on_different_test_images_are_refused():
    pred, meta = _blocks((20, "mel", 1, {}), (20, "nv", 1, {}))
    with pytest.raises(ValueError, match="not on the same test images"):
        sg.subgroup_table({"a": pred, "b": pred.iloc[1:]}, meta, n_resamples=10)
    with pytest.raises(ValueError, match="at least one model"):
        sg.subgroup_table({}, meta, n_resamples=10)


# --------------------------------------------------------------------------------------------- words and views


def test_rules_text_has_a_line_per_variable_and_the_flag_rule():
    lines = sg.rules_text().splitlines()
    assert all(line.startswith("- **") for line in lines)
    assert [line.split("**")[1] for line in lines[:len(sg.VARIABLES)]] == [n.capitalize() for n in VARIABLE_NAMES]
    text = "\n".join(lines)
    for words in (f"fewer than {sg.MIN_SITE_IMAGES} images", sg.OTHER_SITES, "histopathology (histo)",
                  "follow-up (follow_up)", f"{sg.MAX_READABLE_WIDTH:.2f} wide",
                  f"fewer than {sg.MIN_READABLE_IMAGES} images", sg.WIDE_MARK):
        assert words in text, words
    assert sg.wide_rule_text() in text


def test_compact_table_has_a_cell_per_model_and_metric_with_the_flag_mark(realistic):
    _, _, table = realistic
    compact = sg.compact_table(table)
    assert list(compact.columns[:3]) == ["variable", "group", "images"]
    assert list(compact.columns[3:]) == [f"{m}: {w}" for m in ("baseline", "soft_attention")
                                         for w in ("balanced accuracy", "macro ROC-AUC")]
    assert len(compact) == len(table) // 2
    for _, row in table.iterrows():
        key = (compact["variable"] == row["variable"]) & (compact["group"] == row["group"])
        cell = compact.loc[key, f"{row['model']}: balanced accuracy"].iloc[0]
        assert cell.startswith(f"{row['balanced_accuracy']:.2f} ({row['ba_low']:.2f}–{row['ba_high']:.2f})")
        assert cell.endswith(sg.WIDE_MARK) == bool(row["ba_wide"])
    with pytest.raises(ValueError, match="unknown metric"):
        sg.compact_table(table, metrics=("accuracy",))


def test_forest_plot_has_a_panel_per_variable_and_hollow_flagged_points(realistic):
    _, _, table = realistic
    fig = figures.subgroup_forest(table)
    assert isinstance(fig, Figure) and style.is_book_figure(figures.subgroup_forest)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fig.savefig(io.BytesIO(), format="png", dpi=40)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [n.capitalize() for n in VARIABLE_NAMES]
    labels = [t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.get_yticklabels()]
    first = table[table["model"] == "baseline"].iloc[1]
    assert f"{first['group']} (n = {first['images']})" in labels
    points = [line for ax in fig.axes for line in ax.lines if line.get_marker() not in ("None", "", None, "|")]
    hollow = [line for line in points if line.get_markerfacecolor() == "white"]
    subgroups = table[table["variable"] != sg.OVERALL_VARIABLE]
    assert len(points) == subgroups["balanced_accuracy"].notna().sum()
    assert len(hollow) == subgroups["ba_wide"].sum() > 0
    overall = {round(float(v), 9) for v in table.loc[table["variable"] == sg.OVERALL_VARIABLE, "balanced_accuracy"]}
    vertical = {round(float(line.get_xdata()[0]), 9) for line in fig.axes[0].lines
                if len(set(line.get_xdata())) == 1 and line.get_marker() in ("None", "", None)}
    assert overall <= vertical
    with pytest.raises(ValueError, match="unknown metric"):
        figures.subgroup_forest(table, metric="accuracy")
