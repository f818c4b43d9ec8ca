"""The book's figures: each function takes a table or arrays and returns a matplotlib Figure.

Figures are built without pyplot (``BookFigure``, a ``matplotlib.figure.Figure``
that renders itself in Jupyter), so nothing is shown or kept open behind the
caller's back: a notebook displays the returned figure once, and
``save_figure`` writes it as PNG. Colours are
colour-blind safe (seaborn's "colorblind" palette; viridis and mako for
heatmaps), each class keeps one colour in every figure, and classes are
spelled out (``classes.label``). Sizes suit a book page, about 10 in wide.
"""

from __future__ import annotations

import functools
import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lesionscan.core import atomic
from lesionscan.core.classes import CLASSES, label

PALETTE = sns.color_palette("colorblind")
CLASS_COLOURS = {dx: PALETTE[i] for i, dx in enumerate(CLASSES)}
SUBSET_COLOURS = {"train": PALETTE[0], "val": PALETTE[1], "test": PALETTE[2]}
WRONG_COLOUR = PALETTE[3]
HEATMAP_CMAP = "viridis"
CONFUSION_CMAP = "mako_r"
PAGE_WIDTH = 10.0
DPI = 120

_RC = {
    "font.size": 11, "axes.titlesize": 12.5, "axes.titleweight": "bold", "axes.labelsize": 11,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10.5,
    "figure.titlesize": 14, "figure.titleweight": "bold", "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": False, "savefig.dpi": DPI, "figure.dpi": DPI,
}
_PHASE_NAMES = {"frozen": "frozen backbone", "finetune": "fine-tuning", "full": "whole network"}
_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)))


def _styled(function):
    """Build the figure under the book's style (fonts, spines) without touching global settings."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return function(*args, **kwargs)

    return wrapper


class BookFigure(Figure):
    """A Figure that shows itself in Jupyter as PNG, with no pyplot involved: displayed exactly once.

    IPython renders an object through ``_repr_png_`` when no other printer
    claims it, so a returned figure appears in a notebook (and in the book)
    whatever the backend, and nothing is left open for the inline backend to
    show again at the end of the cell.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, facecolor="white")
        return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    return BookFigure(figsize=(width, height), layout="constrained")


def wrapped_label(dx: str, width: int = 24) -> str:
    """The class's readable label, wrapped to lines of about ``width`` characters."""
    return textwrap.fill(label(dx), width=width)


