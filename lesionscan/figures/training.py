"""How training went: loss and accuracy per epoch (chapters 3, 4).

Training and validation curves with the phase changes and the epoch early
stopping keeps, so a reader sees over- or under-fitting at a glance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lesionscan.figures.style import PAGE_WIDTH, PALETTE, BookFigure, book_figure

_PHASE_NAMES = {"frozen": "frozen backbone", "finetune": "fine-tuning", "full": "whole network"}


def _phase_spans(history: pd.DataFrame) -> list[tuple[float, str]]:
    """(x where the phase starts, phase name) for each run of equal phases; [] without a phase column."""
    if "phase" not in history.columns or len(history) == 0:
        return []
    phases = history["phase"].astype(str).to_numpy()
    epochs = history["epoch"].to_numpy(dtype=float)
    spans = [(epochs[0] - 0.5, phases[0])]
    spans += [((epochs[i - 1] + epochs[i]) / 2, phases[i]) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    return spans


@book_figure
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
    fig = BookFigure.sized(PAGE_WIDTH, 4.4)
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
