"""The ablation chapter's experiments: model variants, training seeds, split protocols.

Each experiment is one ``experiments.train_and_evaluate`` call under a name
(``multiscale``, ``soft_attention_seed1``, ``soft_attention_image``...), so
every variant is trained and tested exactly as the two main models are.
A result already written in this run is read back, not trained again.
"""

from __future__ import annotations

import pandas as pd

from lesionscan.study import experiments
from lesionscan.analysis import resampling
from lesionscan.analysis.evaluation import flat_metrics
from lesionscan.core.parameters import as_list
from lesionscan.study.run_folder import Run

MAIN_MODELS = ("baseline", "soft_attention")


def _result(run: Run, kind: str, name: str, **kwargs) -> tuple[dict, pd.DataFrame]:
    """Metrics and predictions of ``name``, training it first unless this run already did."""
    if not run.metrics_path(name).exists():
        experiments.train_and_evaluate(run, kind, name=name, **kwargs)
    return run.read_metrics(name), run.read_predictions(name)


def variants(run: Run) -> dict[str, tuple[dict, pd.DataFrame]]:
    """Baseline, soft attention and every kind in ``ablation_models``, same protocol and seed."""
    kinds = list(MAIN_MODELS) + [k for k in as_list(run.params["ablation_models"]) if k not in MAIN_MODELS]
    return {kind: _result(run, kind, kind) for kind in kinds}


def seeds(run: Run) -> dict[str, dict[int, dict]]:
    """Metrics per training seed for the two main models: the run's seed plus ``extra_seeds``."""
    seed_list = [run.params["seed"]] + [int(s) for s in as_list(run.params["extra_seeds"])]
    out: dict[str, dict[int, dict]] = {}
    for kind in MAIN_MODELS:
        out[kind] = {}
        for seed in seed_list:
            name = kind if seed == run.params["seed"] else f"{kind}_seed{seed}"
            out[kind][seed] = _result(run, kind, name, seed=seed)[0]
    return out


def seed_table(metrics_by_kind_and_seed: dict[str, dict[int, dict]]) -> pd.DataFrame:
    """Mean and spread across seeds for each main model, one block of rows per model."""
    parts = [resampling.seed_summary(by_seed).assign(model=kind) for kind, by_seed in metrics_by_kind_and_seed.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[["model"] + [c for c in table.columns if c != "model"]]


def leakage(run: Run, kind: str = "soft_attention") -> dict[str, tuple[dict, pd.DataFrame]]:
    """``kind`` trained and tested under the run's protocol and each of ``leakage_protocols``."""
    own = run.params["split_protocol"]
    out = {own: _result(run, kind, kind)}
    for protocol in as_list(run.params["leakage_protocols"]):
        if protocol != own:
            out[protocol] = _result(run, kind, f"{kind}_{protocol}", protocol=protocol)
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
    ref = flat_metrics(results[reference][0])
    for protocol, (metrics, predictions) in results.items():
        flat = flat_metrics(metrics)
        intervals = resampling.bootstrap_metrics(predictions, n_resamples=n_resamples, seed=seed).set_index("metric")
        for metric in _LEAKAGE_METRICS:
            rows.append({"protocol": protocol, "metric": metric, "test images": metrics["n"],
                         "epochs": metrics.get("epochs_trained"), "value": flat[metric],
                         "low": intervals.loc[metric, "low"], "high": intervals.loc[metric, "high"],
                         f"minus {reference}": flat[metric] - ref[metric]})
    return pd.DataFrame(rows)
