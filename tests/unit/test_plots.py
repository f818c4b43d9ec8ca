"""Each figure function returns a Figure with the expected panels on tiny inputs; saving is atomic.

Every figure function carries the book's style exactly once (``style.book_figure``).
"""

import importlib
import inspect
import io
import pkgutil
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import lesionscan.figures
from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES, label
from lesionscan.figures import dataset, explanations, performance, style, training

from factories import make_predictions


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """The functions build figures without pyplot, so nothing stays open behind a notebook's back."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def _image(h=6, w=8, value=0):
    return np.full((h, w, 3), value, dtype=np.uint8)


@pytest.fixture
def pred():
    """Twelve test images of three classes (mel, nv, bcc), one mel mistaken for nv."""
    y = ["mel"] * 4 + ["nv"] * 6 + ["bcc"] * 2
    return make_predictions(y, ["nv"] + y[1:], confidence=0.7, ids=range(12))


def _render(fig):
    """Draw the figure to PNG bytes (layout runs only when drawing); layout warnings fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    return fig


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_class_distribution():
    table = pd.DataFrame({"class": list(CLASSES) + ["total"], "name": "", "count": [5, 4, 3, 2, 1, 10, 1, 26]})
    fig = _render(dataset.class_distribution(table))
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.patches) == 7  # the total row is not a bar
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == label("nv") and set(labels) == {label(dx) for dx in CLASSES}


def test_sample_grid():
    fig = _render(dataset.sample_grid({"nv": [_image()] * 3, "mel": [_image()]}))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6  # 2 classes x 3 columns
    assert sum(len(ax.images) for ax in fig.axes) == 4
    assert fig.axes[0].get_ylabel().replace("\n", " ") == label("mel")  # CLASSES order: mel before nv
    with pytest.raises(ValueError):
        dataset.sample_grid({})


def test_split_support():
    def table(test):
        frame = pd.DataFrame({"train": 10, "val": 2, "test": test}, index=pd.Index(CLASSES, name="class"))
        frame["total"] = frame.sum(axis=1)
        frame.loc["total"] = frame.sum()
        return frame

    fig = _render(dataset.split_support({"seed": table(1), "lesion": table(3).reset_index()}))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert all(len(ax.patches) == 3 * 7 for ax in fig.axes)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["seed", "lesion"]


@pytest.mark.parametrize("copies, axes", [(3, 4), (5, 6), (0, 1)])
def test_augmentation_gallery(copies, axes):
    fig = _render(dataset.augmentation_gallery(_image(), [_image(value=100)] * copies))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == axes
    assert fig.axes[0].get_title() == "original"


def _history(phases):
    n = len(phases)
    return pd.DataFrame({"epoch": range(1, n + 1), "phase": phases, "loss": np.linspace(2, 1, n),
                         "accuracy": np.linspace(0.3, 0.6, n), "val_loss": [2.0, 1.5, 1.2, 1.4][:n],
                         "val_accuracy": np.linspace(0.2, 0.5, n), "lr": 1e-4})


def _vertical_lines(ax):
    return [line for line in ax.lines if len(set(np.atleast_1d(line.get_xdata()))) == 1 and len(line.get_xdata()) == 2]


def test_training_curves_with_phase_boundary():
    fig = _render(training.training_curves(_history(["frozen", "frozen", "finetune", "finetune"])))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.lines) == 4  # training, validation, kept-epoch star, phase boundary
        (boundary,) = _vertical_lines(ax)
        assert boundary.get_xdata()[0] == pytest.approx(2.5)
    star = [line for line in fig.axes[0].lines if line.get_marker() == "*"][0]
    assert star.get_xdata()[0] == 3  # lowest validation loss


def test_training_curves_single_phase_and_missing_validation():
    fig = _render(training.training_curves(_history(["full"] * 3)[["epoch", "phase", "loss", "accuracy"]]))
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    with pytest.raises(ValueError, match="empty"):
        training.training_curves(_history([]))