def _strip_image_axes(ax) -> None:
    """An axes that frames an image: no ticks, no spines, labels still allowed."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _by_class(table: pd.DataFrame) -> pd.DataFrame:
    """A per-class table indexed by class code in CLASSES order, without its total row."""
    if "class" in table.columns:
        table = table.set_index("class")
    return table.loc[[dx for dx in CLASSES if dx in table.index]]


@_styled
def class_distribution(class_table: pd.DataFrame) -> Figure:
    """Images per class (Table 4.1) as horizontal bars, largest on top, with count and share."""
    table = _by_class(class_table)
    counts = table["count"].astype(float)
    total = counts.sum()
    if total <= 0:
        raise ValueError("class table has no images to plot")
    order = counts.sort_values(ascending=True).index  # barh draws bottom-up: largest ends on top
    fig = _figure(PAGE_WIDTH, 0.55 * len(order) + 1.4)
    ax = fig.add_subplot()
    ax.barh([label(dx) for dx in order], counts[order], color=[CLASS_COLOURS[dx] for dx in order])
    for y, dx in enumerate(order):
        ax.annotate(f" {int(counts[dx]):,}  ({100 * counts[dx] / total:.1f} %)", (counts[dx], y),
                    va="center", ha="left", fontsize=10)
    ax.set_xlim(0, counts.max() * 1.28)
    ax.set_xlabel("images")
    ax.set_title(f"Images per class ({int(total):,} in all)", loc="left")
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    return fig


@_styled
@_styled
def metadata_by_class(df: pd.DataFrame, top_sites: int = 8) -> Figure:
    """Age, sex and body site by class: who the images come from, and how that differs per class.

    Three panels: age distribution per class (box plots), share of each sex
    per class (stacked bars), and share of the ``top_sites`` most frequent
    localisations per class (a heatmap; the rest pooled as "other").
    """
    present = [dx for dx in CLASSES if (df["dx"] == dx).any()]
    fig = _figure(PAGE_WIDTH, 4.6)
    ax_age, ax_sex, ax_site = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 0.9, 1.6]})
    ages = [pd.to_numeric(df.loc[df["dx"] == dx, "age"], errors="coerce").dropna() for dx in present]
    box = ax_age.boxplot(ages, vert=False, patch_artist=True, widths=0.6, medianprops={"color": "black"})
    for patch, dx in zip(box["boxes"], present):
        patch.set_facecolor(CLASS_COLOURS[dx])
    ax_age.set_yticks(range(1, len(present) + 1), present)
    ax_age.invert_yaxis()
    ax_age.set(title="Age", xlabel="years")

    sexes = (df.assign(sex=df["sex"].replace("", "unknown").fillna("unknown"))
             .groupby("dx")["sex"].value_counts(normalize=True).unstack(fill_value=0).reindex(present))
    left = np.zeros(len(present))
    greys = {"female": "#4d4d4d", "male": "#a6a6a6"}  # neutral: class colours stay reserved for classes
    for sex in sexes.columns:
        ax_sex.barh(present, sexes[sex], left=left, color=greys.get(sex, "#e6e6e6"), label=sex,
                    edgecolor="white")
        left += sexes[sex].to_numpy()
    ax_sex.invert_yaxis()
    ax_sex.set(title="Sex", xlabel="share of images", xlim=(0, 1))
    ax_sex.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)

    sites = df["localization"].replace("", "unknown").fillna("unknown")
    common = sites.value_counts().index[:top_sites]
    sites = sites.where(sites.isin(common), "other")
    shares = pd.crosstab(df["dx"], sites, normalize="index").reindex(present)
    shares = shares[[c for c in list(common) + ["other"] if c in shares.columns]]
    sns.heatmap(shares, ax=ax_site, cmap=HEATMAP_CMAP, vmin=0, annot=True, fmt=".0%", cbar=False,
                annot_kws={"fontsize": 8})
    ax_site.set(title="Body site (share of the class)", xlabel="", ylabel="")
    ax_site.tick_params(axis="y", rotation=0)
    for tick in ax_site.get_xticklabels():
        tick.set(rotation=50, ha="right", rotation_mode="anchor")
    return fig


def sample_grid(images_by_class: Mapping[str, Sequence[np.ndarray]]) -> Figure:
    """Example images, one row per class (CLASSES order), class spelled out at the left."""
    rows = [dx for dx in CLASSES if dx in images_by_class and len(images_by_class[dx])]
    if not rows:
        raise ValueError("sample_grid needs at least one image")
    ncols = max(len(images_by_class[dx]) for dx in rows)
    first = np.asarray(images_by_class[rows[0]][0])
    aspect = first.shape[0] / first.shape[1]
    cell = (PAGE_WIDTH - 2.2) / ncols
    fig = _figure(PAGE_WIDTH, len(rows) * cell * aspect + 0.3)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, dx in enumerate(rows):
        images = list(images_by_class[dx])
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(images):
                ax.imshow(np.asarray(images[c]))
                _strip_image_axes(ax)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(wrapped_label(dx, 22), rotation=0, ha="right", va="center", fontsize=10.5)
    return fig


@_styled
def split_support(support_tables: Mapping[str, pd.DataFrame]) -> Figure:
    """How each protocol shares every class among train, val and test (100 % bars, class size at right)."""
    if not support_tables:
        raise ValueError("split_support needs at least one support table")
    subsets = ("train", "val", "test")
    fig = _figure(PAGE_WIDTH, 0.5 * len(CLASSES) + 1.9)
    axes = fig.subplots(1, len(support_tables), sharey=True, squeeze=False)[0]
    for ax, (protocol, table) in zip(axes, support_tables.items()):
        table = _by_class(table)
        present = [dx for dx in CLASSES if dx in table.index][::-1]  # first class on top
        counts = table.loc[present, list(subsets)].astype(float)
        totals = counts.sum(axis=1).replace(0, np.nan)
        shares = counts.div(totals, axis=0).fillna(0.0) * 100
        left = np.zeros(len(present))
        for subset in subsets:
            bars = ax.barh(range(len(present)), shares[subset], left=left, color=SUBSET_COLOURS[subset],
                           edgecolor="white", linewidth=0.8, label=subset)
            labels = [f"{v:.0f}" if v >= 9 else "" for v in shares[subset]]
            ax.bar_label(bars, labels=labels, label_type="center", fontsize=9,
                         color="white" if subset == "train" else "black")
            left += shares[subset].to_numpy()
        for y, dx in enumerate(present):
            ax.annotate(f" {int(counts.loc[dx].sum()):,}", (100, y), va="center", ha="left", fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_xlabel("% of the class's images")
        ax.set_title(f"{protocol}", loc="left")
        ax.set_yticks(range(len(present)), [wrapped_label(dx, 26) for dx in present])
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
    handles = [Patch(color=SUBSET_COLOURS[s], label=s) for s in subsets]
    fig.legend(handles=handles, loc="outside upper right", ncols=3, frameon=False,
               title="subset (numbers at right: images of the class)")
    fig.suptitle("Class shares per subset, by split protocol", x=0.01, ha="left")
    return fig


@_styled
def augmentation_gallery(original: np.ndarray, augmented_list: Sequence[np.ndarray]) -> Figure:
    """One training image and augmented copies of it, in a grid of at most four columns."""
    panels = [np.asarray(original)] + [np.asarray(a) for a in augmented_list]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    aspect = panels[0].shape[0] / panels[0].shape[1]
    cell = PAGE_WIDTH / 4
    fig = _figure(cell * ncols, nrows * cell * aspect + 0.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= len(panels):
            fig.delaxes(ax)
            continue
        ax.imshow(panels[i])
        _strip_image_axes(ax)
        ax.set_title("original" if i == 0 else f"augmented {i}", fontsize=11,
                     fontweight="bold" if i == 0 else "normal")
        if i == 0:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_linewidth(2.5)
                spine.set_color(PALETTE[0])
    return fig


def _phase_spans(history: pd.DataFrame) -> list[tuple[float, str]]:
    """(x where the phase starts, phase name) for each run of equal phases; [] without a phase column."""
    if "phase" not in history.columns or len(history) == 0:
        return []
    phases = history["phase"].astype(str).to_numpy()
    epochs = history["epoch"].to_numpy(dtype=float)
    spans = [(epochs[0] - 0.5, phases[0])]
    spans += [((epochs[i - 1] + epochs[i]) / 2, phases[i]) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    return spans


@_styled
def training_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training and validation, with phase boundaries and the kept epoch.

    A dotted vertical line marks each change of training phase (e.g. frozen
    backbone -> fine-tuning); a star marks the epoch with the lowest
    validation loss, the one early stopping restores.
    """
    if len(history) == 0:
        raise ValueError("training history is empty: the model trained for no epoch")
    history = history.reset_index(drop=True)
    if "epoch" not in history.columns:
        history = history.assign(epoch=np.arange(1, len(history) + 1))
    epochs = history["epoch"].to_numpy(dtype=float)
    marker = "o" if len(history) <= 30 else None
    best = None
    if "val_loss" in history.columns and history["val_loss"].notna().any():
        best = int(history["val_loss"].astype(float).idxmin())
    fig = _figure(PAGE_WIDTH, 4.4)
    axes = fig.subplots(1, 2)
    spans = _phase_spans(history)
    for ax, metric, title in zip(axes, ("loss", "accuracy"), ("Loss", "Accuracy")):
        curves = (("", "training", "-", PALETTE[0]), ("val_", "validation", "--", PALETTE[1]))
        for prefix, name, style, colour in curves:
            column = prefix + metric
            if column in history.columns:
                ax.plot(epochs, history[column].to_numpy(dtype=float), style, color=colour, marker=marker,
                        markersize=4, linewidth=2, label=name)
        for i, (x, phase) in enumerate(spans):
            if i:
                ax.axvline(x, color="0.45", linestyle=":", linewidth=1.5)
            if len(spans) > 1:
                ax.annotate(f" {_PHASE_NAMES.get(phase, phase)}", (x, 1.0), xycoords=("data", "axes fraction"),
                            va="bottom", ha="left", fontsize=9.5, color="0.3", fontstyle="italic")
        if best is not None and f"val_{metric}" in history.columns:
            ax.plot([epochs[best]], [history[f"val_{metric}"].iloc[best]], marker="*", markersize=16,
                    color=PALETTE[1], markeredgecolor="black", linestyle="none",
                    label=f"kept: lowest validation loss (epoch {int(epochs[best])})")
        ax.set_title(title, loc="left", pad=18 if len(spans) > 1 else 6)
        ax.set_xlabel("epoch")
        ax.grid(axis="y", alpha=0.3)
    if np.allclose(epochs, np.round(epochs)) and epochs.max() - epochs.min() <= 12:
        for ax in axes:
            ax.set_xticks(np.arange(epochs.min(), epochs.max() + 1))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


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
    totals = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(totals, axis=0).fillna(0.0)


