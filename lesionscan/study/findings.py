"""The front page's "what this run found": a few lines generated from the run's own results.

Written by ``lesionscan study`` after the chapters, from the results they
declared (``study.results``), so the book's first page states this run's
numbers (never typed in) and names the data and initialisation behind them.
A part is said to be "not run" only when its chapter was not part of this
run or the profile skipped it (a parameter); a result missing although its
chapter ran is an error (:class:`~lesionscan.study.results.MissingResult`),
never a quiet blank.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from lesionscan.analysis import wording
from lesionscan.core import atomic
from lesionscan.study import results
from lesionscan.study.results import CHAPTERS
from lesionscan.study.run_folder import Run

# The report's headline numbers to set beside ours: (model, metric).
HEADLINE = (("soft_attention", "accuracy"), ("soft_attention", "roc_auc_weighted"), ("baseline", "accuracy"))
_MODEL_NAMES = {"soft_attention": "soft attention", "baseline": "baseline"}


def data_description(run: Run) -> str:
    """Which data, initialisation and resolution produced the numbers, and what that means for reading them."""
    p = run.parameters
    size = p.pipeline.image_size
    text = f"profile `{p.profile}`: {run.data_label}, {run.weights_label}, {size} px"
    if run.is_synthetic:
        return f"{text}. These numbers show that the software works; they say nothing about the report's claims."
    caveat = []
    if size < 224:
        caveat.append(f"reduced resolution ({size} px against the report's 224 px)")
    if p.model.weights != "imagenet":
        caveat.append("no ImageNet pre-training (the report starts from it)")
    if caveat:
        return f"{text}. Real dermoscopy, but with {' and '.join(caveat)}: a test of the protocol, not of its ceiling."
    return f"{text}: the report's protocol."


def banner_markdown(run: Run, checksum: str, chapters_run: Collection[str] = CHAPTERS) -> str:
    """The front page's first lines: which profile, data, initialisation and external test the reader is looking at.

    ``checksum``: the data checksum the run's manifest records.
    """
    external = "none"
    if _ran(chapters_run, results.EXTERNAL_STATUS.chapter):
        status = run.read(results.EXTERNAL_STATUS)
        if status["ran"]:
            external = (f"{status['scored']:,} images of `{Path(status['data_dir']).name}` "
                        f"({status['layout']} layout; chapter 7)")
    else:
        external = "not run (chapter 7)"
    return "\n".join(["```{admonition} What you are reading", ":class: important",
                      f"**{wording.capital(data_description(run))}**", "",
                      f"Data checksum `{checksum}`; external test set: {external}.", "```", ""])


def _ran(chapters_run: Collection[str], chapter: str) -> bool:
    return chapter in chapters_run


def _interval(row) -> str:
    return f"{row['ours']:.3f} ({row['low']:.3f} to {row['high']:.3f})"


def headline_table(run: Run, chapters_run: Collection[str] = CHAPTERS) -> list[str]:
    """Markdown rows: the report's headline claims, ours with 95 % interval, and the majority-class score."""
    if not _ran(chapters_run, results.REPORT_COMPARISON.chapter):
        return ["*The comparison with the report (chapter 5) was not run.*", ""]
    table = run.read(results.REPORT_COMPARISON)
    lines = ["| claim | report | this run (95 % interval) |", "| --- | --- | --- |"]
    for model, metric in HEADLINE:
        rows = table[(table["model"] == model) & (table["metric"] == metric)]
        if rows.empty:
            continue
        row = rows.iloc[0]
        lines.append(f"| {wording.metric_label(metric)}, {_MODEL_NAMES[model]} ({row['section']}) | "
                     f"{row['report']:.3f} | {_interval(row)} |")
    metrics = run.read_metrics("soft_attention")
    lines.append(f"| accuracy of always answering the most frequent class | – | "
                 f"{metrics['majority_baseline']['accuracy']:.3f} |")
    return lines + [""]