def test_confusion_matrix_counts_normalised_and_both(pred):
    counts, shares = evaluation.confusion(pred), evaluation.confusion(pred, normalize=True)
    fig = _render(performance.confusion_matrix(counts))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # matrix + colour bar
    assert len(fig.axes[0].texts) == 49
    assert "3\n75 %" in _texts(fig)  # mel: 3 of 4 right
    fig = _render(performance.confusion_matrix(shares, normalized=True))
    assert len(fig.axes) == 2 and "75 %" in _texts(fig)
    fig = _render(performance.confusion_matrix(counts, shares))
    assert len(fig.axes) == 4
    assert len(fig.axes[0].texts) == 49 and len(fig.axes[1].texts) == 49


def test_confusion_by_model_puts_each_model_in_a_panel(pred):
    fig = _render(performance.confusion_by_model({"baseline": pred, "soft_attention": pred}, "external"))
    matrices = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in matrices] == [f"{m}, external (n = {len(pred)})"
                                                   for m in ("baseline", "soft_attention")]
    assert all(len(ax.texts) == 49 for ax in matrices) and "3\n75 %" in _texts(fig)


def test_internal_against_external_draws_both_sides_and_the_challenges_entries():
    from lesionscan.analysis import reported

    rows = [{"model": m, "metric": metric, "internal": 0.6, "internal_low": 0.5, "internal_high": 0.7,
             "external": 0.4, "external_low": 0.3, "external_high": 0.5, "change": -0.2}
            for m in ("baseline", "soft_attention") for metric in ("balanced_accuracy", "roc_auc_macro")]
    fig = _render(performance.internal_against_external(pd.DataFrame(rows), reported.challenge_results()))
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Balanced accuracy", "Macro ROC-AUC"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "baseline\ninternal", "baseline\nexternal", "soft_attention\ninternal", "soft_attention\nexternal"]
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "MetaOptima" in legend and "0.885" in legend


def test_roc_curves(pred):
    fig = _render(performance.roc_curves(pred))
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 1 + 3  # chance line + one per class present
    legend = ax.get_legend()
    entries = [t.get_text() for t in legend.get_texts()]
    assert any(e.startswith(label("mel")) and "AUC" in e for e in entries)
    assert "akiec" in legend.get_title().get_text()  # classes without test images are named


def test_metric_comparison(pred):
    m = evaluation.compute_metrics(pred)
    table = evaluation.comparison_table({"baseline": m, "soft_attention": m})
    fig = _render(performance.metric_comparison(table))
    assert isinstance(fig, Figure)
    summary, per_class = fig.axes
    assert len(summary.patches) == 2 * len(evaluation.SUMMARY_METRICS)
    assert len(per_class.patches) == 2 * len(CLASSES)
    only_summary = _render(performance.metric_comparison(table.set_index("metric").loc[["accuracy", "f1_macro"]]))
    assert len(only_summary.axes) == 1 and len(only_summary.axes[0].patches) == 4


def test_explanation_panel():
    heat = np.random.default_rng(0).random((3, 4))
    rows = [
        {"image": _image(), "maps": {"attention": heat, "Grad-CAM": heat}, "true": "mel", "pred": "mel",
         "confidence": 0.9},
        {"image": _image(), "maps": {"attention": heat, "Grad-CAM": np.zeros((3, 4))}, "true": "mel",
         "pred": "akiec", "confidence": 0.55},
    ]
    fig = _render(explanations.explanation_panel(rows))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 4 + 1  # text, image and 2 maps per row, colour bar
    assert sum(len(ax.images) for ax in fig.axes) == 6
    assert "WRONG" in fig.axes[4].texts[0].get_text() and "correct" in fig.axes[0].texts[0].get_text()
    with pytest.raises(ValueError):
        explanations.explanation_panel([])