@_styled
def confusion_matrix(cm_df: pd.DataFrame, normalized: bool | pd.DataFrame = False) -> Figure:
    """Confusion matrix heatmap, rows true and columns predicted, classes spelled out.

    ``confusion_matrix(counts)``: one panel; colour is each row's share (so
    small classes are as visible as nv), text the count and the share.
    ``confusion_matrix(shares, normalized=True)``: one panel of row shares.
    ``confusion_matrix(counts, shares)``: two panels, counts left, shares right.
    """
    if isinstance(normalized, pd.DataFrame):
        counts, shares = cm_df, normalized
        fig = _figure(PAGE_WIDTH, 4.6)
        left, right = fig.subplots(1, 2)
        _confusion_panel(left, counts.astype(float), counts.astype(int).astype(str).to_numpy(), "images",
                         f"Counts (n = {int(counts.to_numpy().sum()):,})", True, None, short_x=True, square=False)
        _confusion_panel(right, shares.astype(float), _percent_text(shares.to_numpy(dtype=float)),
                         "share of the true class", "Each row normalised", False, 1.0, short_x=True,
                         square=False)
        return fig
    fig = _figure(PAGE_WIDTH * 0.85, 7.2)
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
    return np.array([[f"{100 * v:.0f} %" if v else "0" for v in row] for row in values])


