"""The interpretability chapter's work: which test images to show, their maps, and maps of the whole test subset.

Five explanation methods are computed for the two main models: the soft
attention map of the attention model (summed over heads), and Grad-CAM and
Grad-CAM++ of both models (tf-keras-vis via ``gradcam.GradcamExplainer``; for the
attention model on its attention-weighted features). Each map explains the
class the model predicted, the decision it actually made.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError
from lesionscan.explain import attention, gradcam
from lesionscan.model import pipeline, saving
from lesionscan.study import experiments, training_cache
from lesionscan.study.run_folder import Run

ATTENTION = "soft attention"
GRADCAM_METHODS = {  # name -> (model, Grad-CAM++?)
    "Grad-CAM, attention model": ("soft_attention", False), "Grad-CAM++, attention model": ("soft_attention", True),
    "Grad-CAM, baseline": ("baseline", False), "Grad-CAM++, baseline": ("baseline", True),
}
METHODS = (ATTENTION, *GRADCAM_METHODS)

# How figures.explanations.explanation_panel shows each column of the examples (default: laid over the image).
PANEL_STYLES = {"attention, feature grid": "grid", "attention, heatmap": "heatmap"}

# The report's confusions for actinic keratosis (akiec): with melanoma first, then with bkl and nv.
_PREFERRED_MISTAKES = {"akiec": ("mel", "bkl", "nv")}


def choose_examples(predictions: pd.DataFrame, per_class: int = 2) -> pd.DataFrame:
    """Test images to show, per true class: the most confident correct ones, then mistakes.

    Of ``per_class`` images, the first half (rounded up) are correct
    predictions and the rest mistakes, each the most confident of its kind,
    so the chapter shows what a model gets right and how it fails. A class
    short of mistakes (or of correct ones) fills up with the other kind. For
    akiec, mistakes the report names (as mel, then bkl or nv) come first when
    they occur. Adds columns ``outcome`` ("correct"/"wrong") and
    ``confidence``.
    """
    if per_class < 1:
        raise ParameterError(f"explain_per_class={per_class}: expected at least 1")
    frame = predictions.copy()
    frame["confidence"] = frame[list(evaluation.PROB_COLUMNS)].max(axis=1)
    frame["outcome"] = np.where(frame["pred"] == frame["dx"], "correct", "wrong")
    chosen = []
    for dx in CLASSES:
        rows = frame[frame["dx"] == dx]
        correct = rows[rows["outcome"] == "correct"].sort_values("confidence", ascending=False)
        wrong = rows[rows["outcome"] == "wrong"]
        preferred = _PREFERRED_MISTAKES.get(dx, ())
        rank = wrong["pred"].map(lambda p, order=preferred: order.index(p) if p in order else len(order))
        wrong = wrong.assign(_rank=rank).sort_values(["_rank", "confidence"], ascending=[True, False])
        n_correct = min(len(correct), max(per_class - len(wrong), (per_class + 1) // 2))
        n_wrong = min(len(wrong), per_class - n_correct)
        chosen += [correct.head(n_correct), wrong.head(n_wrong).drop(columns="_rank")]
    return pd.concat(chosen, ignore_index=True)


def load_models(run: Run) -> dict:
    """The run's trained attention model and baseline."""
    return {"soft_attention": saving.load_model(run.model_path("soft_attention")),
            "baseline": saving.load_model(run.model_path("baseline"))}


def explainers(trained: dict) -> dict[str, gradcam.GradcamExplainer]:
    """The four Grad-CAM methods of both models, each set up once for every batch it explains."""
    return {name: gradcam.GradcamExplainer(trained[model], plus=plus)
            for name, (model, plus) in GRADCAM_METHODS.items()}


def method_maps(trained: dict, batch_preprocessed: np.ndarray, predicted: dict[str, np.ndarray],
                methods: dict[str, gradcam.GradcamExplainer] | None = None) -> dict[str, np.ndarray]:
    """Every method's (N, S, S) map for one batch; ``predicted`` holds each model's predicted class indices.

    ``methods``: :func:`explainers` of ``trained``, built once by a caller that explains many batches.
    """
    size = batch_preprocessed.shape[1:3]
    methods = explainers(trained) if methods is None else methods
    maps = {ATTENTION: attention.attention_maps(trained["soft_attention"], batch_preprocessed, upsample_to=size)}
    for name, (model, _) in GRADCAM_METHODS.items():
        maps[name] = methods[name](batch_preprocessed, predicted[model])
    return maps


def _predicted(run: Run, image_ids) -> dict[str, np.ndarray]:
    """Each main model's predicted class index for ``image_ids``, from its saved test predictions."""
    out = {}
    for name in ("soft_attention", "baseline"):
        pred = run.read_predictions(name).set_index("image_id")
        out[name] = pred.loc[list(image_ids), "pred"].map(CLASSES.index).to_numpy()
    return out


def images_and_masks(run: Run) -> pd.DataFrame:
    """The test subset with image and mask paths (mask_path None where the data has no mask)."""

    test = experiments.subsets(run)["test"]
    masks = run.dataset[["image_id", "mask_path"]]
    return test.merge(masks, on="image_id", how="left")


