"""How well the models classify, and how sure we are of it (chapters 3 to 5).

Confusion matrices, ROC curves, metrics side by side, calibration and the
bootstrap intervals beside the report's numbers. Metrics are named as
``analysis.wording`` names them everywhere in the book (capitalised for a
label), and each model keeps a colour, marker and line style
(``style.model_styles``) so models differ by more than colour.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lesionscan.analysis import wording
from lesionscan.core.classes import CLASSES, label
from lesionscan.figures.style import (
    CLASS_COLOURS,
    CONFUSION_CMAP,
    LINESTYLES,
    PAGE_WIDTH,
    PALETTE,
    BookFigure,
    book_figure,
    model_styles,
    wrapped_label,
)

_REPORT_MARKERS = ("D", "s", "^", "v", "P", "X", "p", "h", "<", ">")


def _confusion_panel(ax, values: pd.DataFrame, annot: np.ndarray, colour_label: str, title: str,
                     y_labels: bool, vmax: float | None, short_x: bool = False, square: bool = True) -> None:
    """One heatmap: colour from ``values``, text from ``annot``; rows true, columns predicted."""
    sns.heatmap(values, ax=ax, annot=annot, fmt="", cmap=CONFUSION_CMAP, vmin=0, vmax=vmax, square=square,
                linewidths=0.5, linecolor="white", cbar_kws={"label": colour_label, "shrink": 0.7},
                annot_kws={"fontsize": 9.5 if not short_x else 9})
    ticks = np.arange(len(values.columns)) + 0.5
    if short_x:  # codes under the matrix; the row labels spell them out
        ax.set_xticks(ticks, list(values.columns), rotation=0, fontsize=10)
    else:
        ax.set_xticks(ticks, [wrapped_label(dx, 18) for dx in values.columns], rotation=45, ha="right",
                      rotation_mode="anchor", fontsize=9)
    ax.set_yticks(np.arange(len(values.index)) + 0.5,
                  [wrapped_label(dx, 26) for dx in values.index] if y_labels else [""] * len(values.index),
                  rotation=0, fontsize=9.5)
    ax.tick_params(length=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class" if y_labels else "")
    ax.set_title(title, loc="left")


def _row_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Each row as shares of its total (0 for an empty row), so small classes read as clearly as large ones."""
    totals = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(totals, axis=0).fillna(0.0)


@book_figure
def confusion_matrix(cm_df: pd.DataFrame, normalized: bool | pd.DataFrame = False) -> Figure:
    """Confusion matrix heatmap, rows true and columns predicted, classes spelled out.

    ``confusion_matrix(counts)``: one panel; colour is each row's share (so
    small classes are as visible as nv), text the count and the share.
    ``confusion_matrix(shares, normalized=True)``: one panel of row shares.
    ``confusion_matrix(counts, shares)``: two panels, counts left, shares right.
    """
    if isinstance(normalized, pd.DataFrame):
        counts, shares = cm_df, normalized
        fig = BookFigure.sized(PAGE_WIDTH, 4.6)
        left, right = fig.subplots(1, 2)
        _confusion_panel(left, counts.astype(float), counts.astype(int).astype(str).to_numpy(), "images",
                         f"Counts (n = {int(counts.to_numpy().sum()):,})", True, None, short_x=True, square=False)
        _confusion_panel(right, shares.astype(float), _percent_text(shares.to_numpy(dtype=float)),
                         "share of the true class", "Each row normalised", False, 1.0, short_x=True,
                         square=False)
        return fig
    fig = BookFigure.sized(PAGE_WIDTH * 0.85, 7.2)
    ax = fig.add_subplot()
    if normalized:
        shares = cm_df.astype(float)
        _confusion_panel(ax, shares, _percent_text(shares.to_numpy()), "share of the true class",
                         "Confusion matrix (each row normalised)", True, 1.0)
    else:
        counts = cm_df.astype(int)
        shares = _row_shares(counts.astype(float))
        text = np.array([[f"{c}\n{100 * s:.0f} %" if c else "0" for c, s in zip(crow, srow)]
                         for crow, srow in zip(counts.to_numpy(), shares.to_numpy())])
        _confusion_panel(ax, shares, text, "share of the true class",
                         f"Confusion matrix (n = {int(counts.to_numpy().sum()):,})", True, 1.0)
    return fig


def _percent_text(values: np.ndarray) -> np.ndarray:
    """Shares as cell text ("75 %"), with a plain "0" so empty cells do not crowd the matrix."""
    return np.array([[f"{100 * v:.0f} %" if v else "0" for v in row] for row in values])


