"""The study's parameters: one set of defaults, typed sections, and the named profiles.

Users see flat names (``--set epochs=3``, ``lesionscan profiles --show``,
``params.json``, the appendix); the package receives frozen sections (data,
split, pipeline, model, train, evaluation, interpretability) built from them
by :func:`sections`, so model building and training take one object, not a
dozen keywords. Every parameter is declared once, as a section field with its
default (the smoke profile's value) and a line of help; a profile is a set of
changes to those defaults. ``--set name=value`` is parsed by the type of the
profile's value, so a typo in a name or a value is an error, never a silently
ignored setting.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lesionscan.core.errors import ParameterError

# ---------------------------------------------------------------------------------------------------------------
# The sections: every parameter once, with its default (the smoke profile's value) and why it matters.


def _param(default, help: str, flat: str | None = None, choices: tuple[str, ...] | None = None,
           determines_model: bool = True, kinds: tuple[str, ...] | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           multiple_of: int | None = None):
    """A section field: its default, a line of help, the ``--set`` name if it differs, allowed values.

    ``choices`` (strings) or a range ``low``..``high`` (inclusive unless ``low_open``/``high_open``;
    ``multiple_of`` for sizes) bound what a field may hold, checked when a section is built, before
    a run touches anything. Every number has both bounds: none can ask for more memory than a
    machine has by accident.
    ``determines_model=False`` marks a field of a recipe's sections that cannot change a trained model
    (whether to use the training cache); ``kinds`` names the only model kinds a field reaches (the number
    of attention heads does not reach the baseline). Both keep a field out of a model's fingerprint
    where it cannot matter, so changing it retrains only the models it reaches.
    """
    return field(default=default, metadata={"help": help, "flat": flat, "choices": choices,
                                            "determines_model": determines_model, "kinds": kinds,
                                            "range": (low, high, low_open, high_open, multiple_of)})


def allowed(f: Field) -> str:
    """What field ``f`` accepts, in words ("an integer from 1 to 1000", "one of plateau, cosine")."""
    if f.metadata.get("choices"):
        return "one of " + ", ".join(f.metadata["choices"])
    if isinstance(f.default, bool):
        return "true or false"
    low, high, low_open, high_open, multiple = f.metadata.get("range") or (None,) * 5
    kind = "an integer" if isinstance(f.default, int) else "a number" if isinstance(f.default, float) else "text"
    if low is None and high is None:
        return kind
    if multiple:
        kind = f"a multiple of {multiple}"
    lower = f"above {low:g}" if low_open else f"at least {low:g}"
    upper = f"below {high:g}" if high_open else f"at most {high:g}"
    return f"{kind} from {low:g} to {high:g}" if not (low_open or high_open) else f"{kind} {lower} and {upper}"


def check_value(name: str, value: Any, f: Field) -> None:
    """Refuse ``value`` for field ``f`` (``--set`` name ``name``) unless its type, choice and range fit."""
    expected = allowed(f)
    choices = f.metadata.get("choices")
    if choices:
        if value not in choices:
            raise ParameterError(f"{name}={value!r}: expected {expected}")
        return
    default = f.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ParameterError(f"{name}={value!r}: expected {expected}")
    low, high, low_open, high_open, multiple = f.metadata.get("range") or (None,) * 5
    if low is None or isinstance(default, (bool, str)):
        return
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above or (multiple and value % multiple):
        raise ParameterError(f"{name}={value!r}: expected {expected}")


class _Section:
    """Checks every field's type, choices and range when a section is built, naming the ``--set`` name."""

    def __post_init__(self):
        for f in fields(self):
            check_value(f.metadata.get("flat") or f.name, getattr(self, f.name), f)


@dataclass(frozen=True)
class DataSection(_Section):
    """Which images the run reads."""

    source: str = _param("synthetic", "synthetic (generated offline) or directory (--data-dir)", flat="data",
                         choices=("synthetic", "directory"))
    synthetic_images: int = _param(2000, "images in the generated set (training cost depends on balance_target)",
                                   low=168, high=100_000)  # 168: synthetic.class_counts' 12 per class, twice
    synthetic_size: int = _param(128, "generated image width in px (height 3/4 of it)", low=32, high=1024)


