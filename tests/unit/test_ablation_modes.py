"""Chapter 5's two ablation modes: variants trained end to end, or heads on the baseline's frozen backbone."""

import numpy as np
import pytest

from lesionscan.core import parameters
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
    experiments.copy_backbone(source, target)
    for layer in networks.backbone_layers(target):
        for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(target.get_layer("predictions").get_weights(), head_before):
        np.testing.assert_array_equal(a, b)