@book_figure
def roc_curves(pred: pd.DataFrame) -> Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend; classes without positives are noted."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = BookFigure.sized(PAGE_WIDTH * 0.85, 7.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1.2, label="chance (AUC 0.5)")
    skipped = []
    for k, dx in enumerate(CLASSES):
        positive = (pred["dx"].astype(str) == dx).to_numpy()
        if positive.all() or not positive.any():
            skipped.append(dx)
            continue
        scores = pred[f"p_{dx}"].to_numpy(dtype=float)
        fpr, tpr, _ = roc_curve(positive, scores)
        auc = roc_auc_score(positive, scores)
        ax.plot(fpr, tpr, color=CLASS_COLOURS[dx], linestyle=LINESTYLES[k % len(LINESTYLES)], linewidth=2.2,
                label=f"{label(dx)}: AUC {auc:.3f} (n = {int(positive.sum())})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC curves, each class against the rest", loc="left")
    ax.grid(alpha=0.3)
    title = None
    if skipped:
        title = "not scored (no test image or only one class): " + ", ".join(skipped)
    ax.legend(loc="lower right", fontsize=9, title=title, title_fontsize=9, framealpha=0.92)
    return fig


def _metric_name(metric: str) -> str:
    """The metric as a label names it: the book's words for it (``wording``), capitalised; an unknown name as is.

    One table of words (``wording.METRIC_LABELS``) serves tables, sentences
    and figures, so a figure never calls a metric something the text does not.
    """
    words = wording.metric_label(metric)
    known = metric in wording.METRIC_LABELS or words != metric
    return wording.capital(words) if known else metric


def _grouped_bars(ax, table: pd.DataFrame, names: list[str], colours: dict) -> None:
    """Horizontal bars, one group per row of ``table`` (top to bottom), one bar per model column."""
    models = list(table.columns)
    height = 0.8 / len(models)
    positions = np.arange(len(table))[::-1]
    for m, model in enumerate(models):
        values = table[model].to_numpy(dtype=float)
        y = positions + 0.4 - height * (m + 0.5)
        bars = ax.barh(y, np.nan_to_num(values), height=height * 0.92, color=colours[model], label=model)
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in values], padding=2, fontsize=8.5)
    ax.set_yticks(positions, names)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    top = np.nanmax(table.to_numpy(dtype=float)) if np.isfinite(table.to_numpy(dtype=float)).any() else 1.0
    ax.set_xlim(0, max(1.0, top) * 1.15)
    ax.grid(axis="x", alpha=0.3)


@book_figure
def metric_comparison(comparison_table: pd.DataFrame) -> Figure:
    """Models side by side: summary metrics left, per-class F1 right (when the table has them).

    ``comparison_table``: a ``metric`` column (or index) and one numeric column
    per model, as ``evaluation.comparison_table`` returns.
    """
    table = comparison_table.set_index("metric") if "metric" in comparison_table.columns else comparison_table
    table = table.select_dtypes(include="number")
    if table.empty:
        raise ValueError("comparison table has no numeric model column")
    colours = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(table.columns)}
    per_class = [m for m in table.index if str(m).startswith("f1_") and str(m)[3:] in CLASSES]
    summary = [m for m in table.index if m not in per_class]
    panels = [(summary, "Test metrics")] if summary else []
    if per_class:
        panels.append((per_class, "F1 per class"))
    n_rows = max(len(rows) for rows, _ in panels)
    fig = BookFigure.sized(PAGE_WIDTH, max(3.0, 0.24 * n_rows * len(table.columns) + 0.35 * n_rows + 1.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (rows, title) in zip(axes, panels):
        names = [wrapped_label(str(m)[3:], 24) if m in per_class else _metric_name(str(m)) for m in rows]
        _grouped_bars(ax, table.loc[rows], names, colours)
        ax.set_title(title, loc="left")
        ax.set_xlabel("score")
    handles = [Patch(color=colours[m], label=m) for m in table.columns]
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), frameon=False, title="model")
    return fig