@_styled
def roc_curves(pred: pd.DataFrame) -> Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend; classes without positives are noted."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure(PAGE_WIDTH * 0.85, 7.0)
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
        ax.plot(fpr, tpr, color=CLASS_COLOURS[dx], linestyle=_LINESTYLES[k % len(_LINESTYLES)], linewidth=2.2,
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


_METRIC_NAMES = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
    "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)", "f1_macro": "F1 (macro)",
    "roc_auc_macro": "ROC-AUC (macro)", "precision_weighted": "Precision (weighted)",
    "recall_weighted": "Recall (weighted)", "f1_weighted": "F1 (weighted)", "roc_auc_weighted": "ROC-AUC (weighted)",
}


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


@_styled
def metric_comparison(comparison_table: pd.DataFrame) -> Figure:
    """Models side by side: summary metrics left, per-class F1 right (when the table has them).

    ``comparison_table``: a ``metric`` column (or index) and one numeric column
    per model, as ``evaluate.comparison_table`` returns.
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
    fig = _figure(PAGE_WIDTH, max(3.0, 0.24 * n_rows * len(table.columns) + 0.35 * n_rows + 1.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (rows, title) in zip(axes, panels):
        names = [wrapped_label(str(m)[3:], 24) if m in per_class else _METRIC_NAMES.get(str(m), str(m)) for m in rows]
        _grouped_bars(ax, table.loc[rows], names, colours)
        ax.set_title(title, loc="left")
        ax.set_xlabel("score")
    handles = [Patch(color=colours[m], label=m) for m in table.columns]
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), frameon=False, title="model")
    return fig


@_styled
def explanation_panel(rows: Sequence[Mapping], styles: Mapping[str, str] | None = None,
                      title: str | None = None) -> Figure:
    """Per test image: the image, then each map (attention, Grad-CAM...) in its own column.

    ``rows``: dicts with ``image`` (uint8 RGB), ``maps`` ({name: 2-D map}),
    ``true`` and ``pred`` (class codes), ``confidence`` (probability of
    ``pred``) and optionally ``mask`` (the lesion mask, outlined on the
    image). ``styles`` says how a map is drawn: "overlay" (default, in
    viridis over the image), "heatmap" (viridis alone) or "grid" (grey, one
    square per cell: a map on the network's coarse feature grid). Each map is
    scaled to its own range. The left label says true and predicted class
    and whether the model was right; a wrong prediction also gets a thick
    frame (text and frame, not colour alone).
    """
    from lesionscan.explain.gradcam import overlay, scaled

    if not rows:
        raise ValueError("explanation_panel needs at least one row")
    styles = dict(styles or {})
    unknown = {style for style in styles.values()} - {"overlay", "heatmap", "grid"}
    if unknown:
        raise ValueError(f"unknown map style(s) {sorted(unknown)}: expected overlay, heatmap or grid")
    names: list[str] = []
    for row in rows:
        names += [n for n in row["maps"] if n not in names]
    ncols = 1 + len(names)
    label_width = 1.9  # inches for the row's text, in its own column so nothing is cut at the page edge
    cell = min(2.2, (PAGE_WIDTH - label_width - 0.8) / ncols)
    fig = _figure(label_width + cell * ncols + 0.8, len(rows) * cell + 1.1 + (0.4 if title else 0))
    grid = fig.subplots(len(rows), ncols + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [label_width / cell] + [1] * ncols})
    axes = grid[:, 1:]
    any_mask = False
    for r, row in enumerate(rows):
        image = np.asarray(row["image"])
        correct = str(row["true"]) == str(row["pred"])
        text_ax = grid[r, 0]
        text_ax.axis("off")
        verdict = "correct" if correct else "WRONG"
        text_ax.text(1.0, 0.5, f"true: {wrapped_label(row['true'], 20)}\n\npredicted: {wrapped_label(row['pred'], 20)}"
                     f"\nconfidence {float(row['confidence']):.2f}, {verdict}", transform=text_ax.transAxes,
                     ha="right", va="center", fontsize=9, color="black" if correct else WRONG_COLOUR,
                     fontweight="normal" if correct else "bold")
        ax = axes[r, 0]
        ax.imshow(image)
        if row.get("mask") is not None and np.asarray(row["mask"]).any():
            any_mask = True
            ax.contour(np.asarray(row["mask"], dtype=float), levels=[0.5], colors="white", linewidths=1.3,
                       linestyles="--")
        _strip_image_axes(ax)
        if not correct:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_linewidth(3)
                spine.set_color(WRONG_COLOUR)
        for c, name in enumerate(names, start=1):
            ax = axes[r, c]
            if name not in row["maps"]:
                ax.axis("off")
                continue
            heat = scaled(row["maps"][name])
            style = styles.get(name, "overlay")
            if style == "grid":
                ax.imshow(heat, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            elif style == "heatmap":
                ax.imshow(heat, cmap=HEATMAP_CMAP, vmin=0, vmax=1)
            else:
                ax.imshow(overlay(image, heat, alpha=0.5, cmap=HEATMAP_CMAP))
            _strip_image_axes(ax)
    titles = ["image, lesion outlined" if any_mask else "image"] + names
    for c, column_title in enumerate(titles):
        # "Grad-CAM++, attention model" -> "Grad-CAM++" over "attention model", each part wrapped narrow
        axes[0, c].set_title("\n".join(textwrap.fill(part, 11) for part in column_title.split(", ")), fontsize=9)
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=HEATMAP_CMAP), ax=axes[:, -1].tolist(), shrink=0.8,
                 label="low → high\n(each map on its own scale)", aspect=25)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG (dpi 120) under a temporary name, rename it into place, close the figure."""
    import matplotlib.pyplot as plt

    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return Path(path)


__all__ = ["class_distribution", "sample_grid", "split_support", "augmentation_gallery", "training_curves",
           "confusion_matrix", "roc_curves", "metric_comparison", "explanation_panel", "save_figure",
           "wrapped_label"]


# ---------------------------------------------------------------------------------------------------------------
# How sure we are: calibration and intervals (tables from lesionscan.stats and lesionscan.report)

_MODEL_MARKERS = ("o", "s", "^", "D", "v", "P")
_REPORT_MARKERS = ("D", "s", "^", "v", "P", "X", "p", "h", "<", ">")


def _model_styles(models: Sequence[str]) -> dict[str, dict]:
    """Per model: a palette colour, a marker and a line style, so models differ by more than colour."""
    return {m: {"color": PALETTE[i % len(PALETTE)], "marker": _MODEL_MARKERS[i % len(_MODEL_MARKERS)],
                "linestyle": _LINESTYLES[i % len(_LINESTYLES)]} for i, m in enumerate(models)}


@_styled
def reliability_diagram(reliability_tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Top-label calibration per model: accuracy against confidence per bin, and how many images fall in each bin.

    ``reliability_tables``: {model: ``stats.reliability_table(pred, n_bins)``}.
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
    styles = _model_styles(models)
    fig = _figure(PAGE_WIDTH * 0.8, 7.4)
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
    if metric.startswith("f1_") and metric[3:] in CLASSES:
        return f"F1: {wrapped_label(metric[3:], 26)}"
    return _METRIC_NAMES.get(metric, metric)


@_styled
def interval_comparison(table: pd.DataFrame) -> Figure:
    """Our value with its bootstrap interval beside each number the report claims, per metric and model.

    ``table``: ``report.comparison_with_intervals`` (model, metric, section,
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
                         "build it with report.comparison_with_intervals")
    if table.empty:
        raise ValueError("interval table is empty: no claim about a model we trained")
    models = list(dict.fromkeys(table["model"]))
    styles = _model_styles(models)
    sections = list(dict.fromkeys(table["section"]))
    section_marker = {s: _REPORT_MARKERS[i % len(_REPORT_MARKERS)] for i, s in enumerate(sections)}
    order = list(_METRIC_NAMES) + [f"f1_{dx}" for dx in CLASSES]
    metrics = sorted(dict.fromkeys(table["metric"]), key=lambda m: (order.index(m) if m in order else len(order), m))
    per_class = [m for m in metrics if m.startswith("f1_") and m[3:] in CLASSES]
    summary = [m for m in metrics if m not in per_class]
    panels = [(rows, title) for rows, title in ((summary, "Test metrics"), (per_class, "F1 per class")) if rows]
    row_height = 0.22 * len(models) + 0.2
    fig = _figure(PAGE_WIDTH, sum(len(rows) for rows, _ in panels) * row_height + 1.0 * len(panels) + 1.4)
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


__all__ += ["reliability_diagram", "interval_comparison"]


# ---------------------------------------------------------------------------------------------------------------
# Do the explanation maps point at the lesion? (tables from lesionscan.agreement)

_REFERENCE_STYLES = ({"color": "0.55", "hatch": "//"}, {"color": "0.82", "hatch": ".."})


@_styled
def agreement_chart(table: pd.DataFrame) -> Figure:
    """Mean agreement of each method's maps with the lesion masks, one panel per metric, with intervals.

    ``table``: ``agreement.agreement_table`` (method, metric, class, n,
    mean, low, high); only the rows of class "all" are drawn. One horizontal
    bar per method with its bootstrap interval as a whisker; the reference
    maps (centre prior, uniform) are grey and hatched and labelled
    "(reference)", so they read differently without colour. Scores run 0..1.
    """
    from lesionscan.analysis.agreement import METRIC_LABELS, METRICS, REFERENCE_METHODS

    needed = {"method", "metric", "class", "n", "mean", "low", "high"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"agreement table lacks column(s) {', '.join(sorted(missing))}; "
                         "build it with agreement.agreement_table")
    rows = table[table["class"].astype(str) == "all"]
    if rows.empty:
        raise ValueError("agreement table has no row of class 'all' to plot")
    present = list(dict.fromkeys(rows["metric"]))
    metrics = [m for m in METRICS if m in present] + [m for m in present if m not in METRICS]
    methods = list(dict.fromkeys(rows["method"]))
    models = [m for m in methods if m not in REFERENCE_METHODS]
    references = [m for m in REFERENCE_METHODS if m in methods]
    order = models + references  # top to bottom
    styles = {m: {"color": s["color"], "hatch": None, "edgecolor": "white"} for m, s in _model_styles(models).items()}
    for i, ref in enumerate(references):
        styles[ref] = {**_REFERENCE_STYLES[i % len(_REFERENCE_STYLES)], "edgecolor": "0.25"}
    names = [textwrap.fill(m, 22) + ("\n(reference)" if m in references else "") for m in order]
    level = 100 * float(table.attrs.get("level", 0.95))
    fig = _figure(PAGE_WIDTH, 0.5 * len(order) + 2.0)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    positions = np.arange(len(order))[::-1]
    for ax, metric in zip(axes, metrics):
        for y, method in zip(positions, order):
            sub = rows[(rows["method"] == method) & (rows["metric"] == metric)]
            if sub.empty:
                continue
            mean, low, high = (float(sub[c].iloc[0]) for c in ("mean", "low", "high"))
            style = styles[method]
            ax.barh(y, 0.0 if np.isnan(mean) else mean, height=0.68, color=style["color"], hatch=style["hatch"],
                    edgecolor=style["edgecolor"], linewidth=0.8)
            if np.isnan(mean):
                ax.annotate(" n/a", (0, y), va="center", ha="left", fontsize=9.5)
                continue
            right = mean
            if np.isfinite(low) and np.isfinite(high):
                ax.errorbar([mean], [y], xerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]], fmt="none",
                            ecolor="black", elinewidth=1.6, capsize=3.5, zorder=3)
                right = high
            if right <= 0.82:
                ax.annotate(f"{mean:.2f}", (right + 0.02, y), va="center", ha="left", fontsize=9.5)
            else:  # no room at the right: inside the bar, on a white box so hatching does not hide it
                x = max(min(mean, low if np.isfinite(low) else mean) - 0.02, 0.12)
                ax.annotate(f"{mean:.2f}", (x, y), va="center", ha="right", fontsize=9.5,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", ".25", ".5", ".75", "1"])
        ax.set_title(textwrap.fill(METRIC_LABELS.get(metric, metric), 26), loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
    axes[0].set_yticks(positions, names)
    axes[0].set_ylim(-0.6, len(order) - 0.4)
    counts = sorted({int(n) for n in rows["n"]})
    n_text = f"n = {counts[0]:,} images" if len(counts) == 1 else f"n = {counts[0]:,} to {counts[-1]:,} images"
    fig.supxlabel(f"mean score over the test images with a usable mask ({n_text}); whiskers: {level:g} % "
                  "bootstrap interval", fontsize=10.5)
    return fig


__all__ += ["agreement_chart"]
