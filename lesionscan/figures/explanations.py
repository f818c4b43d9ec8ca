"""Where the models look: explanation maps per image, and how well they agree with the lesion masks (chapter 6).

Maps are drawn in viridis (``style.HEATMAP_CMAP``), each on its own scale;
the agreement chart sets the reference maps apart by hatching as well as
grey, so it reads without colour.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from lesionscan.analysis import wording
from lesionscan.figures.style import (
    HEATMAP_CMAP,
    PAGE_WIDTH,
    WRONG_COLOUR,
    BookFigure,
    book_figure,
    model_styles,
    strip_image_axes,
    wrapped_label,
)

_REFERENCE_STYLES = ({"color": "0.55", "hatch": "//"}, {"color": "0.82", "hatch": ".."})


@book_figure
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
    fig = BookFigure.sized(label_width + cell * ncols + 0.8, len(rows) * cell + 1.1 + (0.4 if title else 0))
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
        strip_image_axes(ax)
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
            strip_image_axes(ax)
    titles = ["image, lesion outlined" if any_mask else "image"] + names
    for c, column_title in enumerate(titles):
        # "Grad-CAM++, attention model" -> "Grad-CAM++" over "attention model", each part wrapped narrow
        axes[0, c].set_title("\n".join(textwrap.fill(part, 11) for part in column_title.split(", ")), fontsize=9)
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=HEATMAP_CMAP), ax=axes[:, -1].tolist(), shrink=0.8,
                 label="low → high\n(each map on its own scale)", aspect=25)
    if title:
        fig.suptitle(title)
    return fig


@book_figure
def agreement_chart(table: pd.DataFrame) -> Figure:
    """Mean agreement of each method's maps with the lesion masks, one panel per metric, with intervals.

    ``table``: ``agreement.agreement_table`` (method, metric, class, n,
    mean, low, high); only the rows of class "all" are drawn. One horizontal
    bar per method with its bootstrap interval as a whisker; the reference
    maps (centre prior, uniform) are grey and hatched and labelled
    "(reference)", so they read differently without colour. Scores run 0..1.
    """
    from lesionscan.analysis.agreement import METRICS, REFERENCE_METHODS

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
    styles = {m: {"color": s["color"], "hatch": None, "edgecolor": "white"} for m, s in model_styles(models).items()}
    for i, ref in enumerate(references):
        styles[ref] = {**_REFERENCE_STYLES[i % len(_REFERENCE_STYLES)], "edgecolor": "0.25"}
    names = [textwrap.fill(m, 22) + ("\n(reference)" if m in references else "") for m in order]
    level = 100 * float(table.attrs.get("level", 0.95))
    fig = BookFigure.sized(PAGE_WIDTH, 0.5 * len(order) + 2.0)
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
        ax.set_title(textwrap.fill(wording.METRIC_LABELS.get(metric, metric), 26), loc="left")
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