@book_figure
def reliability_diagram(reliability_tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Top-label calibration per model: accuracy against confidence per bin, and how many images fall in each bin.

    ``reliability_tables``: {model: ``resampling.reliability_table(pred, n_bins)``}.
    Upper panel: each non-empty bin at (mean confidence, accuracy), the
    diagonal being perfect calibration (below it = over-confident); the
    legend gives each model's expected calibration error. Lower panel:
    images per bin (log scale, since most images sit in the top bins).
    """
    from matplotlib.ticker import FuncFormatter

    from lesionscan.analysis.resampling import ece_from_table

    if not reliability_tables:
        raise ValueError("reliability_diagram needs at least one reliability table")
    models = list(reliability_tables)
    styles = model_styles(models)
    fig = BookFigure.sized(PAGE_WIDTH * 0.8, 7.4)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], color="0.55", linestyle="--", linewidth=1.3, label="perfect calibration")
    first = next(iter(reliability_tables.values()))
    edges = np.r_[first["low"].to_numpy(dtype=float), first["high"].to_numpy(dtype=float)[-1:]]
    width = (edges[1:] - edges[:-1]) * 0.8 / len(models)
    for m, (model, table) in enumerate(reliability_tables.items()):
        style = styles[model]
        filled = table[table["n"] > 0]
        top.plot(filled["confidence"], filled["accuracy"], color=style["color"], marker=style["marker"],
                 linestyle=style["linestyle"], linewidth=2, markersize=6,
                 label=f"{model}: ECE {ece_from_table(table):.3f} (n = {int(table['n'].sum()):,})")
        lows = table["low"].to_numpy(dtype=float)
        highs = table["high"].to_numpy(dtype=float)
        x = lows + (highs - lows) * 0.1 + width * (m + 0.5)
        bottom.bar(x, table["n"].to_numpy(dtype=float), width=width * 0.95, color=style["color"],
                   edgecolor="white", linewidth=0.5, label=model)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy in the bin")
    top.set_title("Reliability: are the predicted class's probabilities right?", loc="left")
    top.annotate("below the diagonal: over-confident", (0.98, 0.03), ha="right", va="bottom", fontsize=9.5,
                 color="0.35", fontstyle="italic")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9.5, framealpha=0.92)
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(bottom=0)
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bottom.set_ylabel("images")
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.grid(axis="y", alpha=0.3)
    return fig


def _metric_row_label(metric: str) -> str:
    """A row of the interval chart: per-class F1 with the class spelled out, else the metric's name."""
    if metric.startswith("f1_") and metric[3:] in CLASSES:
        return f"F1: {wrapped_label(metric[3:], 26)}"
    return _metric_name(metric)


@book_figure
def interval_comparison(table: pd.DataFrame) -> Figure:
    """Our value with its bootstrap interval beside each number the report claims, per metric and model.

    ``table``: ``reported.comparison_with_intervals`` (model, metric, section,
    report, ours, low, high). Per metric a row, per model a line in it: a
    filled marker with a horizontal bar is our value and its interval; the
    report's values are hollow markers in the same colour, one shape per
    report section (so the report's several accuracies stay apart). Summary
    metrics and per-class F1 get separate panels.
    """
    from matplotlib.lines import Line2D

    needed = {"model", "metric", "section", "report", "ours", "low", "high"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"interval table lacks column(s) {', '.join(sorted(missing))}; "
                         "build it with reported.comparison_with_intervals")
    if table.empty:
        raise ValueError("interval table is empty: no claim about a model we trained")
    models = list(dict.fromkeys(table["model"]))
    styles = model_styles(models)
    sections = list(dict.fromkeys(table["section"]))
    section_marker = {s: _REPORT_MARKERS[i % len(_REPORT_MARKERS)] for i, s in enumerate(sections)}
    order = list(wording.METRIC_LABELS) + [f"f1_{dx}" for dx in CLASSES]
    metrics = sorted(dict.fromkeys(table["metric"]), key=lambda m: (order.index(m) if m in order else len(order), m))
    per_class = [m for m in metrics if m.startswith("f1_") and m[3:] in CLASSES]
    summary = [m for m in metrics if m not in per_class]
    panels = [(rows, title) for rows, title in ((summary, "Test metrics"), (per_class, "F1 per class")) if rows]
    row_height = 0.22 * len(models) + 0.2
    fig = BookFigure.sized(PAGE_WIDTH, sum(len(rows) for rows, _ in panels) * row_height + 1.0 * len(panels) + 1.4)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [len(rows) + 1.2 for rows, _ in panels]})[:, 0]
    values = pd.concat([table[c] for c in ("report", "ours", "low", "high")]).astype(float)
    lo = np.nanmin(values.to_numpy()) if values.notna().any() else 0.0
    for ax, (rows, title) in zip(axes, panels):
        positions = np.arange(len(rows))[::-1]
        step = 0.7 / len(models)
        for y0, metric in zip(positions, rows):
            for m, model in enumerate(models):
                sub = table[(table["model"] == model) & (table["metric"] == metric)]
                if sub.empty:
                    continue
                y = y0 + 0.35 - step * (m + 0.5)
                style = styles[model]
                ours, low, high = (float(sub[c].iloc[0]) for c in ("ours", "low", "high"))
                if np.isfinite(ours):
                    xerr = None
                    if np.isfinite(low) and np.isfinite(high):
                        xerr = [[max(ours - low, 0.0)], [max(high - ours, 0.0)]]
                    ax.errorbar([ours], [y], xerr=xerr, fmt=style["marker"], color=style["color"], markersize=7,
                                elinewidth=2.2, capsize=3, zorder=3)
                for _, claim in sub.iterrows():
                    ax.plot([float(claim["report"])], [y], linestyle="none", marker=section_marker[claim["section"]],
                            markersize=8.5, markerfacecolor="none", markeredgecolor=style["color"],
                            markeredgewidth=1.8, zorder=4)
        for y in positions[:-1] - 0.5:
            ax.axhline(y, color="0.88", linewidth=0.8, zorder=0)
        ax.set_yticks(positions, [_metric_row_label(m) for m in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title, loc="left")
    axes[-1].set_xlim(max(0.0, lo - 0.05), 1.0 + 0.01)
    axes[-1].set_xlabel("score (ours: value and 95 % bootstrap interval; report: hollow markers)")
    handles = [Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"], linestyle="-", linewidth=2.2,
                      markersize=7, label=f"{m}: ours, 95 % CI") for m in models]
    handles += [Line2D([], [], color="0.3", marker=section_marker[s], linestyle="none", markerfacecolor="none",
                       markeredgewidth=1.8, markersize=8, label=f"report, {s}") for s in sections]
    fig.legend(handles=handles, loc="outside upper center", ncols=3, frameon=False, fontsize=9)
    return fig


