"""The interpretability chapter's choices and maps, on a tiny run with untrained models."""

import numpy as np
import pandas as pd
import pytest

from lesionscan.analysis import evaluation
from lesionscan.core.errors import ParameterError
from lesionscan.study import interpretability

from factories import predictions_from_rows


def test_examples_are_the_most_confident_correct_then_the_most_confident_mistake():
    pred = predictions_from_rows([("a", "mel", "mel", 0.6), ("b", "mel", "mel", 0.9), ("c", "mel", "nv", 0.5),
                                  ("d", "mel", "bkl", 0.8), ("e", "nv", "nv", 0.7)])
    chosen = interpretability.choose_examples(pred, per_class=2)
    mel = chosen[chosen["dx"] == "mel"]
    assert mel["image_id"].tolist() == ["b", "d"]
    assert mel["outcome"].tolist() == ["correct", "wrong"]
    assert chosen[chosen["dx"] == "nv"]["image_id"].tolist() == ["e"]  # no mistake to show
    assert set(chosen["dx"]) == {"mel", "nv"}  # classes without test images are skipped


def test_akiec_shows_the_reports_confusion_with_melanoma_first():
    pred = predictions_from_rows([("a", "akiec", "akiec", 0.9), ("b", "akiec", "bcc", 0.95),
                                  ("c", "akiec", "mel", 0.4), ("d", "akiec", "nv", 0.9)])
    chosen = interpretability.choose_examples(pred, per_class=3)
    assert chosen["image_id"].tolist() == ["a", "c", "d"]


def test_a_class_short_of_correct_predictions_shows_more_mistakes():
    pred = predictions_from_rows([("a", "df", "nv", 0.9), ("b", "df", "bkl", 0.6), ("c", "df", "df", 0.5)])
    assert interpretability.choose_examples(pred, per_class=3)["image_id"].tolist() == ["c", "a", "b"]
    with pytest.raises(ParameterError, match="explain_per_class"):
        interpretability.choose_examples(pred, per_class=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synthetic_set):
    """A run on 180 synthetic images at 32 px with untrained models and their test predictions."""
    from lesionscan.core import parameters
    from lesionscan.model import networks, pipeline
    from lesionscan.study import experiments
    from lesionscan.study.run_folder import Run

    root = tmp_path_factory.mktemp("interp")
    data_dir = synthetic_set(n_images=180, size=64, seed=3)
    params = parameters.resolve("smoke", {"image_size": 32})
    params["data_dir"] = str(data_dir)
    run = Run(dir=root / "run", params=params)
    test = experiments.subsets(run)["test"]
    images = pipeline.preprocess(np.stack([pipeline.load_image(p, 32) for p in test["image_path"]]).astype("float32"))
    for kind in ("soft_attention", "baseline"):
        model = networks.build_model(kind, 32, run.parameters.model)
        run.model_path(kind).parent.mkdir(parents=True, exist_ok=True)
        model.save(run.model_path(kind))
        probs = model.predict(images, verbose=0)
        frame = evaluation.predictions_frame(test["image_id"].tolist(), test["dx"].tolist(), probs)
        run.predictions_path(kind).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(run.predictions_path(kind), index=False)
    return run


def test_example_rows_carry_image_mask_and_every_map(tiny_run):
    trained = interpretability.load_models(tiny_run)
    rows = interpretability.example_rows(tiny_run, trained, per_class=1)
    assert rows and len(rows) == len({row["true"] for row in rows})
    for row in rows:
        assert row["image"].shape == (32, 32, 3) and row["mask"].shape == (32, 32) and row["mask"].any()
        assert row["maps"]["attention, feature grid"].shape == (1, 1)  # 32 px / 32
        for name in interpretability.METHODS[1:] + ("attention, heatmap", "attention, overlay"):
            assert row["maps"][name].shape == (32, 32), name
    assert set(interpretability.PANEL_STYLES) <= set(rows[0]["maps"])


def test_maps_by_batch_covers_every_test_image_with_a_mask(tiny_run):
    from lesionscan.analysis import agreement

    trained = interpretability.load_models(tiny_run)
    parts = list(interpretability.maps_by_batch(tiny_run, trained, batch_size=7, progress=False))
    frames = pd.concat([frame for frame, _, _ in parts])
    assert sorted(frames["image_id"]) == sorted(tiny_run.read_predictions("baseline")["image_id"])
    for frame, maps, masks in parts:
        assert set(maps) == set(interpretability.METHODS)
        assert all(m.shape == masks.shape == (len(frame), 32, 32) for m in maps.values())
    scores = pd.concat([agreement.agreement_scores(maps, masks, frame["image_id"].tolist(), frame["dx"].tolist())
                        for frame, maps, masks in parts])
    assert set(interpretability.METHODS) | set(agreement.REFERENCE_METHODS) == set(scores["method"])

    scored, likeness = interpretability.score_test_subset(tiny_run, trained, batch_size=7, progress=False)
    key = ["image_id", "method", "metric"]
    pd.testing.assert_frame_equal(scored.sort_values(key).reset_index(drop=True),
                                  scores.sort_values(key).reset_index(drop=True))
    assert set(likeness) == set(interpretability.METHODS)
    assert all(len(r) == len(frames) for r in likeness.values())


def test_without_masks_the_examples_remain_and_nothing_is_scored(tiny_run, tmp_path):
    """Data without HAM10000_segmentations_lesion_tschandl/: examples without outlines, no scores."""
    import shutil
    from pathlib import Path

    from lesionscan.data import ham10000
    from lesionscan.study.run_folder import Run

    copy = shutil.copytree(Path(tiny_run.params["data_dir"]), tmp_path / "data")
    shutil.rmtree(copy / ham10000.MASK_DIR)
    run = Run(dir=tiny_run.dir, params={**tiny_run.params, "data_dir": str(copy)})
    trained = interpretability.load_models(run)
    assert list(interpretability.maps_by_batch(run, trained, progress=False)) == []
    assert interpretability.score_test_subset(run, trained, progress=False) == (None, {})
    rows = interpretability.example_rows(run, trained, per_class=1)
    assert rows and all(row["mask"] is None for row in rows)


def test_map_scores_are_cached_under_both_models_keys(tiny_run, monkeypatch):
    trained = interpretability.load_models(tiny_run)
    calls = []
    real = interpretability.score_test_subset

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(interpretability, "score_test_subset", counting)
    first, likeness = interpretability.cached_scores(tiny_run, trained, batch_size=64, progress=False)
    again, likeness_again = interpretability.cached_scores(tiny_run, trained, batch_size=64, progress=False)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    assert set(likeness_again) == set(likeness)
    for method in likeness:
        np.testing.assert_array_equal(likeness[method], likeness_again[method])
    from lesionscan.study.run_folder import Run

    other = Run(dir=tiny_run.dir, params=dict(tiny_run.params, attention_heads=3))  # another SA model's key
    interpretability.cached_scores(other, trained, batch_size=64, progress=False)
    assert len(calls) == 2