@dataclass(frozen=True)
class SplitSection(_Section):
    """How images are assigned to train, validation and test."""

    protocol: str = _param("seed", "seed (the report's), lesion or image (leaky)", flat="split_protocol",
                           choices=("seed", "lesion", "image"))
    val_fraction: float = _param(0.15, "validation share", low=0, high=0.5, low_open=True)
    test_fraction: float = _param(0.15, "test share", low=0, high=0.5, low_open=True)


@dataclass(frozen=True)
class PipelineSection(_Section):
    """What the network is fed: size, batches, augmentation and class balance."""

    image_size: int = _param(96, "square input side in px (ResNet50 feature map = size / 32)",
                             low=32, high=512, multiple_of=32)
    batch_size: int = _param(32, "images per batch", low=1, high=1024)
    augment: bool = _param(True, "rotation, flips, zoom, brightness, shear on training data")
    balance_target: int = _param(30, "training images per class per epoch (0 = no balancing)", low=0, high=100_000)


@dataclass(frozen=True)
class ModelSection(_Section):
    """The network's options shared by every kind (models.KINDS)."""

    weights: str = _param("none", "imagenet, none or a path to ResNet50 no-top weights")
    dropout: float = _param(0.5, "dropout before the classifier", low=0, high=1, high_open=True)
    l2: float = _param(1e-4, "L2 on the classifier's kernel (0 = none)", low=0, high=1)
    attention_heads: int = _param(16, "K in the soft-attention equation",
                                  kinds=("soft_attention", "soft_attention_public", "multiscale"), low=1, high=256)
    gamma_init: float = _param(1.0, "initial value of the learnable attention scale",
                               kinds=("soft_attention", "multiscale"), low=-100, high=100)
    bn_momentum: float = _param(0.9, "batch-norm momentum; short from-scratch training needs < Keras' 0.99",
                                low=0, high=1, high_open=True)

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from pretrained weights (anything but "none")."""
        return str(self.weights).lower() != "none"

    @property
    def weights_file(self) -> Path | None:
        """The ResNet50 weights file ``weights`` names (None for "none" and "imagenet")."""
        return weights_file(self.weights)


def weights_file(weights: str | None) -> Path | None:
    """The file a ``weights`` value names, ``~`` expanded; None for "none" and "imagenet" (one reading for all)."""
    if weights is None or str(weights).lower() in ("none", "imagenet"):
        return None
    return Path(weights).expanduser()


@dataclass(frozen=True)
class TrainSection(_Section):
    """The training schedule (see model.train)."""

    schedule: str = _param("auto", "auto: two-phase with pretrained weights, full otherwise",
                           choices=("auto", "two-phase", "full"))
    epochs: int = _param(6, "single-phase (full) training epochs", low=1, high=1000)
    epochs_phase1: int = _param(10, "frozen-backbone epochs (two-phase)", low=0, high=1000)
    epochs_phase2: int = _param(20, "epochs with the last unfreeze_fraction of the backbone trainable",
                                low=0, high=1000)
    lr_full: float = _param(1e-3, "learning rate of full training", low=0, high=1, low_open=True)
    lr_phase1: float = _param(1e-4, "learning rate of phase 1", low=0, high=1, low_open=True)
    lr_phase2: float = _param(1e-5, "learning rate of phase 2", low=0, high=1, low_open=True)
    unfreeze_fraction: float = _param(0.4, "share of backbone layers phase 2 trains", low=0, high=1)
    label_smoothing: float = _param(0.1, "label smoothing of the cross-entropy", low=0, high=1, high_open=True)
    early_stopping_patience: int = _param(3, "epochs without a better validation loss before stopping",
                                          low=0, high=1000)
    lr_schedule: str = _param("plateau", "plateau: lower the rate when the validation loss stalls; cosine: decay it "
                                         "from the phase's rate towards 0 over the phase's epochs",
                              choices=("plateau", "cosine"))
    lr_patience: int = _param(2, "epochs without a better validation loss before lowering the rate (plateau)",
                              low=0, high=1000)
    lr_factor: float = _param(0.2, "factor the learning rate is lowered by (plateau)",
                              low=0, high=1, low_open=True, high_open=True)
    class_weights: bool = _param(True, "weight the loss by the classes an epoch contains")
    cache_features: bool = _param(True, "phase 1: compute the frozen backbone's features once, train the head on them")
    cache_draws: int = _param(1, "training-set passes (balanced draw + augmentation) cached for phase 1",
                              low=1, high=100)
    cache_max_gb: float = _param(16.0, "feature cache limit (also at most half the RAM); above it phase 1 uses images",
                                 low=0, high=4096, low_open=True)
    deterministic: bool = _param(True, "TensorFlow op determinism: same seed, same metrics")
    # A strategy changes the numbers (batch-norm statistics per replica, over its share of the batch; gradients
    # summed across replicas), so the value enters the model's fingerprint: a model trained with distribute=none
    # is not reused for distribute=mirrored, nor the other way round. The value is keyed as set, not as resolved
    # (auto is auto on one GPU and on four), as the precision policy (mixed float16 on a GPU) is not keyed
    # either: the cache describes a recipe, not a machine; each model's metrics record the strategy it ran under.
    distribute: str = _param("auto", "auto: mirrored when more than one GPU is visible, else none; mirrored: "
                                     "TensorFlow's MirroredStrategy over every GPU; none: one device; batch_size "
                                     "is the global batch, split between the devices",
                             choices=("auto", "none", "mirrored"))
    training_cache: bool = _param(True, "reuse a model trained before under the same recipe, data, split and code "
                                        "(ARTIFACTS/.cache/training/; --no-cache sets false)", determines_model=False)

    def phases(self, pretrained: bool) -> list[tuple[str, int, float]]:
        """(phase, epochs, learning rate) in order, with schedule "auto" resolved by ``pretrained``."""
        two_phase = self.schedule == "two-phase" or (self.schedule == "auto" and pretrained)
        if two_phase:
            plan = [("frozen", self.epochs_phase1, self.lr_phase1), ("finetune", self.epochs_phase2, self.lr_phase2)]
        else:
            plan = [("full", self.epochs, self.lr_full)]
        return [(name, int(n), float(lr)) for name, n, lr in plan if n > 0]


@dataclass(frozen=True)
class EvaluationSection(_Section):
    """How results are scored and what else chapter 5 trains."""

    bootstrap_resamples: int = _param(1000, "test-set resamples for every 95 % interval", low=10, high=100_000)
    ablation_models: str = _param("multiscale,class_attention,soft_attention_public",
                                  "model kinds trained beside the two main models, comma-separated")
    ablation_mode: str = _param("shared_backbone", "shared_backbone: each variant's attention and head trained on "
                                "the baseline's frozen backbone (seconds); full: each variant trained end to end "
                                "(the report's)", choices=("shared_backbone", "full"))
    ablation_head_epochs: int = _param(8, "shared_backbone mode: epochs of each head on the cached features",
                                       low=1, high=1000)
    ablation_seeds: int = _param(3, "shared_backbone mode: seeds per variant (the run's seed and the next ones)",
                                 low=1, high=100)
    extra_seeds: str = _param("", "more training seeds for both main models, comma-separated (e.g. 1,2)")
    leakage_protocols: str = _param("image", "protocols the SA model is also trained and tested under")
    external_test_dir: str = _param("", "a labelled folder outside the run's data (ISIC 2018 Task 3 layout, or "
                                        "HAM10000's) chapter 7 scores both main models on; empty: none")

    @property
    def ablation_kinds(self) -> list[str]:
        return as_list(self.ablation_models)

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in as_list(self.extra_seeds)]

    @property
    def protocols(self) -> list[str]:
        return as_list(self.leakage_protocols)


@dataclass(frozen=True)
class InterpretabilitySection(_Section):
    """What chapter 6 shows."""

    explain_per_class: int = _param(2, "test images per class shown with their maps: correct first, then mistakes",
                                    low=0, high=100)


SECTIONS = {"data": DataSection, "split": SplitSection, "pipeline": PipelineSection, "model": ModelSection,
            "train": TrainSection, "evaluation": EvaluationSection, "interpretability": InterpretabilitySection}


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines one trained model: what a training cache would fingerprint.

    The data's content and the split's rows are not parameters; the run
    adds them (its data checksum and split file) where a result is keyed.
    """

    kind: str
    seed: int
    data: DataSection
    split: SplitSection
    pipeline: PipelineSection
    model: ModelSection
    train: TrainSection
    backbone_from: str | None = None  # a trained model of the run whose (frozen) backbone this one starts from

    def fingerprint(self) -> dict[str, Any]:
        """The recipe as plain data, without the fields that cannot change the model (for a cache key).

        The data section is left out: the data enter a key by their checksum,
        which is what the images are, whichever way they were made or named.
        """
        out: dict[str, Any] = {"kind": self.kind, "seed": self.seed, "backbone_from": self.backbone_from}
        for name in ("split", "pipeline", "model", "train"):
            section = getattr(self, name)
            out[name] = {f.name: getattr(section, f.name) for f in fields(section)
                         if f.metadata.get("determines_model", True)
                         and self.kind in (f.metadata.get("kinds") or (self.kind,))}
        return out


