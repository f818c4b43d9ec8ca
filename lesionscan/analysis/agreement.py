"""Do the explanation maps point at the lesion? Maps scored against HAM10000's lesion masks.

An explanation map (soft-attention map, Grad-CAM) is scored on each test
image against the dermatologists' lesion mask with three metrics, and so are
two reference maps on the same images:

* a **centred Gaussian** (``centre_gaussian``). HAM10000 images are framed
  with the lesion in the middle, so "look at the centre" already scores well;
  a map has learnt something about *where the lesion is* only if it beats
  this prior, not merely if it beats chance;
* a **uniform map** (``uniform_map``): chance level, i.e. the mask's area share.

Metrics (each between 0 and 1, higher = more on the lesion):

* ``pointing_game``: does the map's maximum fall inside the mask? With
  several pixels at the maximum, the share of them inside (the hit rate of
  breaking the tie at random).
* ``energy_inside``: the share of the map's positive mass inside the mask.
* ``topk_iou``: IoU of the mask with the map's k highest pixels, k = the
  mask's pixel count (so a perfect map scores 1).

An image whose mask is empty or covers the whole image cannot tell a good map
from a bad one (every map scores 0, or every map scores 1): it gets NaN in
every metric, and the tables count only finite scores (``n``).

Intervals are percentile bootstrap intervals over images, resampled within
each class (counts per class fixed), as in ``analysis.resampling``, with the same
resampled images for every method and metric, so differences between methods
are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from lesionscan.analysis.resampling import check_level, percentile_interval, stratified_counts
from lesionscan.analysis.wording import METRIC_LABELS
from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.data.images import to_rgb8

REFERENCE_METHODS: tuple[str, ...] = ("centre prior (Gaussian)", "uniform")
METRICS: tuple[str, ...] = ("pointing_game", "energy_inside", "topk_iou")
_CHUNK = 64  # images scored at a time: bounds the temporary arrays to a few MB at 224 x 224


# ---------------------------------------------------------------------------------------------------------------
# Masks


def load_mask(path, image_size: int) -> np.ndarray:
    """A lesion mask as a bool (image_size, image_size) array, on the same grid as ``pipeline.load_image``.

    The PNG is read as 8-bit grey (mode L) and resized to the square
    image_size x image_size with bilinear resampling, exactly as the images
    are (aspect ratio not kept), then thresholded at 128: a pixel is lesion
    when it is at least half lesion after resampling. Mask pixels thus line
    up with the model's input pixels.
    """
    size = _image_size(image_size)
    try:
        with Image.open(path) as img:
            grey = to_rgb8(img).convert("L").resize((size, size), Image.Resampling.BILINEAR)  # 16-bit masks too
            return np.asarray(grey, dtype=np.uint8) >= 128
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode lesion mask ({exc})") from exc


def load_masks(paths: Sequence, image_size: int) -> np.ndarray:
    """Masks of many images, (N, image_size, image_size) bool; a missing path (None, NaN, "") is a DataError."""
    size = _image_size(image_size)
    paths = list(paths)
    out = np.zeros((len(paths), size, size), dtype=bool)
    for row, path in enumerate(paths):
        if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
            raise DataError(f"row {row} has no lesion mask path (got {path!r}); score only images with a mask, "
                            "e.g. frame[frame['mask_path'].notna()]")
        out[row] = load_mask(path, size)
    return out


def _image_size(image_size) -> int:
    size = int(image_size)
    if size < 1 or size != image_size:
        raise ParameterError(f"image_size is {image_size!r}; expected a positive whole number of pixels")
    return size


# ---------------------------------------------------------------------------------------------------------------
# Reference maps


def _shape2(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ParameterError(f"map shape is {shape}; expected (height, width) with both at least 1")
    return shape


def centre_gaussian(shape, sigma_fraction: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the image, peak 1, float32 (H, W): the 'lesion is in the middle' prior.

    Its standard deviation is ``sigma_fraction`` of each side (so on a
    non-square grid it is an ellipse, as a centred lesion stretched to a
    square would be).
    """
    height, width = _shape2(shape)
    if not float(sigma_fraction) > 0:
        raise ParameterError(f"sigma_fraction is {sigma_fraction}; expected a positive fraction of the side")
    y = (np.arange(height) - (height - 1) / 2) / (sigma_fraction * height)
    x = (np.arange(width) - (width - 1) / 2) / (sigma_fraction * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def uniform_map(shape) -> np.ndarray:
    """A constant map, float32 (H, W): says nothing about where the lesion is (chance level)."""
    return np.ones(_shape2(shape), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def _checked(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) maps and bool masks of the same shape; a single 2-D map or mask counts as N = 1."""
    maps, masks = np.asarray(maps), np.asarray(masks)
    maps = maps[None] if maps.ndim == 2 else maps
    masks = masks[None] if masks.ndim == 2 else masks
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ParameterError(f"maps have shape {maps.shape} but masks {masks.shape}; expected the same "
                             "(N, height, width) for both: upsample the maps to the mask size first")
    if not (np.issubdtype(maps.dtype, np.number) or maps.dtype == bool):
        raise ParameterError(f"maps have dtype {maps.dtype}; expected numbers")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ParameterError("masks hold values other than 0 and 1; expected boolean lesion masks (load_mask)")
        masks = masks.astype(bool)
    return maps, masks


def _chunks(maps: np.ndarray, masks: np.ndarray):
    """(first index, maps as float64 (n, H*W), masks (n, H*W)) in chunks; non-finite maps are rejected."""
    n, pixels = len(maps), int(np.prod(maps.shape[1:]))
    for start in range(0, n, _CHUNK):
        values = maps[start:start + _CHUNK].reshape(-1, pixels).astype(np.float64)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise ParameterError(f"the map of image {start + int(np.flatnonzero(bad)[0])} has NaN or infinite "
                                 "values; fix the map before scoring it")
        yield start, values, masks[start:start + _CHUNK].reshape(-1, pixels)


def _undefined(mask: np.ndarray) -> np.ndarray:
    """Images whose mask is empty or full: no map can do better or worse than another there."""
    area = mask.sum(axis=1)
    return (area == 0) | (area == mask.shape[1])


def pointing_game(maps, masks) -> np.ndarray:
    """Per image, the share of the map's maximal pixels that lie inside the mask (N,).

    Maximal: within 1e-6 x max(|max|, 1) of the maximum, so float noise does
    not split a plateau. A unique maximum scores exactly 0 or 1 (the usual
    pointing game); with ties the score is the expected hit of breaking them
    at random, so a constant map scores the mask's area share. NaN where the
    mask is empty or covers the whole image.
    """
    maps, masks = _checked(maps, masks)
    out = np.empty(len(maps))
    for start, values, mask in _chunks(maps, masks):
        top = values.max(axis=1, keepdims=True)
        peak = values >= top - 1e-6 * np.maximum(np.abs(top), 1.0)
        score = (peak & mask).sum(axis=1) / peak.sum(axis=1)
        out[start:start + len(values)] = np.where(_undefined(mask), np.nan, score)
    return out


def energy_inside(maps, masks) -> np.ndarray:
    """Per image, the map's positive mass inside the mask over its whole positive mass (N,).

    Negative values count as 0 (Grad-CAM and attention maps are
    non-negative anyway). A map with no positive mass at all is flat: it
    scores the mask's area share, which is the limit of a constant map
    (what a uniform map scores) rather than a fallback that hides an error.
    NaN where the mask is empty or covers the whole image.
    """
    maps, masks = _checked(maps, masks)
    out = np.empty(len(maps))
    for start, values, mask in _chunks(maps, masks):
        positive = np.maximum(values, 0.0)
        total = positive.sum(axis=1)
        inside = (positive * mask).sum(axis=1)
        area_share = mask.mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(total > 0, inside / total, area_share)
        out[start:start + len(values)] = np.where(_undefined(mask), np.nan, score)
    return out


def topk_iou(maps, masks, seed: int = 0) -> np.ndarray:
    """Per image, IoU of the mask with the map's k highest pixels, k = the mask's pixel count (N,).

    Equal values are ordered by a fixed pseudo-random order of the pixels,
    drawn for image i from ``numpy.random.default_rng([seed, i])``: the same
    seed gives the same scores, and a uniform map selects a random k-subset
    (expected IoU about a / (2 - a) for area share a) instead of, say, the
    top rows. Since the selection has as many pixels as the mask, a perfect
    map scores 1 and the complement of the mask 0. NaN where the mask is
    empty or covers the whole image.
    """
    seed = _seed(seed)
    maps, masks = _checked(maps, masks)
    out = np.empty(len(maps))
    for start, values, mask in _chunks(maps, masks):
        undefined = _undefined(mask)
        pixels = values.shape[1]
        for j in range(len(values)):
            if undefined[j]:
                out[start + j] = np.nan
                continue
            v, m = values[j], mask[j]
            k = int(m.sum())
            threshold = np.partition(v, pixels - k)[pixels - k]  # the k-th highest value
            above, tied = v > threshold, v == threshold
            need = k - int(above.sum())  # how many of the tied pixels complete the top k
            if need == int(tied.sum()):
                chosen = above | tied
            else:
                rank = np.random.default_rng([seed, start + j]).permutation(pixels)
                cut = np.partition(rank[tied], need - 1)[need - 1]
                chosen = above | (tied & (rank <= cut))
            inter = int((chosen & m).sum())
            out[start + j] = inter / (2 * k - inter)
    return out


def _seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ParameterError(f"seed is {seed!r}; expected a non-negative integer")
    return int(seed)


_METRIC_FUNCTIONS = {"pointing_game": pointing_game, "energy_inside": energy_inside, "topk_iou": topk_iou}


# ---------------------------------------------------------------------------------------------------------------
# Scores of many methods, and their intervals


def agreement_scores(maps_by_method: Mapping[str, np.ndarray], masks, image_ids: Sequence, labels: Sequence[str],
                     seed: int = 0) -> pd.DataFrame:
    """Every metric of every method on every image, long format: image_id, dx, method, metric, score.

    ``maps_by_method``: {method name: (N, H, W) maps}, on the grid of
    ``masks`` (N, H, W). The two reference maps (``REFERENCE_METHODS``) are
    added on the same images. Images with an empty or full mask keep their
    rows with NaN scores, so the frame says how many images were left out.
    ``seed`` orders ties in ``topk_iou``.
    """
    seed = _seed(seed)
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ParameterError(f"masks have shape {masks.shape}; expected (N, height, width)")
    n = len(masks)
    image_ids, labels = list(image_ids), [str(dx) for dx in labels]
    if len(image_ids) != n or len(labels) != n:
        raise ParameterError(f"{n} masks but {len(image_ids)} image ids and {len(labels)} labels; expected one "
                             "of each per mask")
    unknown = sorted(set(labels) - set(CLASSES))
    if unknown:
        raise ParameterError(f"unknown class label(s) {', '.join(unknown)}; expected codes among {', '.join(CLASSES)}")
    clash = [name for name in maps_by_method if name in REFERENCE_METHODS]
    if clash:
        raise ParameterError(f"method name(s) {', '.join(clash)} are reserved for the reference maps; rename them")
    methods = dict(maps_by_method)
    methods[REFERENCE_METHODS[0]] = np.broadcast_to(centre_gaussian(masks.shape[1:]), masks.shape)
    methods[REFERENCE_METHODS[1]] = np.broadcast_to(uniform_map(masks.shape[1:]), masks.shape)
    frames = []
    for method, maps in methods.items():
        for metric in METRICS:
            function = _METRIC_FUNCTIONS[metric]
            score = function(maps, masks, seed=seed) if metric == "topk_iou" else function(maps, masks)
            frames.append(pd.DataFrame({"image_id": image_ids, "dx": labels, "method": method, "metric": metric,
                                        "score": score}))
    return pd.concat(frames, ignore_index=True)


def _wide(scores: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Scores as one row per image and one column per (method, metric), and each image's class index."""
    missing = {"image_id", "dx", "method", "metric", "score"} - set(scores.columns)
    if missing:
        raise ParameterError(f"scores lack column(s) {', '.join(sorted(missing))}; build them with agreement_scores")
    if scores.empty:
        raise ParameterError("scores are empty: no image was scored")
    twice = scores.duplicated(["image_id", "method", "metric"])
    if twice.any():
        row = scores[twice].iloc[0]
        raise ParameterError(f"image {row['image_id']!r} is scored more than once by {row['method']!r} on "
                             f"{row['metric']!r}; each image once per method and metric")
    classes = scores.drop_duplicates(["image_id", "dx"])
    if classes["image_id"].duplicated().any():
        image = classes.loc[classes["image_id"].duplicated(), "image_id"].iloc[0]
        raise ParameterError(f"image {image!r} has more than one class in the scores")
    unknown = sorted(set(classes["dx"].astype(str)) - set(CLASSES))
    if unknown:
        raise ParameterError(f"unknown class label(s) {', '.join(unknown)} in the scores")
    wide = scores.pivot(index="image_id", columns=["method", "metric"], values="score")
    wide = wide.reindex(classes["image_id"].to_numpy())  # image order of first appearance
    y = np.array([CLASSES.index(str(dx)) for dx in classes["dx"]])
    return wide.astype(float), y


def _resampled_means(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n_resamples, columns) mean of the finite values of each column, images weighted by draw counts."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(finite, values, 0.0)) / (w @ finite)


def _percentiles(resampled: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the percentile interval of the defined (finite) resampled values; NaN where none is."""
    columns = range(resampled.shape[1])
    bounds = np.array([percentile_interval(resampled[:, c], level)[:2] for c in columns]).reshape(-1, 2)
    return bounds[:, 0], bounds[:, 1]


def agreement_table(scores: pd.DataFrame, n_resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """Mean score per method, metric and class with a stratified bootstrap interval over images.

    Columns: method, metric, class ("all", then each class present, in
    CLASSES order), n (images with a finite score), mean, low, high. "all"
    is the mean over all scored images (so nv, the largest class, weighs
    most); its interval resamples images within each class with replacement,
    class counts fixed, from ``numpy.random.default_rng(seed)``. The per-class
    rows use the same draws restricted to the class, and every method and
    metric sees the same resampled images. A class with one image gets
    low = high = its value. ``level`` is also kept in ``attrs["level"]``.
    """
    level = check_level(level)
    wide, y = _wide(scores)
    values = wide.to_numpy()
    w = stratified_counts(y, n_resamples, seed)
    groups = [("all", np.arange(len(y)))] + [(dx, np.flatnonzero(y == k)) for k, dx in enumerate(CLASSES)
                                             if (y == k).any()]
    stats = {}
    for name, members in groups:
        sub = values[members]
        finite = np.isfinite(sub)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, sub, 0.0).sum(axis=0) / finite.sum(axis=0)
        low, high = _percentiles(_resampled_means(w[:, members], sub), level)
        stats[name] = (finite.sum(axis=0), mean, low, high)
    rows = []
    methods = list(dict.fromkeys(wide.columns.get_level_values("method")))
    metrics = list(dict.fromkeys(wide.columns.get_level_values("metric")))
    metrics = [m for m in METRICS if m in metrics] + [m for m in metrics if m not in METRICS]
    for method in methods:
        for metric in metrics:
            if (method, metric) not in wide.columns:
                continue
            c = wide.columns.get_loc((method, metric))
            for name, _ in groups:
                n, mean, low, high = stats[name]
                rows.append((method, metric, name, int(n[c]), float(mean[c]), float(low[c]), float(high[c])))
    table = pd.DataFrame(rows, columns=["method", "metric", "class", "n", "mean", "low", "high"])
    table.attrs["level"] = level
    return table


def summary(table: pd.DataFrame, class_: str = "all", digits: int = 3) -> pd.DataFrame:
    """One row per method, one column per metric, "mean (low to high)": the table a reader scans.

    ``table`` is :func:`agreement_table`'s long table; ``class_`` picks its
    rows ("all" or a class code). The number of images scored is the last column.
    """
    rows = table[table["class"] == class_]
    if rows.empty:
        raise ParameterError(f"the agreement table has no rows for class {class_!r}")
    text = rows.apply(lambda r: f"{r['mean']:.{digits}f} ({r['low']:.{digits}f} to {r['high']:.{digits}f})", axis=1)
    wide = rows.assign(text=text).pivot(index="method", columns="metric", values="text")
    wide = wide.reindex(index=list(dict.fromkeys(rows["method"])),
                        columns=[m for m in METRICS if m in wide.columns])
    wide.columns = [METRIC_LABELS.get(m, m) for m in wide.columns]
    wide["images"] = rows.groupby("method", sort=False)["n"].max().reindex(wide.index)
    return wide.rename_axis(None)


def differences_summary(differences: Sequence[Mapping], digits: int = 3) -> pd.DataFrame:
    """:func:`paired_difference` results as a readable table: reference, metric, both means, difference, interval."""
    return pd.DataFrame([{
        "against": d["reference"], "metric": METRIC_LABELS.get(d["metric"], d["metric"]),
        "map": f"{d['mean_method']:.{digits}f}", "reference": f"{d['mean_reference']:.{digits}f}",
        "difference": f"{d['difference']:+.{digits}f}",
        f"{100 * d.get('level', 0.95):g} % interval": f"{d['low']:+.{digits}f} to {d['high']:+.{digits}f}",
    } for d in differences])


def shrink(maps, side: int = 24) -> np.ndarray:
    """Maps averaged down to about ``side`` x ``side`` (block means), to keep many of them in memory."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ParameterError(f"maps have shape {maps.shape}; expected (n_images, height, width)")
    fy, fx = max(1, maps.shape[1] // side), max(1, maps.shape[2] // side)
    h, w = maps.shape[1] // fy * fy, maps.shape[2] // fx * fx
    return maps[:, :h, :w].reshape(len(maps), h // fy, fy, w // fx, fx).mean(axis=(2, 4))


def likeness_to_average(maps) -> np.ndarray:
    """Per image, the Pearson correlation of its map with the average map over all images.

    Near 1 for every image means the map hardly depends on the image: a fixed
    pattern (for example a preference for one part of the feature grid)
    rather than a look at this image's lesion. A constant map gives NaN.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    average = flat.mean(axis=0)
    average = average - average.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred @ average / (np.linalg.norm(centred, axis=1) * np.linalg.norm(average))


def likeness_table(likeness: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per method, the median and the lowest decile of :func:`likeness_to_average` over the images."""
    return pd.DataFrame([{"method": method, "median correlation with the average map": float(np.nanmedian(r)),
                          "lowest 10 %": float(np.nanpercentile(r, 10))} for method, r in likeness.items()])


def paired_difference(scores: pd.DataFrame, method: str, reference: str, metric: str, n_resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict:
    """mean(method) - mean(reference) on the images both score, with a paired stratified bootstrap interval.

    Both means are taken over the same images (those where both scores are
    finite) and both are recomputed on the same resamples (within each
    class, with replacement, counts fixed), so the interval reflects that the
    maps were scored on the same images. Positive = the method is more on the
    lesion. Returns method, reference, metric, n, mean_method,
    mean_reference, difference, low, high, and level.
    """
    level = check_level(level)
    wide, y = _wide(scores)
    for name in (method, reference):
        if (name, metric) not in wide.columns:
            methods = ", ".join(dict.fromkeys(wide.columns.get_level_values("method")))
            metrics = ", ".join(dict.fromkeys(wide.columns.get_level_values("metric")))
            raise ParameterError(f"no scores for method {name!r} on metric {metric!r}; methods: {methods}; "
                                 f"metrics: {metrics}")
    a, b = wide[(method, metric)].to_numpy(), wide[(reference, metric)].to_numpy()
    both = np.isfinite(a) & np.isfinite(b)
    out = {"method": method, "reference": reference, "metric": metric, "n": int(both.sum()),
           "mean_method": np.nan, "mean_reference": np.nan, "difference": np.nan, "low": np.nan, "high": np.nan,
           "level": level}
    if not both.any():
        return out
    a, b, y = a[both], b[both], y[both]
    w = stratified_counts(y, n_resamples, seed)
    diffs = (w @ (a - b)) / w.sum(axis=1)
    low, high = _percentiles(diffs[:, None], level)
    out.update(mean_method=float(a.mean()), mean_reference=float(b.mean()), difference=float((a - b).mean()),
               low=float(low[0]), high=float(high[0]))
    return out


