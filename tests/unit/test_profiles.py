"""Profiles and --set overrides: typed, checked, and loud about typos."""

import pytest

from lesionscan.core import parameters
from lesionscan.core.errors import ParameterError


def test_smoke_is_offline_and_small():
    p = parameters.resolve("smoke")
    assert p["data"] == "synthetic" and p["weights"] == "none" and p["profile"] == "smoke"
    assert p["image_size"] <= 128


def test_paper_follows_the_report():
    p = parameters.resolve("paper")
    assert p["image_size"] == 224 and p["weights"] == "imagenet"
    assert p["label_smoothing"] == 0.1 and p["lr_phase1"] == 1e-4 and p["unfreeze_fraction"] == 0.4
    assert p["epochs_phase1"] + p["epochs_phase2"] <= 70


def test_overrides_are_parsed_by_type():
    p = parameters.resolve("smoke", ["epochs=3", "augment=false", "lr_full=0.01", "split_protocol=image"])
    assert p["epochs"] == 3 and p["augment"] is False and p["lr_full"] == 0.01 and p["split_protocol"] == "image"
    assert parameters.resolve("smoke", {"epochs": 2})["epochs"] == 2


@pytest.mark.parametrize("overrides, message", [
    (["epoch=3"], "unknown parameter 'epoch' .did you mean epochs"),
    (["epochs=three"], "epochs=three: expected a int"),
    (["augment=maybe"], "augment=maybe: expected a true/false"),
    (["epochs"], "expected name=value"),
    (["split_protocol=random"], "split_protocol='random': expected one of seed, lesion, image"),
    (["image_size=16"], "image_size=16"),
])
def test_bad_overrides_name_the_parameter(overrides, message):
    with pytest.raises(ParameterError, match=message):
        parameters.resolve("smoke", overrides)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ParameterError, match="unknown profile 'fast': expected one of smoke, cpu, paper"):
        parameters.resolve("fast")