@dataclass(frozen=True)
class StudyParameters:
    """A run's parameters as frozen sections: built from the flat names in one place (:func:`sections`)."""

    profile: str
    seed: int
    data: DataSection
    split: SplitSection
    pipeline: PipelineSection
    model: ModelSection
    train: TrainSection
    evaluation: EvaluationSection
    interpretability: InterpretabilitySection

    def recipe(self, kind: str, seed: int | None = None, protocol: str | None = None) -> TrainingRecipe:
        """The recipe of model ``kind``; ``seed`` and ``protocol`` default to the run's (chapter 5 varies them)."""
        split = self.split if protocol is None else replace(self.split, protocol=protocol)
        return TrainingRecipe(kind=kind, seed=self.seed if seed is None else int(seed), data=self.data, split=split,
                              pipeline=self.pipeline, model=self.model, train=self.train)

    @property
    def bootstrap(self) -> dict[str, int]:
        """The keywords every interval of the book is computed with: ``n_resamples`` and ``seed``."""
        return {"n_resamples": self.evaluation.bootstrap_resamples, "seed": self.seed}


def _flat_fields() -> dict[str, tuple[str, Field]]:
    """Flat ``--set`` name -> (section name, dataclass field)."""
    out = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            out[f.metadata.get("flat") or f.name] = (section, f)
    return out