def example_rows(run: Run, trained: dict, per_class: int) -> list[dict]:
    """Rows for ``explanation_panel``: image, mask (if any), every method's map and the raw attention grid."""
    from lesionscan.analysis import agreement

    examples = choose_examples(run.read_predictions("soft_attention"), per_class)
    frame = images_and_masks(run).set_index("image_id").loc[examples["image_id"]]
    size = run.parameters.pipeline.image_size
    raw = np.stack([pipeline.load_image(path, size) for path in frame["image_path"]])
    batch = pipeline.preprocess(raw.astype("float32"))
    maps = method_maps(trained, batch, _predicted(run, examples["image_id"]))
    grid = attention.attention_maps(trained["soft_attention"], batch)
    rows = []
    for i, example in enumerate(examples.itertuples()):
        mask_path = frame["mask_path"].iloc[i]
        rows.append({"image_id": example.image_id, "image": raw[i], "true": example.dx, "pred": example.pred,
                     "confidence": float(example.confidence),
                     "mask": None if pd.isna(mask_path) else agreement.load_mask(mask_path, size),
                     "maps": {"attention, feature grid": grid[i], "attention, heatmap": maps[ATTENTION][i],
                              "attention, overlay": maps[ATTENTION][i],
                              **{name: m[i] for name, m in maps.items() if name != ATTENTION}}})
    return rows


def maps_by_batch(run: Run, trained: dict, batch_size: int = 64, progress: bool = True
                     ) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]]:
    """(frame, maps by method, masks) for the test images with a mask, one batch at a time.

    Batches keep memory flat (five maps per image at 224 px would hold
    about 1 GB for the report's 828 test images at once).
    """
    from lesionscan.analysis import agreement

    frame = images_and_masks(run)
    frame = frame[frame["mask_path"].notna()].reset_index(drop=True)
    size = run.parameters.pipeline.image_size
    methods = explainers(trained) if len(frame) else {}
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start:start + batch_size]
        raw = np.stack([pipeline.load_image(path, size) for path in part["image_path"]])
        maps = method_maps(trained, pipeline.preprocess(raw.astype("float32")), _predicted(run, part["image_id"]),
                           methods)
        if progress:
            print(f"maps of test images {start + 1}-{start + len(part)} of {len(frame)}", flush=True)
        yield part, maps, agreement.load_masks(part["mask_path"].tolist(), size)


def score_test_subset(run: Run, trained: dict, batch_size: int = 64, progress: bool = True
                      ) -> tuple[pd.DataFrame | None, dict[str, np.ndarray]]:
    """Every map of every test image with a mask scored against it, and each map's likeness to its average.

    Returns ``agreement.agreement_scores`` rows for all batches (None when the
    data has no masks) and, per method, each image's correlation with the
    method's average map (``agreement.likeness_to_average``, on maps shrunk to
    about 24 x 24 so that all of them fit in memory).
    """
    from lesionscan.analysis import agreement

    parts, small = [], {}
    for frame, maps, masks in maps_by_batch(run, trained, batch_size=batch_size, progress=progress):
        parts.append(agreement.agreement_scores(maps, masks, frame["image_id"].tolist(), frame["dx"].tolist(),
                                                seed=run.parameters.seed))
        for method, batch in maps.items():
            small.setdefault(method, []).append(agreement.shrink(batch))
    if not parts:
        return None, {}
    likeness = {method: agreement.likeness_to_average(np.concatenate(batches)) for method, batches in small.items()}
    return pd.concat(parts, ignore_index=True), likeness


# Source whose change alters the maps or their scores: a cached score table is keyed by it.
MAP_CODE = ("explain/attention.py", "explain/gradcam.py", "analysis/agreement.py", "study/interpretability.py",
            "model/pipeline.py")
_SCORE_FILES = {"scores": ".csv", "likeness": ".npz"}


def cached_scores(run: Run, trained: dict, batch_size: int = 64, progress: bool = True
                  ) -> tuple[pd.DataFrame | None, dict[str, np.ndarray]]:
    """:func:`score_test_subset`, kept in the training cache under the two models' keys.

    The scores depend only on the two trained models (their cache keys
    cover recipe, data and split), the masks (in the data checksum), the
    seed (top-k tie-breaking) and the code of :data:`MAP_CODE`; so a rerun
    that reuses both models reuses their scores too, instead of recomputing
    Grad-CAM for every test image. With ``training_cache`` off, or data
    without masks, nothing is kept.
    """
    p = run.parameters
    if not p.train.training_cache:
        return score_test_subset(run, trained, batch_size, progress)
    inputs = {"kind": "map scores", "models": {kind: experiments.cache_key(run, p.recipe(kind))
                                               for kind in ("soft_attention", "baseline")},
              "seed": p.seed, "code_sha256": training_cache.code_hash(MAP_CODE)}
    key = training_cache.key_of(inputs)
    cache = training_cache.TrainingCache(run.map_cache_dir, _SCORE_FILES)
    entry = cache.lookup(key)
    if entry is not None:
        with np.load(entry.path("likeness")) as stored:
            likeness = {name: stored[name] for name in stored.files}
        if progress:
            print(f"map scores reused from the cache (entry {key[:16]}, computed {entry.created})", flush=True)
        return pd.read_csv(entry.path("scores")), likeness
    started = time.monotonic()
    scores, likeness = score_test_subset(run, trained, batch_size, progress)
    if scores is not None:
        with tempfile.TemporaryDirectory() as folder:
            paths = {"scores": Path(folder) / "scores.csv", "likeness": Path(folder) / "likeness.npz"}
            scores.to_csv(paths["scores"], index=False)
            np.savez(paths["likeness"], **likeness)
            cache.store(key, inputs, paths, time.monotonic() - started)
    return scores, likeness
