"""Train one model of the study on a run's split and evaluate it on the test subset.

Chapters 03 and 04 differ only in the model they train, so the whole
experiment (data, pipeline, training, saving, predicting, scoring) lives here
once. The test subset is used after training only: early stopping and the
learning-rate schedule see the validation subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lesionscan.core import atomic
from lesionscan.data import ham10000, split
from lesionscan.analysis import evaluation
from lesionscan.model import networks, pipeline, train
from lesionscan.core.classes import CLASSES
from lesionscan.study.run_folder import Run


@dataclass
class Result:
    """What one trained model produced, as saved under the run folder."""

    model: object
    history: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict


def split_table(run: Run, protocol: str | None = None) -> pd.DataFrame:
    """The split of ``protocol`` (default: the run's own, written by chapter 2).

    Other protocols (the leakage audit) are made with the run's seed and
    written to ``splits/PROTOCOL.csv`` the first time they are asked for.
    """
    if protocol is None or protocol == run.params["split_protocol"]:
        return split.read_split(run.split_path)
    path = run.dir / "splits" / f"{protocol}.csv"
    if not path.exists():
        p = run.params
        table = split.make_split(ham10000.load_dataset(run.data_dir, verify_images=False), protocol, seed=p["seed"],
                                 val_fraction=p["val_fraction"], test_fraction=p["test_fraction"])
        split.write_split(table, path)
    return split.read_split(path)


def subsets(run: Run, protocol: str | None = None) -> dict[str, pd.DataFrame]:
    """A split joined with image paths, one frame per subset."""
    frame = split_table(run, protocol).merge(
        ham10000.load_dataset(run.data_dir, verify_images=False)[["image_id", "image_path"]], on="image_id")
    return {name: frame[frame["subset"] == name].reset_index(drop=True) for name in ("train", "val", "test")}


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["dx"].map(CLASSES.index).to_numpy()


def eval_dataset(run: Run, frame: pd.DataFrame):
    """A dataset in the frame's order, without augmentation (validation, test, explanations)."""
    p = run.params
    return pipeline.make_dataset(frame["image_path"].tolist(), _labels(frame), image_size=p["image_size"],
                                 batch_size=p["batch_size"], training=False, augment=False, balance_target=None,
                                 seed=p["seed"])


def build(run: Run, kind: str):
    """The model ``kind`` (see ``networks.KINDS``) with the run's settings."""
    p = run.params
    return networks.build_model(kind, image_size=p["image_size"], weights=p["weights"], dropout=p["dropout"],
                              l2=p["l2"], attention_heads=p["attention_heads"], gamma_init=p["gamma_init"],
                              bn_momentum=p["bn_momentum"])


def train_and_evaluate(run: Run, kind: str, name: str | None = None, seed: int | None = None,
                       protocol: str | None = None) -> Result:
    """Train ``kind`` on a training subset, save everything as ``name``, score it on the test subset.

    ``seed`` (training seed: initialisation, sampling, augmentation) and
    ``protocol`` (split) default to the run's; the ablation chapter varies
    them, and names the results (e.g. ``soft_attention_seed1``).
    """
    p = run.params
    name = name or kind
    seed = p["seed"] if seed is None else int(seed)
    train.seed_everything(seed, deterministic=p["deterministic"])
    train.configure_precision()  # mixed float16 on a GPU, float32 on a CPU
    parts = subsets(run, protocol)
    train_labels = _labels(parts["train"])
    train_ds = pipeline.make_dataset(parts["train"]["image_path"].tolist(), train_labels,
                                     image_size=p["image_size"], batch_size=p["batch_size"], training=True,
                                     augment=p["augment"], balance_target=p["balance_target"] or None,
                                     seed=seed)
    class_weight = pipeline.epoch_class_weights(train_labels, p["balance_target"]) if p["class_weights"] else None
    model = build(run, kind)
    print(f"{name}: {model.count_params():,} parameters; {len(parts['train'])} training images, "
          f"{len(parts['val'])} validation images", flush=True)
    history = train.train(model, train_ds, eval_dataset(run, parts["val"]), train.TrainConfig.from_params(p),
                          class_weight=class_weight)

    with atomic.atomic_path(run.model_path(name)) as tmp:
        model.save(tmp)
    atomic.write_csv(run.history_path(name), history)

    test = parts["test"]
    probs = model.predict(eval_dataset(run, test), verbose=0)
    predictions = evaluation.predictions_frame(test["image_id"].tolist(), test["dx"].tolist(), probs)
    atomic.write_csv(run.predictions_path(name), predictions)
    metrics = evaluation.compute_metrics(predictions)
    metrics.update(model=kind, name=name, seed=seed, split_protocol=protocol or p["split_protocol"],
                   data=run.data_label, initialisation=run.weights_label, epochs_trained=int(len(history)))
    atomic.write_json(run.metrics_path(name), metrics)
    return Result(model=model, history=history, predictions=predictions, metrics=metrics)


def provenance_text(run: Run) -> str:
    """One line the book shows beside results: which data and initialisation produced them."""
    p = run.params
    return (f"*Results from {run.data_label}, {run.weights_label}, {p['image_size']} px, split protocol "
            f"`{p['split_protocol']}`, seed {p['seed']} (profile `{p['profile']}`).*")


def provenance(run: Run, result: Result) -> str:
    """Provenance plus what training did (epochs and phases)."""
    phases = ", ".join(f"{phase}: {n} epochs" for phase, n in result.history.groupby("phase", sort=False).size().items())
    return f"{provenance_text(run)}\n\nTrained {len(result.history)} epochs ({phases}); " \
           f"tested on {result.metrics['n']} images."


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

    ``intervals_by_model`` holds ``stats.bootstrap_metrics`` tables.
    """
    table = None
    for name, frame in intervals_by_model.items():
        part = frame[["metric", "value", "low", "high"]].rename(
            columns={"value": name, "low": f"{name} low", "high": f"{name} high"})
        table = part if table is None else table.merge(part, on="metric", how="outer", sort=False)
    return _with_majority(table, metrics_by_model)