_FLAT = _flat_fields()
SEED_HELP = "seeds data generation, split, sampling, initialisation"
DEFAULTS: dict[str, Any] = {"seed": 0, **{name: f.default for name, (_, f) in _FLAT.items()}}


def help_text(name: str) -> str:
    """The one-line explanation of parameter ``name`` and what it accepts (for ``profiles --show``)."""
    if name == "seed":
        return f"{SEED_HELP} [an integer from 0 to {SEED_MAX}]"
    f = _FLAT[name][1]
    accepts = allowed(f)
    return f.metadata["help"] + ("" if accepts == "text" else f" [{accepts}]")  # free text explains itself


def sections(params: Mapping[str, Any]) -> StudyParameters:
    """The typed sections of a flat parameter dict (``resolve``'s result, or a run's ``params.json``)."""
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for name, (section, f) in _FLAT.items():
        if name in params:
            values[section][f.name] = params[name]
    built = {section: cls(**values[section]) for section, cls in SECTIONS.items()}
    return StudyParameters(profile=str(params.get("profile", "")), seed=int(params.get("seed", 0)), **built)


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(DEFAULTS),
    # Real HAM10000 at reduced resolution, random-initialised, sized for an hour on a 2-core CPU whose bare
    # ResNet50 trains at 30 images/s (issue 12): three trainings (baseline, soft attention, the leakage audit's
    # image split) of 10 epochs x 2,100 images. A cosine decay over those 10 epochs, not plateau cuts: on the
    # validation set the plateau schedule cut the rate after epoch 3 of 16, on noise, and the model then
    # stalled; every epoch runs (patience 10) and the epoch with the best validation loss is kept.
    "cpu": dict(
        DEFAULTS,
        data="directory",
        image_size=96,
        balance_target=300,
        epochs=10,
        lr_schedule="cosine",
        early_stopping_patience=10,
        leakage_protocols="image",
    ),
    # The report's protocol at full size; meant for a GPU with ImageNet weights.
    "paper": dict(
        DEFAULTS,
        ablation_mode="full",
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
    "paper": "real HAM10000, 224 px, ImageNet weights, two-phase training up to 70 epochs: the report's protocol, "
             "for a GPU",
}