def leakage_sentence(run: Run, chapters_run: Collection[str] = CHAPTERS) -> str | None:
    """How much the leaky image-level split inflates balanced accuracy, with both intervals.

    None when it was not measured: chapter 5 not in this run, or the profile
    trains no image-level model (``leakage_protocols`` without ``image``, or
    the run's own protocol is ``image``).
    """
    p = run.parameters
    own = p.split.protocol
    if not _ran(chapters_run, results.LEAKAGE_AUDIT.chapter) or own == "image" or "image" not in p.evaluation.protocols:
        return None
    table = run.read(results.LEAKAGE_AUDIT)
    table = table[table["metric"] == "balanced_accuracy"].set_index("protocol")
    leaky, fair = table.loc["image"], table.loc[own]
    change = leaky["value"] - fair["value"]
    text = (f"**Leakage:** trained and tested on an image-level split (images of one lesion on both sides), the "
            f"soft-attention model's balanced accuracy is {leaky['value']:.3f} ({leaky['low']:.3f} to "
            f"{leaky['high']:.3f}) against {fair['value']:.3f} ({fair['low']:.3f} to {fair['high']:.3f}) under "
            f"the `{own}` split: {change:+.3f}.")
    epochs = [run.read_metrics(name).get("epochs_trained") for name in ("soft_attention_image", "soft_attention")]
    text += f" The two test sets differ ({int(leaky['test images']):,} and {int(fair['test images']):,} images)"
    if None not in epochs:
        text += f", and so did training ({epochs[0]} and {epochs[1]} epochs before early stopping)"
    return text + ", so the difference is not leakage alone."


def likeness_sentence(run: Run) -> str:
    """How far the attention map is the same for every image (chapter 6), as a sentence."""
    table = run.read(results.MAP_LIKENESS).set_index("method")
    r = table.loc["soft attention", "median correlation with the average map"]
    return (f" Its map correlates with its own average over all test images at a median of {r:.2f} "
            "(1 would be the same map for every image).")


def findings_markdown(run: Run, chapters_run: Collection[str] = CHAPTERS) -> str:
    """The block the front page includes; ``chapters_run`` are the chapters this run executed."""
    lines = ["## What this run found", "", f"*{data_description(run)}*", ""]
    lines += headline_table(run, chapters_run)
    if _ran(chapters_run, results.SA_VS_BASELINE.chapter):
        lines.append(f"**Soft attention against the baseline:** {run.read(results.SA_VS_BASELINE)['verdict']}")
    else:
        lines.append("**Soft attention against the baseline:** not run (chapter 5).")
    lines.append("")
    leakage = leakage_sentence(run, chapters_run)
    if leakage:
        lines += [leakage, ""]
    if _ran(chapters_run, results.MASK_AGREEMENT_VERDICT.chapter):
        attention = run.read(results.MASK_AGREEMENT_VERDICT)
        if attention["scored"]:
            lines += [f"**Where attention looks:** {attention['verdict']}{likeness_sentence(run)}", ""]
        else:
            lines += [f"**Where attention looks:** not measured: {attention['reason']}", ""]
    else:
        lines += ["**Where attention looks:** not measured in this run (chapter 6 was not run).", ""]
    lines += ["Chapter 5 has every claim of the report beside ours, chapter 6 the maps, and the appendix how to "
              "rerun this exact run.", ""]
    return "\n".join(lines)


def write_findings(run: Run, path: str | os.PathLike, chapters_run: Collection[str] = CHAPTERS) -> Path:
    """Write the block (atomically) where the front page includes it."""
    return atomic.write_text(Path(path), findings_markdown(run, chapters_run))


def write_banner(run: Run, path: str | os.PathLike, checksum: str, chapters_run: Collection[str] = CHAPTERS) -> Path:
    """Write the front page's first lines (atomically) where it includes them."""
    return atomic.write_text(Path(path), banner_markdown(run, checksum, chapters_run))
