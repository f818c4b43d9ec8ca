"""What the images are: how many per class, who they come from, how they are split and augmented (chapters 1, 2).

Each function takes a table or images and returns a ``BookFigure`` in the
book's style (``style.book_figure``); each class keeps its colour
(``style.CLASS_COLOURS``) and is spelled out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lesionscan.core.classes import CLASSES, label
from lesionscan.figures.style import (
    CLASS_COLOURS,
    HEATMAP_CMAP,
    PAGE_WIDTH,
    PALETTE,
    SUBSET_COLOURS,
    BookFigure,
    book_figure,
    strip_image_axes,
    wrapped_label,
)


def _by_class(table: pd.DataFrame) -> pd.DataFrame:
    """A per-class table indexed by class code in CLASSES order, without its total row."""
    if "class" in table.columns:
        table = table.set_index("class")
    return table.loc[[dx for dx in CLASSES if dx in table.index]]


@book_figure
def class_distribution(class_table: pd.DataFrame) -> Figure:
    """Images per class (Table 4.1) as horizontal bars, largest on top, with count and share."""
    table = _by_class(class_table)
    counts = table["count"].astype(float)
    total = counts.sum()
    if total <= 0:
        raise ValueError("class table has no images to plot")
    order = counts.sort_values(ascending=True).index  # barh draws bottom-up: largest ends on top
    fig = BookFigure.sized(PAGE_WIDTH, 0.55 * len(order) + 1.4)
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


@book_figure
def metadata_by_class(df: pd.DataFrame, top_sites: int = 8) -> Figure:
    """Age, sex and body site by class: who the images come from, and how that differs per class.

    Three panels: age distribution per class (box plots), share of each sex
    per class (stacked bars), and share of the ``top_sites`` most frequent
    localisations per class (a heatmap; the rest pooled as "other").
    """
    present = [dx for dx in CLASSES if (df["dx"] == dx).any()]
    fig = BookFigure.sized(PAGE_WIDTH, 4.6)
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


@book_figure
def sample_grid(images_by_class: Mapping[str, Sequence[np.ndarray]]) -> Figure:
    """Example images, one row per class (CLASSES order), class spelled out at the left."""
    rows = [dx for dx in CLASSES if dx in images_by_class and len(images_by_class[dx])]
    if not rows:
        raise ValueError("sample_grid needs at least one image")
    ncols = max(len(images_by_class[dx]) for dx in rows)
    first = np.asarray(images_by_class[rows[0]][0])
    aspect = first.shape[0] / first.shape[1]
    cell = (PAGE_WIDTH - 2.2) / ncols
    fig = BookFigure.sized(PAGE_WIDTH, len(rows) * cell * aspect + 0.3)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, dx in enumerate(rows):
        images = list(images_by_class[dx])
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(images):
                ax.imshow(np.asarray(images[c]))
                strip_image_axes(ax)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(wrapped_label(dx, 22), rotation=0, ha="right", va="center", fontsize=10.5)
    return fig


@book_figure
def split_support(support_tables: Mapping[str, pd.DataFrame]) -> Figure:
    """How each protocol shares every class among train, val and test (100 % bars, class size at right)."""
    if not support_tables:
        raise ValueError("split_support needs at least one support table")
    subsets = ("train", "val", "test")
    fig = BookFigure.sized(PAGE_WIDTH, 0.5 * len(CLASSES) + 1.9)
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


@book_figure
def augmentation_gallery(original: np.ndarray, augmented_list: Sequence[np.ndarray]) -> Figure:
    """One training image and augmented copies of it, in a grid of at most four columns."""
    panels = [np.asarray(original)] + [np.asarray(a) for a in augmented_list]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    aspect = panels[0].shape[0] / panels[0].shape[1]
    cell = PAGE_WIDTH / 4
    fig = BookFigure.sized(cell * ncols, nrows * cell * aspect + 0.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= len(panels):
            fig.delaxes(ax)
            continue
        ax.imshow(panels[i])
        strip_image_axes(ax)
        ax.set_title("original" if i == 0 else f"augmented {i}", fontsize=11,
                     fontweight="bold" if i == 0 else "normal")
        if i == 0:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_linewidth(2.5)
                spine.set_color(PALETTE[0])
    return fig
