"""The front page's "what this run found": a few lines generated from the run's own results.

Written by ``lesionscan study`` after the chapters, from the files they
left in the run folder, so the book's first page states this run's numbers
(never typed in) and names the data and initialisation behind them. A part
whose chapter did not run is said to be missing, not left out silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from lesionscan.core import atomic
from lesionscan.study.run_folder import Run

# The report's headline numbers to set beside ours: (model, metric).
HEADLINE = (("soft_attention", "accuracy"), ("soft_attention", "roc_auc_weighted"), ("baseline", "accuracy"))
_MODEL_NAMES = {"soft_attention": "soft attention", "baseline": "baseline"}
_METRIC_NAMES = {"accuracy": "accuracy", "roc_auc_weighted": "weighted ROC-AUC",
                 "balanced_accuracy": "balanced accuracy"}


def data_description(run: Run) -> str:
    """Which data, initialisation and resolution produced the numbers, and what that means for reading them."""
    p = run.params
    text = f"profile `{p['profile']}`: {run.data_label}, {run.weights_label}, {p['image_size']} px"
    if p["data"] == "synthetic":
        return f"{text}. These numbers show that the software works; they say nothing about the report's claims."
    caveat = []
    if p["image_size"] < 224:
        caveat.append(f"reduced resolution ({p['image_size']} px against the report's 224 px)")
    if p["weights"] != "imagenet":
        caveat.append("no ImageNet pre-training (the report starts from it)")
    if caveat:
        return f"{text}. Real dermoscopy, but with {' and '.join(caveat)}: a test of the protocol, not of its ceiling."
    return f"{text}: the report's protocol."


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _interval(row) -> str:
    return f"{row['ours']:.3f} ({row['low']:.3f} to {row['high']:.3f})"


def headline_table(run: Run) -> list[str]:
    """Markdown rows: the report's headline claims, ours with 95 % interval, and the majority-class score."""
    path = run.table_path("report_comparison")
    if not path.exists():
        return ["*The comparison with the report (chapter 5) was not run.*", ""]
    table = pd.read_csv(path)
    lines = ["| claim | report | this run (95 % interval) |", "| --- | --- | --- |"]
    for model, metric in HEADLINE:
        rows = table[(table["model"] == model) & (table["metric"] == metric)]
        if rows.empty:
            continue
        row = rows.iloc[0]
        lines.append(f"| {_METRIC_NAMES[metric]}, {_MODEL_NAMES[model]} ({row['section']}) | {row['report']:.3f} "
                     f"| {_interval(row)} |")
    metrics = _read_json(run.metrics_path("soft_attention"))
    if metrics:
        lines.append(f"| accuracy of always answering the most frequent class | – | "
                     f"{metrics['majority_baseline']['accuracy']:.3f} |")
    return lines + [""]


def leakage_sentence(run: Run) -> str | None:
    """How much the leaky image-level split inflates balanced accuracy, with both intervals; None if not run."""
    path = run.table_path("leakage_audit")
    if not path.exists():
        return None
    table = pd.read_csv(path)
    table = table[table["metric"] == "balanced_accuracy"].set_index("protocol")
    own = run.params["split_protocol"]
    if "image" not in table.index or own not in table.index or own == "image":
        return None
    leaky, fair = table.loc["image"], table.loc[own]
    change = leaky["value"] - fair["value"]
    text = (f"**Leakage:** trained and tested on an image-level split (images of one lesion on both sides), the "
            f"soft-attention model's balanced accuracy is {leaky['value']:.3f} ({leaky['low']:.3f} to "
            f"{leaky['high']:.3f}) against {fair['value']:.3f} ({fair['low']:.3f} to {fair['high']:.3f}) under "
            f"the `{own}` split: {change:+.3f}.")
    if "test images" in table.columns:
        text += (f" The two test sets differ ({int(leaky['test images']):,} and {int(fair['test images']):,} "
                 "images)")
        epochs = [(_read_json(run.metrics_path(name)) or {}).get("epochs_trained")
                  for name in ("soft_attention_image", "soft_attention")]
        if None not in epochs:
            text += f", and so did training ({epochs[0]} and {epochs[1]} epochs before early stopping)"
        text += ", so the difference is not leakage alone."
    return text


def likeness_sentence(run: Run) -> str:
    """How far the attention map is the same for every image (chapter 6), as a sentence; "" if not measured."""
    path = run.table_path("map_likeness_to_average")
    if not path.exists():
        return ""
    table = pd.read_csv(path).set_index("method")
    if "soft attention" not in table.index:
        return ""
    r = table.loc["soft attention", "median correlation with the average map"]
    return (f" Its map correlates with its own average over all test images at a median of {r:.2f} "
            "(1 would be the same map for every image).")


def findings_markdown(run: Run) -> str:
    """The block the front page includes."""
    lines = ["## What this run found", "", f"*{data_description(run)}*", ""]
    lines += headline_table(run)
    paired = _read_json(run.metrics_path("sa_vs_baseline"))
    lines.append(f"**Soft attention against the baseline:** {paired['verdict']}" if paired and "verdict" in paired
                 else "**Soft attention against the baseline:** not run (chapter 5).")
    lines.append("")
    leakage = leakage_sentence(run)
    if leakage:
        lines += [leakage, ""]
    attention = _read_json(run.metrics_path("mask_agreement_verdict"))
    if attention:
        lines += [f"**Where attention looks:** {attention['verdict']}{likeness_sentence(run)}", ""]
    elif run.params["data"] == "directory" or run.metrics_path("soft_attention").exists():
        lines += ["**Where attention looks:** not measured in this run (chapter 6 did not run, or the data has "
                  "no lesion masks).", ""]
    lines += ["Chapter 5 has every claim of the report beside ours, chapter 6 the maps, and the appendix how to "
              "rerun this exact run.", ""]
    return "\n".join(lines)


def write_findings(run: Run, path: str | os.PathLike) -> Path:
    """Write the block (atomically) where the front page includes it."""
    return atomic.write_text(Path(path), findings_markdown(run))
