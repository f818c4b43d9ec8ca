"""The study's experiments: train one model on a run's split and score it, and chapter 5's variations of that.

Chapters 3 and 4 train the two main models, chapter 5 the variants (model
kinds, training seeds, split protocols); each is one
:func:`train_and_evaluate` call with a :class:`~lesionscan.core.parameters.TrainingRecipe`
under a name (``multiscale``, ``soft_attention_seed1``, ``soft_attention_image``...),
so every variant is trained and tested exactly as the main models are. The
test subset is used after training only: early stopping and the learning-rate
schedule see the validation subset. A model already trained in this run (its
metrics on disk) is read back, not trained again; a run with other
parameters starts from an empty folder (``run_folder``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lesionscan.analysis import evaluation, resampling
from lesionscan.core import atomic
from lesionscan.core.classes import CLASSES
from lesionscan.core.parameters import TrainingRecipe
from lesionscan.model import distribution, networks, pipeline, train
from lesionscan.study import shared_backbone, training_cache
from lesionscan.study.results import MAIN_MODELS
from lesionscan.study.run_folder import Run

LEAKAGE_MODEL = "soft_attention"  # the model the leakage audit trains under each protocol


@dataclass
class Result:
    """What one trained model produced, as saved under the run folder."""

    model: object
    history: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict


def subsets(run: Run, protocol: str | None = None) -> dict[str, pd.DataFrame]:
    """A split joined with image paths, one frame per subset."""
    frame = run.split_table(protocol).merge(
        run.dataset[["image_id", "image_path"]], on="image_id")
    return {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val", "test")}


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["dx"].map(CLASSES.index).to_numpy()


def eval_dataset(recipe: TrainingRecipe, frame: pd.DataFrame):
    """A dataset in the frame's order, without augmentation (validation, test, explanations)."""
    return pipeline.make_dataset(frame["image_path"].tolist(), _labels(frame), image_size=recipe.pipeline.image_size,
                                 batch_size=recipe.pipeline.batch_size, training=False, augment=False,
                                 balance_target=None, seed=recipe.seed)


def train_and_evaluate(run: Run, recipe: TrainingRecipe, name: str | None = None) -> Result:
    """Train ``recipe`` on its split's training subset, save everything as ``name``, score it on the test subset.

    ``name`` defaults to the model kind; chapter 5 names its variants
    (``soft_attention_seed1``, ``soft_attention_image``). With the training
    cache on (``training_cache``), a model trained before under the same key
    (recipe, data, split, code: ``study.training_cache``) is reused instead,
    and its metrics say so and when it was trained.
    """
    name = name or recipe.kind
    cache, key, inputs = None, None, None
    if recipe.train.training_cache:
        cache = training_cache.TrainingCache(run.training_cache_dir)
        inputs, key = _cache_key(run, recipe)
        entry = cache.lookup(key)
        if entry is not None:
            return _reuse(run, recipe, name, entry)
    started = time.monotonic()
    result = _train(run, recipe, name)
    seconds = time.monotonic() - started
    training = {"source": "trained in this run", "seconds": round(seconds, 1), "cache_entry": None}
    if cache is not None:
        entry = cache.store(key, inputs, {what: run.trained_path(name, what) for what in training_cache.FILES},
                            seconds)
        training["cache_entry"] = entry.key[:16] if entry is not None else None
    result.metrics["training"] = training
    atomic.write_json(run.metrics_path(name), result.metrics)
    return result