def test_explanation_panel_outlines_the_mask_and_draws_each_style():
    heat = np.random.default_rng(0).random((3, 4))
    mask = np.zeros((30, 40), bool)
    mask[10:20, 10:30] = True
    rows = [{"image": _image(30, 40), "mask": mask, "maps": {"grid": heat[:2, :2], "heat": heat, "over": heat},
             "true": "bcc", "pred": "bcc", "confidence": 0.7}]
    fig = _render(explanations.explanation_panel(rows, styles={"grid": "grid", "heat": "heatmap"}, title="Basal"))
    image_ax, grid_ax, heat_ax, over_ax = fig.axes[1:5]
    assert image_ax.collections, "the mask is outlined"
    assert image_ax.get_title() == "image\nlesion\noutlined" and fig.get_suptitle() == "Basal"
    assert grid_ax.images[0].get_cmap().name == "gray" and grid_ax.images[0].get_interpolation() == "nearest"
    assert heat_ax.images[0].get_array().shape == (3, 4)      # the map alone
    assert over_ax.images[0].get_array().shape[:2] == (30, 40)  # laid over the image
    with pytest.raises(ValueError, match="unknown map style"):
        explanations.explanation_panel(rows, styles={"grid": "contour"})


def test_save_figure_writes_png_atomically(tmp_path):
    fig = _render(dataset.class_distribution(pd.DataFrame({"class": ["nv", "mel"], "count": [3, 1]})))
    path = style.save_figure(fig, tmp_path / "figures" / "classes.png")
    assert path == tmp_path / "figures" / "classes.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["classes.png"]


def test_save_figure_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    fig = _render(dataset.augmentation_gallery(_image(), []))

    def broken(target, **kwargs):
        open(target, "wb").write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        style.save_figure(fig, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_figures_render_themselves_in_jupyter():
    """A returned figure shows in a notebook through _repr_png_, with no pyplot figure to show twice."""
    fig = dataset.augmentation_gallery(_image(), [])
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------- one style for all


def _figure_functions():
    """{"module.name": function}: every public function of a ``lesionscan.figures`` module that returns a Figure."""
    found = {}
    for info in pkgutil.iter_modules(lesionscan.figures.__path__):
        module = importlib.import_module(f"lesionscan.figures.{info.name}")
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function) or function.__module__ != module.__name__:
                continue
            returns = inspect.signature(function, eval_str=True).return_annotation
            if isinstance(returns, type) and issubclass(returns, Figure):
                found[f"{module.__name__}.{name}"] = function
    return found


def test_every_figure_function_carries_the_book_style_once():
    """A new figure function without ``book_figure`` (or with it stacked twice) fails here, so no figure
    leaves the book's style unnoticed."""
    found = _figure_functions()
    assert len(found) >= 13 and {"lesionscan.figures.dataset.sample_grid",
                                 "lesionscan.figures.dataset.metadata_by_class"} <= set(found)
    unstyled = [name for name, function in found.items() if not style.is_book_figure(function)]
    assert not unstyled, f"figure functions without @book_figure: {unstyled}"
    twice = [name for name, function in found.items() if style.is_book_figure(function.__wrapped__)]
    assert not twice, f"@book_figure applied more than once: {twice}"
    registered = {name for name in style.FIGURES if name.startswith("lesionscan.figures.")}
    assert registered == set(found), "a @book_figure function should be public and annotated to return a Figure"


def test_book_figure_refuses_a_second_application():
    with pytest.raises(TypeError, match="already a book_figure"):
        style.book_figure(dataset.sample_grid)


def test_book_style_applies_inside_the_call_only():
    before = dict(matplotlib.rcParams)
    fig = dataset.sample_grid({"nv": [_image()]})
    assert fig.dpi == style.DPI  # figure.dpi from the book's rc settings, which sample_grid once lacked
    fig = dataset.class_distribution(pd.DataFrame({"class": ["nv", "mel"], "count": [3, 1]}))
    assert not fig.axes[0].spines["top"].get_visible() and not fig.axes[0].spines["right"].get_visible()
    assert dict(matplotlib.rcParams) == before


def test_figure_modules_keep_no_export_lists():
    """Public means no leading underscore; a hand-kept ``__all__`` only drifts from the code."""
    for info in pkgutil.iter_modules(lesionscan.figures.__path__):
        assert not hasattr(importlib.import_module(f"lesionscan.figures.{info.name}"), "__all__"), info.name
    assert not hasattr(lesionscan.figures, "__all__")
