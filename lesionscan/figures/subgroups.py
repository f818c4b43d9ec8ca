"""Who the models fail: a forest plot of one metric per subgroup of the test set, with intervals (chapter 7).

Drawn from ``analysis.subgroups.subgroup_table``: one row per subgroup,
grouped in a panel per variable, a point and interval per model (each model
keeps its colour, marker and line style, ``style.model_styles``), the whole
test set's value as a vertical line per model, and the images of each
subgroup in its label. A value the table flags as too uncertain to read is
drawn hollow with a dotted interval.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lesionscan.analysis import wording
from lesionscan.analysis.subgroups import METRIC_COLUMNS, OVERALL_VARIABLE, WIDE_MARK
from lesionscan.figures.style import PAGE_WIDTH, BookFigure, book_figure, model_styles

_LABEL_WIDTH = 26


def _group_label(group: str, images: int) -> str:
    return textwrap.fill(f"{group} (n = {images:,})", width=_LABEL_WIDTH)


@book_figure
def subgroup_forest(table: pd.DataFrame, metric: str = "balanced_accuracy") -> Figure:
    """``metric`` per subgroup and model with its interval; the whole test set as a vertical line per model.

    ``table``: ``analysis.subgroups.subgroup_table``. A panel per variable (in
    the table's order), a row per group labelled with its image count, a
    point and horizontal interval per model; hollow markers and dotted
    intervals are values flagged as too uncertain to read (``ba_wide`` or
    ``auc_wide``); an undefined value is written "n/a".
    """
    if metric not in METRIC_COLUMNS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_COLUMNS)}")
    low_name, high_name, flag = METRIC_COLUMNS[metric]
    needed = {"model", "variable", "group", "images", metric, low_name, high_name, flag}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"subgroup table lacks column(s) {', '.join(sorted(missing))}; "
                         "build it with analysis.subgroups.subgroup_table")
    groups = table[table["variable"] != OVERALL_VARIABLE]
    if groups.empty:
        raise ValueError("subgroup table has no subgroup row")
    models = list(dict.fromkeys(table["model"]))
    styles = model_styles(models)
    variables = list(dict.fromkeys(groups["variable"]))
    rows_of = {v: list(dict.fromkeys(groups.loc[groups["variable"] == v, "group"])) for v in variables}
    overall = table[table["variable"] == OVERALL_VARIABLE].drop_duplicates("model").set_index("model")[metric]

    row_height = 0.14 * len(models) + 0.2
    n_rows = sum(len(r) for r in rows_of.values())
    fig = BookFigure.sized(PAGE_WIDTH, n_rows * row_height + 0.7 * len(variables) + 1.6)
    axes = fig.subplots(len(variables), 1, squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [len(rows_of[v]) + 0.8 for v in variables]})[:, 0]
    values = pd.concat([groups[c] for c in (metric, low_name, high_name)] + [overall]).astype(float)
    lo = float(np.nanmin(values)) if values.notna().any() else 0.0
    left = max(0.0, np.floor((lo - 0.05) * 10) / 10)
    step = 0.7 / len(models)
    for ax, variable in zip(axes, variables):
        names = rows_of[variable]
        positions = np.arange(len(names))[::-1]
        sub = groups[groups["variable"] == variable]
        labels = []
        for y0, name in zip(positions, names):
            in_group = sub[sub["group"] == name]
            labels.append(_group_label(name, int(in_group["images"].iloc[0])))
            for m, model in enumerate(models):
                row = in_group[in_group["model"] == model]
                if row.empty:
                    continue
                y = y0 + 0.35 - step * (m + 0.5)
                style = styles[model]
                value, low, high = (float(row[c].iloc[0]) for c in (metric, low_name, high_name))
                wide = bool(row[flag].iloc[0])
                if not np.isfinite(value):
                    ax.annotate("n/a", (left, y), xytext=(4, 0), textcoords="offset points", va="center",
                                fontsize=8.5, color=style["color"])
                    continue
                xerr = None
                if np.isfinite(low) and np.isfinite(high):
                    xerr = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
                bars = ax.errorbar([value], [y], xerr=xerr, fmt=style["marker"], color=style["color"], markersize=6.5,
                                   markerfacecolor="white" if wide else style["color"], markeredgewidth=1.6,
                                   elinewidth=1.4 if wide else 2.2, capsize=2.5, zorder=3)
                if wide and xerr is not None:
                    for line in bars.lines[2]:
                        line.set_linestyle(":")
        for model in models:
            if model in overall.index and np.isfinite(overall[model]):
                ax.axvline(float(overall[model]), color=styles[model]["color"], linestyle=styles[model]["linestyle"],
                           linewidth=1.2, alpha=0.8, zorder=1)
        for y in positions[:-1] - 0.5:
            ax.axhline(y, color="0.9", linewidth=0.8, zorder=0)
        ax.set_yticks(positions, labels, fontsize=9)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(wording.capital(variable), loc="left")
    axes[-1].set_xlim(left, 1.01)
    axes[-1].set_xlabel(f"{wording.metric_label(metric)} (point and bootstrap interval; vertical lines: whole "
                        "test set)")
    handles = [Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"], linestyle="-", linewidth=2.2,
                      markersize=6.5, label=m) for m in models]
    handles += [Line2D([], [], color=styles[m]["color"], linestyle=styles[m]["linestyle"], linewidth=1.2,
                       label=f"{m}, whole test set: {float(overall[m]):.2f}")
                for m in models if m in overall.index and np.isfinite(overall[m])]
    handles.append(Line2D([], [], color="0.35", marker="o", markerfacecolor="white", linestyle=":", linewidth=1.4,
                          label=f"{WIDE_MARK} too uncertain to read (see the rules)"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(3, len(handles)), frameon=False, fontsize=9)
    return fig
