"""Named parameter sets for the whole study, kept in one place.

A profile fixes every knob of a run; ``--set name=value`` overrides single
knobs, parsed by the type of the profile's value, so a typo in a name or a
value is an error, never a silently ignored setting.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from lesionscan.core.errors import ParameterError

# Every parameter, with the smoke profile's value and why it matters.
_SMOKE: dict[str, Any] = {
    # data
    "data": "synthetic",          # "synthetic" (generated offline) or "directory" (--data-dir)
    "synthetic_images": 2000,     # images in the generated set (training cost depends on balance_target)
    "synthetic_size": 128,        # generated image width in px (height 3/4 of it)
    "seed": 0,                    # seeds data generation, split, sampling, initialisation
    # split
    "split_protocol": "seed",     # "seed" (the report's), "lesion" or "image" (leaky)
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    # input pipeline
    "image_size": 96,             # square input side in px (ResNet50 feature map = size / 32)
    "batch_size": 32,
    "augment": True,              # rotation, flips, zoom, brightness, shear on training data
    "balance_target": 60,         # training images per class per epoch (0 = no balancing)
    "class_weights": True,
    # models
    "weights": "none",            # "imagenet", "none" or a path to ResNet50 no-top weights
    "dropout": 0.5,
    "l2": 1e-4,
    "attention_heads": 16,        # K in the soft-attention equation
    "gamma_init": 1.0,            # initial value of the learnable attention scale
    "bn_momentum": 0.9,           # batch-norm momentum; short from-scratch training needs < Keras' 0.99
    # training
    "schedule": "auto",           # "auto": two-phase with pretrained weights, full otherwise
    "epochs": 6,                  # single-phase ("full") training epochs
    "epochs_phase1": 10,          # frozen backbone
    "epochs_phase2": 20,          # last unfreeze_fraction of the backbone trainable
    "lr_full": 1e-3,
    "lr_phase1": 1e-4,
    "lr_phase2": 1e-5,
    "unfreeze_fraction": 0.4,
    "label_smoothing": 0.1,
    "early_stopping_patience": 3,
    "lr_patience": 2,
    "lr_factor": 0.2,
    "cache_features": True,       # phase 1: compute the frozen backbone's features once, train the head on them
    "deterministic": True,        # TensorFlow op determinism: same seed, same metrics
    # evaluation
    "bootstrap_resamples": 1000,  # test-set resamples for every 95 % interval
    "ablation_models": "multiscale,class_attention,soft_attention_public",  # trained beside the two main models
    "extra_seeds": "",            # more training seeds for both main models, comma-separated (e.g. "1,2")
    "leakage_protocols": "image",  # protocols the SA model is also trained and tested under
    # interpretability
    "explain_per_class": 2,       # test images per class shown with their maps: correct first, then mistakes
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(_SMOKE),
    # Real HAM10000 at reduced resolution, random-initialised, sized for a 2-core CPU in
    # well under an hour (0.035 s per image and step at 96 px; 300 images per class and epoch).
    "cpu": dict(
        _SMOKE,
        data="directory",
        image_size=96,
        balance_target=300,
        epochs=15,
        early_stopping_patience=5,
        lr_patience=2,
        leakage_protocols="image,lesion",
    ),
    # The report's protocol at full size; meant for a GPU with ImageNet weights.
    "paper": dict(
        _SMOKE,
        data="directory",
        image_size=224,
        batch_size=32,
        balance_target=2000,
        weights="imagenet",
        bn_momentum=0.99,
        extra_seeds="1,2",
        leakage_protocols="image,lesion",
        epochs_phase1=20,
        epochs_phase2=50,
        epochs=70,
        early_stopping_patience=8,
        lr_patience=3,
    ),
}

PROFILE_DESCRIPTIONS = {
    "smoke": "synthetic data, 96 px, random-initialised ResNet50 trained end to end: minutes on a laptop CPU",
    "cpu": "real HAM10000 (--data-dir) at 96 px, random-initialised ResNet50 trained end to end: a 2-core CPU run",
    "paper": "real HAM10000, 224 px, ImageNet weights, two-phase training up to 70 epochs: the report's protocol, for a GPU",
}

_CHOICES = {
    "data": ("synthetic", "directory"),
    "split_protocol": ("seed", "lesion", "image"),
    "schedule": ("auto", "two-phase", "full"),
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_value(name: str, text: str, default: Any) -> Any:
    """Parse ``text`` as the type of the profile's ``default`` for parameter ``name``."""
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise ParameterError(f"--set {name}={text}: expected a {kind} value (the profile has {default!r})") from None
    return text


def as_list(value) -> list[str]:
    """A comma-separated parameter (``"image,lesion"``) as a list; an empty string means none."""
    return [item.strip() for item in str(value).split(",") if item.strip()]


def _check(params: dict[str, Any]) -> None:
    """Reject values outside their allowed choices or ranges, naming the parameter."""
    for name, choices in _CHOICES.items():
        if params[name] not in choices:
            raise ParameterError(f"{name}={params[name]!r}: expected one of {', '.join(choices)}")
    if params["image_size"] < 32:
        raise ParameterError(f"image_size={params['image_size']}: expected at least 32 (ResNet50 downsamples by 32)")
    for name in ("val_fraction", "test_fraction", "unfreeze_fraction", "dropout", "label_smoothing"):
        if not 0 <= params[name] < 1:
            raise ParameterError(f"{name}={params[name]}: expected a fraction in [0, 1)")
    for protocol in as_list(params["leakage_protocols"]):
        if protocol not in _CHOICES["split_protocol"]:
            raise ParameterError(f"leakage_protocols: {protocol!r} is not a split protocol; expected some of "
                                 f"{', '.join(_CHOICES['split_protocol'])}, comma-separated")
    for seed in as_list(params["extra_seeds"]):
        if not seed.isdigit():
            raise ParameterError(f"extra_seeds: {seed!r} is not a seed; expected integers, comma-separated (e.g. 1,2)")
    for name in ("batch_size", "attention_heads", "synthetic_images", "synthetic_size"):
        if params[name] < 1:
            raise ParameterError(f"{name}={params[name]}: expected a positive integer")


def split_assignment(text: str) -> tuple[str, str]:
    """Split ``name=value`` from the command line; a missing '=' is an error."""
    if "=" not in text:
        raise ParameterError(f"--set {text}: expected name=value, for example --set epochs=3")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def resolve(profile: str, overrides: Iterable[str] | dict[str, Any] = ()) -> dict[str, Any]:
    """The full parameter set of ``profile`` with ``overrides`` applied and checked.

    ``overrides`` is either ``name=value`` strings (from ``--set``) or a dict
    of already-typed values (from a notebook's parameters cell).
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    params = dict(PROFILES[profile])
    items = overrides.items() if isinstance(overrides, dict) else (split_assignment(o) for o in overrides)
    for name, value in items:
        if name not in params:
            near = difflib.get_close_matches(name, params, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ParameterError(f"unknown parameter {name!r}{hint}; known parameters: {', '.join(sorted(params))}")
        params[name] = _parse_value(name, value, params[name]) if isinstance(value, str) else value
    params["profile"] = profile
    _check(params)
    return params
