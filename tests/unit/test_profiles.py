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
    (["epochs=three"], "epochs=three: expected an integer from 1 to 1000"),
    (["augment=maybe"], "augment=maybe: expected true or false"),
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


# Issue 13: values that passed the start-up check and failed minutes later inside a chapter, or with a traceback.
@pytest.mark.parametrize("override, message", [
    ("epochs=-1", r"epochs=-1: expected an integer from 1 to 1000"),
    ("epochs=2.5", r"epochs=2.5: expected an integer from 1 to 1000"),
    ("image_size=33", r"image_size=33: expected a multiple of 32 from 32 to 512"),
    ("image_size=4096", r"image_size=4096: expected a multiple of 32 from 32 to 512"),
    ("balance_target=-1", r"balance_target=-1: expected an integer from 0 to 100000"),
    ("lr_full=nan", r"lr_full=nan: expected a number above 0 and at most 1"),
    ("lr_full=inf", r"lr_full=inf: expected a number above 0 and at most 1"),
    ("lr_full=-1", r"lr_full=-1.0: expected a number above 0 and at most 1"),
    ("bootstrap_resamples=0", r"bootstrap_resamples=0: expected an integer from 10 to 100000"),
    ("early_stopping_patience=-1", r"early_stopping_patience=-1: expected an integer from 0 to 1000"),
    ("explain_per_class=-1", r"explain_per_class=-1: expected an integer from 0 to 100"),
    ("val_fraction=0", r"val_fraction=0.0: expected a number above 0 and at most 0.5"),
    ("test_fraction=0.9", r"test_fraction=0.9: expected a number above 0 and at most 0.5"),
    ("ablation_models=bogus", r"ablation_models: 'bogus' is not a model kind; expected some of baseline, "),
    ("leakage_protocols=image,random", r"leakage_protocols: 'random' is not a split protocol"),
    ("seed=-1", r"seed=-1: expected an integer from 0 to 4294967295"),
    ("seed=4294967296", r"seed=4294967296: expected an integer from 0 to 4294967295"),
    ("extra_seeds=1,-2", r"extra_seeds='-2': expected an integer from 0 to 4294967295"),
    ("synthetic_images=10000000", r"synthetic_images=10000000: expected an integer from 168 to 100000"),
    ("synthetic_size=40000", r"synthetic_size=40000: expected an integer from 32 to 1024"),
    ("batch_size=0", r"batch_size=0: expected an integer from 1 to 1024"),
    ("lr_factor=1", r"lr_factor=1.0: expected a number above 0 and below 1"),
    ("dropout=1", r"dropout=1.0: expected a number at least 0 and below 1"),
    ("cache_max_gb=0", r"cache_max_gb=0.0: expected a number above 0 and at most 4096"),
])
def test_every_value_is_checked_at_start_up_with_its_range(override, message):
    with pytest.raises(ParameterError, match=message):
        parameters.resolve("smoke", [override])


def test_cross_checks_and_typed_overrides_from_a_notebook():
    with pytest.raises(ParameterError, match="expected together at most 0.6, leaving 40% of the images"):
        parameters.resolve("smoke", ["val_fraction=0.3", "test_fraction=0.35"])
    with pytest.raises(ParameterError, match="epochs_phase1=0 and epochs_phase2=0"):
        parameters.resolve("paper", ["epochs_phase1=0", "epochs_phase2=0"])
    with pytest.raises(ParameterError, match="augment=1: expected true or false"):
        parameters.resolve("smoke", {"augment": 1})  # a notebook's overrides are typed: no parsing, same checks
    with pytest.raises(ParameterError, match="epochs=True: expected an integer"):
        parameters.resolve("smoke", {"epochs": True})
    for profile in parameters.PROFILES:  # every profile's own values pass
        parameters.resolve(profile)


def test_every_number_has_both_bounds():
    """No parameter can ask for an unbounded amount of memory or time by accident."""
    for name, (_, f) in parameters._FLAT.items():
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
            low, high = f.metadata["range"][:2]
            assert low is not None and high is not None, name


def test_the_synthetic_minimum_is_the_generators():
    from lesionscan.data import synthetic

    low = parameters.field_of("synthetic_images").metadata["range"][0]
    synthetic.class_counts(low)
    with pytest.raises(ParameterError):
        synthetic.class_counts(low - 1)