_CHOICES = {name: f.metadata["choices"] for name, (_, f) in _FLAT.items() if f.metadata["choices"]}

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
        expected = "an integer" if name == "seed" else allowed(_FLAT[name][1])
        raise ParameterError(f"--set {name}={text}: expected {expected} (the profile has {default!r})") from None
    return text


def as_list(value) -> list[str]:
    """A comma-separated parameter (``"image,lesion"``) as a list; an empty string means none."""
    return [item.strip() for item in str(value).split(",") if item.strip()]


SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit
MODEL_KINDS = ("baseline", "soft_attention", "soft_attention_public", "multiscale", "class_attention")
MIN_TRAIN_SHARE = 0.4  # what val_fraction + test_fraction must leave for training


def check_seed(name: str, text) -> None:
    """A seed (``seed``, one of ``extra_seeds``, ``--seed``): an integer from 0 to :data:`SEED_MAX`."""
    if isinstance(text, bool) or not (isinstance(text, int) or str(text).isdigit()) or not 0 <= int(text) <= SEED_MAX:
        raise ParameterError(f"{name}={text!r}: expected an integer from 0 to {SEED_MAX}")


def field_of(name: str) -> Field:
    """The declaration of flat parameter ``name`` (its default, help, choices and range)."""
    return _FLAT[name][1]


def _check(params: dict[str, Any]) -> None:
    """Reject values outside their allowed choices or ranges, naming the parameter: before a run starts."""
    check_seed("seed", params["seed"])
    sections(params)  # each field's type, choices and range, checked where it is declared
    if params["val_fraction"] + params["test_fraction"] > 1 - MIN_TRAIN_SHARE:
        raise ParameterError(f"val_fraction={params['val_fraction']} and test_fraction={params['test_fraction']}: "
                             f"expected together at most {1 - MIN_TRAIN_SHARE:g}, leaving "
                             f"{MIN_TRAIN_SHARE:.0%} of the images for training")
    if params["epochs_phase1"] + params["epochs_phase2"] < 1:
        raise ParameterError("epochs_phase1=0 and epochs_phase2=0: expected at least one epoch of two-phase training")
    for protocol in as_list(params["leakage_protocols"]):
        if protocol not in _CHOICES["split_protocol"]:
            raise ParameterError(f"leakage_protocols: {protocol!r} is not a split protocol; expected some of "
                                 f"{', '.join(_CHOICES['split_protocol'])}, comma-separated")
    for kind in as_list(params["ablation_models"]):
        if kind not in MODEL_KINDS:
            raise ParameterError(f"ablation_models: {kind!r} is not a model kind; expected some of "
                                 f"{', '.join(MODEL_KINDS)}, comma-separated (or empty for none)")
    for seed in as_list(params["extra_seeds"]):
        check_seed("extra_seeds", seed)


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