@book_figure
def confusion_by_model(predictions_by_model: Mapping[str, pd.DataFrame], where: str) -> Figure:
    """One row-normalised confusion matrix per model, side by side (text: count and share of the true class)."""
    from lesionscan.analysis import evaluation

    models = list(predictions_by_model)
    fig = BookFigure.sized(PAGE_WIDTH, 4.8)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for k, (ax, model) in enumerate(zip(axes, models)):
        counts = evaluation.confusion(predictions_by_model[model])
        shares = _row_shares(counts.astype(float))
        text = np.array([[f"{c}\n{100 * s:.0f} %" if c else "0" for c, s in zip(crow, srow)]
                         for crow, srow in zip(counts.to_numpy(), shares.to_numpy())])
        _confusion_panel(ax, shares, text, "share of the true class",
                         f"{model}, {where} (n = {int(counts.to_numpy().sum()):,})", k == 0, 1.0, short_x=True,
                         square=False)
    return fig


@book_figure
def internal_against_external(table: pd.DataFrame, challenge: pd.DataFrame | None = None) -> Figure:
    """Balanced accuracy and macro ROC-AUC of each model on the run's test subset and on the external set.

    ``table``: ``study.external.comparison_table``; ``challenge``: the
    leaderboard entries (``reported.challenge_results``), drawn as dashed
    lines on the balanced-accuracy panel, labelled as the challenge's.
    """
    models = list(dict.fromkeys(table["model"]))
    styles = model_styles(models)
    metrics = [m for m in ("balanced_accuracy", "roc_auc_macro") if m in set(table["metric"])]
    fig = BookFigure.sized(PAGE_WIDTH, 1.0 + 0.75 * len(models) * 2)
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    labels = [f"{model}\n{side}" for model in models for side in ("internal", "external")]
    positions = np.arange(len(labels))[::-1]
    for ax, metric in zip(axes, metrics):
        rows = table[table["metric"] == metric].set_index("model")
        for y, model_side in zip(positions, [(m, s) for m in models for s in ("internal", "external")]):
            model, side = model_side
            value, low, high = (float(rows.at[model, c]) for c in (side, f"{side}_low", f"{side}_high"))
            style = styles[model]
            xerr = [[max(value - low, 0.0)], [max(high - value, 0.0)]] if np.isfinite(low) else None
            ax.errorbar([value], [y], xerr=xerr, fmt=style["marker"], color=style["color"], markersize=7,
                        elinewidth=2.2, capsize=3, markerfacecolor="white" if side == "external" else style["color"])
            ax.annotate(f"{value:.3f}", (value, y), xytext=(0, 7), textcoords="offset points", ha="center",
                        fontsize=9)
        if metric == "balanced_accuracy" and challenge is not None:
            for (_, entry), linestyle in zip(challenge.iterrows(), ("--", ":")):
                ax.axvline(float(entry["value"]), color="0.35", linestyle=linestyle, linewidth=1.3,
                           label=f"ISIC 2018 {entry['entry']} ({entry['team']}): {float(entry['value']):.3f}")
            fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncols=2, frameon=False,
                       fontsize=9)
        ax.set_title(_metric_name(metric), loc="left")
        ax.set_xlim(0.0, 1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.set_yticks(positions, labels)
        ax.tick_params(axis="y", length=0)
    axes[0].set_xlabel("value and 95 % bootstrap interval (filled: the run's test subset; hollow: external)")
    return fig
