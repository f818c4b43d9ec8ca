"""Chapter 5's two ablation modes: variants trained end to end, or heads on the baseline's frozen backbone."""

import numpy as np
import pytest

from lesionscan.core import parameters
from lesionscan.core.classes import CLASSES
from lesionscan.core.parameters import ModelSection
from lesionscan.model import networks
from lesionscan.study import experiments, results, run_folder


def _run(tmp_path, **flat):
    params = parameters.resolve("smoke", {"ablation_models": "multiscale", **flat})
    params["data_dir"] = str(tmp_path / "data")
    return run_folder.Run(dir=tmp_path / "run", params=params)


def test_shared_backbone_mode_plans_heads_on_the_baselines_backbone(tmp_path):
    run = _run(tmp_path, ablation_seeds=2)
    plan = experiments.planned_trainings(run)
    heads = [name for name in plan if "_head" in name]
    assert heads == ["baseline_head", "baseline_head_seed1", "soft_attention_head", "soft_attention_head_seed1",
                     "multiscale_head", "multiscale_head_seed1"]
    recipe = plan["multiscale_head_seed1"]
    assert recipe.backbone_from == "baseline" and recipe.kind == "multiscale" and recipe.seed == 1
    assert recipe.train.phases(pretrained=False) == [("frozen", 8, run.parameters.train.lr_full)]
    assert recipe.fingerprint() != run.parameters.recipe("multiscale", seed=1).fingerprint()
    assert all(results.trained_by(name) == "05_ablation" for name in heads)
    assert "shared backbone" in experiments.ablation_mode_text(run) and "2 seeds (0, 1)" in \
        experiments.ablation_mode_text(run)


def test_full_mode_trains_every_variant_end_to_end(tmp_path):
    run = _run(tmp_path, ablation_mode="full")
    plan = experiments.planned_trainings(run)
    assert list(plan) == ["baseline", "soft_attention", "multiscale", "soft_attention_image"]
    assert plan["multiscale"].backbone_from is None
    assert "Ablation mode: full" in experiments.ablation_mode_text(run)
    assert parameters.resolve("paper")["ablation_mode"] == "full"
    assert parameters.resolve("cpu")["ablation_mode"] == "shared_backbone"
    with pytest.raises(Exception, match="ablation_mode='fast': expected one of shared_backbone, full"):
        parameters.resolve("smoke", {"ablation_mode": "fast"})


def test_copy_backbone_gives_the_backbone_and_nothing_else():
    source = networks.build_model("baseline", 32, ModelSection())
    target = networks.build_model("soft_attention", 32, ModelSection(attention_heads=2))
    head_before = [w.copy() for w in target.get_layer("predictions").get_weights()]
    networks.copy_backbone(source, target)
    for layer in networks.backbone_layers(target):
        for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(target.get_layer("predictions").get_weights(), head_before):
        np.testing.assert_array_equal(a, b)


def test_shared_backbone_features_equal_each_heads_own_and_are_computed_once(synthetic_set, tmp_path, monkeypatch):
    """Heads of one seed share one pass over the training draw; what they get equals their own extraction."""
    from lesionscan.data import ham10000
    from lesionscan.model import pipeline, train
    from lesionscan.study import shared_backbone

    frame = ham10000.load_dataset(synthetic_set(200), verify_images=False).head(40)
    paths, labels = frame["image_path"].tolist(), frame["dx"].map(CLASSES.index).to_numpy()
    baseline = networks.build_model("baseline", 32, ModelSection())
    baseline.save(tmp_path / "baseline.keras")
    recipe = parameters.sections(parameters.resolve("smoke", {"image_size": 32, "batch_size": 8})).recipe("multiscale")
    def train_ds():  # a new pipeline starts at epoch 0's draw; each pass over one moves on to the next draw
        return pipeline.make_dataset(paths, labels, 32, 8, training=True, balance_target=3, seed=recipe.seed)

    val_ds = pipeline.make_dataset(paths[:10], labels[:10], 32, 8, training=False)
    test_ds = pipeline.make_dataset(paths[10:25], labels[10:25], 32, 8, training=False)

    calls = []
    extract = train.extract_features
    monkeypatch.setattr(train, "extract_features", lambda *a, **k: calls.append(1) or extract(*a, **k))
    shared = shared_backbone.of(tmp_path / "baseline.keras", max_gb=1)
    heads = {}
    for kind in ("soft_attention", "multiscale"):
        model = networks.build_model(kind, 32, ModelSection(attention_heads=2))
        networks.copy_backbone(shared.backbone, model)
        feature_model, _ = train.split_at_backbone(model)
        train_cache, val_cache = shared.training(recipe, train_ds(), val_ds)(feature_model)
        heads[kind] = model, feature_model, train_cache, val_cache
    assert len(calls) == 2  # one training draw and one validation pass, for both kinds

    model, feature_model, train_cache, val_cache = heads["multiscale"]
    own_train = extract(feature_model, train_ds())
    own_val = extract(feature_model, val_ds)
    for mine, theirs in ((train_cache, own_train), (val_cache, own_val)):
        assert len(mine.features) == 2  # multi-scale reads two backbone stages, in the head's input order
        for a, b in zip(mine.features, theirs.features):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(mine.targets[0], theirs.targets[0])
    np.testing.assert_allclose(shared.test_probabilities(model, recipe, test_ds),
                               model.predict(test_ds, verbose=0), atol=1e-5)