def _reuse(run: Run, recipe: TrainingRecipe, name: str, entry: training_cache.Entry) -> Result:
    """Copy a cache entry into the run under ``name``; its metrics name this run's data and the entry."""
    for what in ("model", "history", "predictions"):
        path = run.trained_path(name, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            training_cache.link_or_copy(entry.path(what), tmp)
    metrics = json.loads(entry.path("metrics").read_text())
    metrics.update(name=name, data=run.data_label, initialisation=run.weights_label,
                   training={"source": "reused from the training cache", "trained_at": entry.created,
                             "seconds": entry.seconds, "cache_entry": entry.key[:16]})
    atomic.write_json(run.metrics_path(name), metrics)
    print(f"{name}: reused from the training cache (entry {entry.key[:16]}, trained {entry.created} in "
          f"{entry.seconds:.0f} s); --no-cache trains it again", flush=True)
    return Result(model=None, history=pd.read_csv(run.history_path(name)),
                  predictions=pd.read_csv(run.predictions_path(name)), metrics=metrics)


def _train(run: Run, recipe: TrainingRecipe, name: str) -> Result:
    """Train, save, predict the test subset and score it (no cache involved)."""
    pipe = recipe.pipeline
    train.seed_everything(recipe.seed, deterministic=recipe.train.deterministic)
    train.configure_precision()  # mixed float16 on a GPU, float32 on a CPU
    parts = subsets(run, recipe.split.protocol)
    train_labels = _labels(parts["train"])
    train_ds = pipeline.make_dataset(parts["train"]["image_path"].tolist(), train_labels,
                                     image_size=pipe.image_size, batch_size=pipe.batch_size, training=True,
                                     augment=pipe.augment, balance_target=pipe.balance_target or None,
                                     seed=recipe.seed)
    class_weight = pipeline.epoch_class_weights(train_labels, pipe.balance_target) if recipe.train.class_weights \
        else None
    # Every variable (model, optimizer, metrics; the shared backbone loaded for chapter 5's heads) is created
    # under the strategy of ``distribute``, and ``fit`` runs under it; saving and testing need not.
    with distribution.training_scope(recipe.train.distribute) as strategy:
        model = networks.build_model(recipe.kind, pipe.image_size, recipe.model)
        shared = None
        if recipe.backbone_from:  # chapter 5's heads: one backbone's features, computed once for all of them
            shared = shared_backbone.of(run.model_path(recipe.backbone_from), recipe.train.cache_max_gb)
            networks.copy_backbone(shared.backbone, model)
        print(f"{name}: {model.count_params():,} parameters; {len(parts['train'])} training images, "
              f"{len(parts['val'])} validation images"
              + (f"; backbone of {recipe.backbone_from!r}, frozen" if recipe.backbone_from else ""), flush=True)
        val_ds = eval_dataset(recipe, parts["val"])
        history = train.train(model, train_ds, val_ds, recipe.train, pretrained=recipe.model.pretrained,
                              class_weight=class_weight,
                              features=shared.training(recipe, train_ds, val_ds) if shared is not None else None)

    with atomic.atomic_path(run.model_path(name)) as tmp:
        model.save(tmp)
    atomic.write_csv(run.history_path(name), history)

    test = parts["test"]
    test_ds = eval_dataset(recipe, test)
    if shared is not None:
        probs = shared.test_probabilities(model, recipe, test_ds)
    else:
        probs = model.predict(test_ds, verbose=0)
    predictions = evaluation.predictions_frame(test["image_id"].tolist(), test["dx"].tolist(), probs)
    atomic.write_csv(run.predictions_path(name), predictions)
    metrics = evaluation.compute_metrics(predictions)
    metrics.update(model=recipe.kind, name=name, seed=recipe.seed, split_protocol=recipe.split.protocol,
                   data=run.data_label, initialisation=run.weights_label, epochs_trained=int(len(history)),
                   distribution=distribution.describe(strategy))
    atomic.write_json(run.metrics_path(name), metrics)
    return Result(model=model, history=history, predictions=predictions, metrics=metrics)


def training_table(run: Run) -> pd.DataFrame:
    """Every model trained so far in this run: kind, seed, split, and whether trained here or reused (and when)."""
    rows = []
    for name, metrics in run.trained_metrics().items():
        training = metrics["training"]
        reused = training["source"] == "reused from the training cache"
        rows.append({"model": name, "kind": metrics.get("model"), "seed": metrics.get("seed"),
                     "split": metrics.get("split_protocol"),
                     "trained": f"reused (trained {training['trained_at']})" if reused else "in this run",
                     "seconds": training.get("seconds"), "cache entry": training.get("cache_entry")})
    return pd.DataFrame(rows, columns=["model", "kind", "seed", "split", "trained", "seconds", "cache entry"])


def training_sentence(metrics: dict) -> str:
    """Whether the model was trained in this run or reused from the cache, and when, as a sentence."""
    training = metrics.get("training") or {}
    if training.get("source") == "reused from the training cache":
        return (f"Reused from the training cache: trained {training['trained_at']} in {training['seconds']:.0f} s "
                f"under the same recipe, data, split and code (entry `{training['cache_entry']}`; "
                "`lesionscan study --no-cache` trains it again).")
    if training:
        return f"Trained in this run in {training['seconds']:.0f} s."
    return ""


def provenance_text(run: Run) -> str:
    """One line the book shows beside results: which data and initialisation produced them."""
    p = run.parameters
    return (f"*Results from {run.data_label}, {run.weights_label}, {p.pipeline.image_size} px, split protocol "
            f"`{p.split.protocol}`, seed {p.seed} (profile `{p.profile}`).*")


def provenance(run: Run, result: Result) -> str:
    """Provenance plus what training did (epochs and phases)."""
    per_phase = result.history.groupby("phase", sort=False).size()
    phases = ", ".join(f"{phase}: {n} epochs" for phase, n in per_phase.items())
    return (f"{provenance_text(run)}\n\nTrained {len(result.history)} epochs ({phases}); tested on "
            f"{result.metrics['n']} images. {training_sentence(result.metrics)}").rstrip()


def comparison_table(metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Models side by side (one column each), with the majority-class score in the last column.

    Every accuracy has to be read against always predicting the most
    frequent test class, so that score sits beside every table of metrics.
    """
    return _with_majority(evaluation.comparison_table(metrics_by_model), metrics_by_model)


def _with_majority(table: pd.DataFrame, metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Add the score of always predicting the most frequent test class (same test set for all models)."""
    majority = next(iter(metrics_by_model.values()))["majority_baseline"]
    table["always the majority class"] = table["metric"].map(majority)
    return table


def interval_table(intervals_by_model: dict[str, pd.DataFrame], metrics_by_model: dict[str, dict]) -> pd.DataFrame:
    """Each model's value and 95 % interval per metric, with the majority-class score last.

    ``intervals_by_model`` holds ``resampling.bootstrap_metrics`` tables.
    """
    table = None
    for name, frame in intervals_by_model.items():
        part = frame[["metric", "value", "low", "high"]].rename(
            columns={"value": name, "low": f"{name} low", "high": f"{name} high"})
        table = part if table is None else table.merge(part, on="metric", how="outer", sort=False)
    return _with_majority(table, metrics_by_model)


# ---------------------------------------------------------------------------------------------------------------
# Chapter 5: model variants, training seeds, split protocols


def seed_name(kind: str, seed: int, run_seed: int) -> str:
    """The name of ``kind`` trained with another seed (``soft_attention_seed1``); the run's own seed keeps ``kind``."""
    return kind if seed == run_seed else f"{kind}_seed{seed}"


def protocol_name(kind: str, protocol: str, run_protocol: str) -> str:
    """The name of ``kind`` trained under another split protocol (``soft_attention_image``)."""
    return kind if protocol == run_protocol else f"{kind}_{protocol}"


def planned_trainings(run: Run) -> dict[str, TrainingRecipe]:
    """Every model the study trains for this run's parameters, by name, in the order the chapters train them.

    Chapters 3 and 4 train the two main models; chapter 5 the ablation kinds,
    the extra seeds of both main models and the SA model under each leakage
    protocol. The runner prints this plan (and what the cache already holds)
    before the first chapter.
    """
    p = run.parameters
    plan = {kind: p.recipe(kind) for kind in MAIN_MODELS}
    if p.evaluation.ablation_mode == "full":
        plan.update({kind: p.recipe(kind) for kind in ablation_kinds(run) if kind not in MAIN_MODELS})
    else:
        for kind in ablation_kinds(run):
            for seed in ablation_seed_list(run):
                plan[head_name(kind, seed, p.seed)] = head_recipe(run, kind, seed)
    for kind in MAIN_MODELS:
        for seed in p.evaluation.seeds:
            plan.setdefault(seed_name(kind, seed, p.seed), p.recipe(kind, seed=seed))
    for protocol in p.evaluation.protocols:
        plan.setdefault(protocol_name(LEAKAGE_MODEL, protocol, p.split.protocol),
                        p.recipe(LEAKAGE_MODEL, protocol=protocol))
    return plan


def _cache_key(run: Run, recipe: TrainingRecipe) -> tuple[dict, str]:
    """What the cache key of ``recipe`` in this run is made of, and the key.

    A model that starts from another's backbone is keyed by that model's key too.
    """
    inputs = training_cache.key_inputs(recipe, run.data_checksum, run.split_file(recipe.split.protocol).read_bytes())
    if recipe.backbone_from:
        inputs["backbone_key"] = _cache_key(run, planned_trainings(run)[recipe.backbone_from])[1]
    return inputs, training_cache.key_of(inputs)


def cache_key(run: Run, recipe: TrainingRecipe) -> str:
    """The training-cache key of ``recipe`` in this run (what results computed from that model are keyed by)."""
    return _cache_key(run, recipe)[1]


def cached_entry(run: Run, recipe: TrainingRecipe) -> training_cache.Entry | None:
    """The cache entry that would be reused for ``recipe`` (None: it will be trained, or the cache is off)."""
    if not recipe.train.training_cache:
        return None
    return training_cache.TrainingCache(run.training_cache_dir).lookup(_cache_key(run, recipe)[1])


def _result(run: Run, recipe: TrainingRecipe, name: str) -> tuple[dict, pd.DataFrame]:
    """Metrics and predictions of ``name``, training it first unless this run already did."""
    if not run.metrics_path(name).exists():
        train_and_evaluate(run, recipe, name=name)
    return run.read_metrics(name), run.read_predictions(name)


def ablation_kinds(run: Run) -> list[str]:
    """The kinds the ablation compares: both main models, then every kind in ``ablation_models``."""
    return list(MAIN_MODELS) + [k for k in run.parameters.evaluation.ablation_kinds if k not in MAIN_MODELS]


def ablation_seed_list(run: Run) -> list[int]:
    """Shared-backbone mode: the run's seed and the next ``ablation_seeds - 1``."""
    p = run.parameters
    return [p.seed + i for i in range(p.evaluation.ablation_seeds)]


def head_name(kind: str, seed: int, run_seed: int) -> str:
    """A head trained on the baseline's backbone: ``multiscale_head``, ``multiscale_head_seed1``."""
    return seed_name(f"{kind}_head", seed, run_seed)


def head_recipe(run: Run, kind: str, seed: int) -> TrainingRecipe:
    """``kind``'s attention and head trained on the frozen backbone of the run's baseline, on cached features.

    One frozen phase of ``ablation_head_epochs`` at the full-training rate:
    the backbone's features are computed once, so each head costs seconds.
    """
    p = run.parameters
    recipe = p.recipe(kind, seed=seed)
    train_section = replace(recipe.train, schedule="two-phase", epochs_phase1=p.evaluation.ablation_head_epochs,
                            epochs_phase2=0, lr_phase1=recipe.train.lr_full, cache_features=True)
    return replace(recipe, train=train_section, backbone_from="baseline")


def variants(run: Run) -> dict[str, tuple[dict, pd.DataFrame]]:
    """Every ablation kind under the run's protocol and seed, by kind, in the run's ablation mode.

    ``full``: each kind trained end to end (the main models are chapters 3
    and 4's). ``shared_backbone``: each kind's attention and head trained on
    the baseline's frozen backbone (:func:`head_recipe`), the baseline's own
    head included, so every row starts from the same features.
    """
    p = run.parameters
    if p.evaluation.ablation_mode == "full":
        return {kind: _result(run, p.recipe(kind), kind) for kind in ablation_kinds(run)}
    return {kind: _result(run, head_recipe(run, kind, p.seed), head_name(kind, p.seed, p.seed))
            for kind in ablation_kinds(run)}


def variant_seeds(run: Run) -> dict[str, dict[int, dict]]:
    """Metrics per seed of every ablation kind (shared-backbone mode: several seeds; full mode: the run's)."""
    p = run.parameters
    if p.evaluation.ablation_mode == "full":
        return {kind: {p.seed: metrics} for kind, (metrics, _) in variants(run).items()}
    return {kind: {seed: _result(run, head_recipe(run, kind, seed), head_name(kind, seed, p.seed))[0]
                   for seed in ablation_seed_list(run)} for kind in ablation_kinds(run)}


def ablation_mode_text(run: Run) -> str:
    """What the run's ablation mode trains, and what it can and cannot show (Markdown)."""
    p = run.parameters
    if p.evaluation.ablation_mode == "full":
        return ("**Ablation mode: full.** Every variant is trained end to end under the same protocol, seed and "
                "budget as the two main models, as the report's ablation does. This compares whole models; with "
                "one training seed per variant it cannot tell a real difference from training noise "
                "(`--set ablation_mode=shared_backbone` trains every variant's head on one shared backbone with "
                "several seeds in seconds).")
    seeds = ablation_seed_list(run)
    return (f"**Ablation mode: shared backbone.** Every variant's attention module and classifier head, the "
            f"baseline's own head included, is trained on the same frozen backbone, the baseline's trained "
            f"ResNet50, whose features are computed once; up to {p.evaluation.ablation_head_epochs} epochs and "
            f"{len(seeds)} seeds ({', '.join(map(str, seeds))}) per variant, each costing seconds. This shows "
            "what each attention design adds on top of the same features, with its spread across seeds; it "
            "cannot show how a variant would shape the backbone if trained end to end, as in the report's "
            "ablation (`--set ablation_mode=full`).")


def seeds(run: Run) -> dict[str, dict[int, dict]]:
    """Metrics per training seed for the two main models: the run's seed plus ``extra_seeds``."""
    p = run.parameters
    out: dict[str, dict[int, dict]] = {}
    for kind in MAIN_MODELS:
        out[kind] = {seed: _result(run, p.recipe(kind, seed=seed), seed_name(kind, seed, p.seed))[0]
                     for seed in [p.seed] + p.evaluation.seeds}
    return out


def seed_table(metrics_by_kind_and_seed: dict[str, dict[int, dict]]) -> pd.DataFrame:
    """Mean and spread across seeds for each main model, one block of rows per model."""
    parts = [resampling.seed_summary(by_seed).assign(model=kind) for kind, by_seed in metrics_by_kind_and_seed.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[["model"] + [c for c in table.columns if c != "model"]]


def leakage(run: Run, kind: str = LEAKAGE_MODEL) -> dict[str, tuple[dict, pd.DataFrame]]:
    """``kind`` trained and tested under the run's protocol and each of ``leakage_protocols``."""
    p = run.parameters
    own = p.split.protocol
    out = {own: _result(run, p.recipe(kind), kind)}
    for protocol in p.evaluation.protocols:
        if protocol != own:
            out[protocol] = _result(run, p.recipe(kind, protocol=protocol), protocol_name(kind, protocol, own))
    return out


_LEAKAGE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro")


def leakage_table(results: dict[str, tuple[dict, pd.DataFrame]], reference: str, n_resamples: int,
                  seed: int) -> pd.DataFrame:
    """Per protocol: each metric with its 95 % interval and its difference from ``reference``'s.

    A leaky protocol (``image``) lets images of one lesion sit in training and
    test; its inflation is how much higher it scores than the lesion-disjoint
    reference protocol. The test sets differ between protocols, so the
    difference is not paired; the intervals show each one's own uncertainty.
    """
    rows = []
    ref = evaluation.flat_metrics(results[reference][0])
    for protocol, (metrics, predictions) in results.items():
        flat = evaluation.flat_metrics(metrics)
        intervals = resampling.bootstrap_metrics(predictions, n_resamples=n_resamples, seed=seed).set_index("metric")
        for metric in _LEAKAGE_METRICS:
            rows.append({"protocol": protocol, "metric": metric, "test images": metrics["n"],
                         "epochs": metrics.get("epochs_trained"), "value": flat[metric],
                         "low": intervals.loc[metric, "low"], "high": intervals.loc[metric, "high"],
                         f"minus {reference}": flat[metric] - ref[metric]})
    return pd.DataFrame(rows)
