"""The book's look, shared by every figure module: colours, fonts, the figure class, and saving.

Figures are built without pyplot (``BookFigure``, a ``matplotlib.figure.Figure``
that renders itself in Jupyter), so nothing is shown or kept open behind the
caller's back: a notebook displays the returned figure once, and
``save_figure`` writes it as PNG. Colours are
colour-blind safe (seaborn's "colorblind" palette; viridis and mako for
heatmaps), each class keeps one colour in every figure, and classes are
spelled out (``classes.label``). Sizes suit a book page, about 10 in wide.

Every public function of ``lesionscan.figures`` that returns a figure is
decorated with ``book_figure`` exactly once: that is what gives all figures the
same fonts and spines, and ``tests/unit/test_plots.py`` fails for a figure without
it.
"""

from __future__ import annotations

import functools
import io
import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import seaborn as sns
from matplotlib.figure import Figure

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
# Line styles to tell classes or models apart by more than colour (in order, cycled).
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)))

_RC = {
    "font.size": 11, "axes.titlesize": 12.5, "axes.titleweight": "bold", "axes.labelsize": 11,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10.5,
    "figure.titlesize": 14, "figure.titleweight": "bold", "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": False, "savefig.dpi": DPI, "figure.dpi": DPI,
}
_MODEL_MARKERS = ("o", "s", "^", "D", "v", "P")
_MARK = "_book_figure"

# Every function decorated with ``book_figure``, by "module.name": the book's figures, for tests to check.
FIGURES: dict[str, Callable[..., Figure]] = {}


def book_figure(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Mark ``function`` as one of the book's figures and build its figure under the book's style.

    The style (fonts, spines, dpi) is applied with ``matplotlib.rc_context``
    around the call, so global settings stay untouched. Applying it twice is
    an error rather than a silent no-op, so a stacked decorator cannot hide.
    """
    if getattr(function, _MARK, False):
        raise TypeError(f"{function.__module__}.{function.__qualname__} is already a book_figure")

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return function(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    FIGURES[f"{function.__module__}.{function.__qualname__}"] = wrapper
    return wrapper


def is_book_figure(function: Callable) -> bool:
    """Whether ``function`` carries ``book_figure`` (the tests ask this of every figure function)."""
    return bool(getattr(function, _MARK, False))


class BookFigure(Figure):
    """A Figure that shows itself in Jupyter as PNG, with no pyplot involved: displayed exactly once.

    IPython renders an object through ``_repr_png_`` when no other printer
    claims it, so a returned figure appears in a notebook (and in the book)
    whatever the backend, and nothing is left open for the inline backend to
    show again at the end of the cell.
    """

    @classmethod
    def sized(cls, width: float, height: float) -> BookFigure:
        """A figure of ``width`` x ``height`` inches with constrained layout: where every book figure starts."""
        return cls(figsize=(width, height), layout="constrained")

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, facecolor="white")
        return buffer.getvalue()


def wrapped_label(dx: str, width: int = 24) -> str:
    """The class's readable label, wrapped to lines of about ``width`` characters."""
    return textwrap.fill(label(dx), width=width)


def strip_image_axes(ax) -> None:
    """An axes that frames an image: no ticks, no spines, labels still allowed."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def model_styles(models: Sequence[str]) -> dict[str, dict]:
    """Per model: a palette colour, a marker and a line style, so models differ by more than colour."""
    return {m: {"color": PALETTE[i % len(PALETTE)], "marker": _MODEL_MARKERS[i % len(_MODEL_MARKERS)],
                "linestyle": LINESTYLES[i % len(LINESTYLES)]} for i, m in enumerate(models)}


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG (dpi 120) under a temporary name, rename it into place, close the figure."""
    import matplotlib.pyplot as plt

    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return Path(path)
