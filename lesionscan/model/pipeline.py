"""Input pipeline: decode, resize, cache, balance, augment, preprocess, batch.

Memory stays bounded by keeping only uint8 images at the model's input size
(N x S x S x 3 bytes: 10,015 images at 224 px is 1.5 GB, at 96 px 0.28 GB);
float32 copies exist one batch at a time. Training batches are resampled
towards a fixed number of images per class (a new draw each epoch, from the
seed), shuffled and augmented; evaluation batches keep the input order and are
never augmented.

Augmentation is one random affine warp per image (flips, rotation, zoom and
shear composed into a single transform, so one interpolation) plus a
brightness shift, drawn by stateless random ops from (seed, epoch, batch).
Batches can therefore be augmented in parallel and still come out the same
for the same seed; with Keras' preprocessing layers (four warps, a shared
random state) the map had to run one batch at a time, several times slower.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.data.images import to_rgb8

# Default augmentation strengths (Keras preprocessing-layer factors).
ROTATION = 0.5      # fraction of a full turn either way: dermoscopy has no "up"
ZOOM = 0.15         # +-15 % zoom
BRIGHTNESS = 0.15   # +-15 % of the 0..255 range
SHEAR = 0.1         # shear factor on both axes


def preprocess(images):
    """ResNet50's ImageNet preprocessing of RGB images in 0..255 (any float/uint8 input).

    Numpy input is copied first: Keras' numpy path edits float arrays in place.
    """
    if isinstance(images, (tf.Tensor, tf.Variable)):
        return keras.applications.resnet50.preprocess_input(tf.cast(images, tf.float32))
    return keras.applications.resnet50.preprocess_input(np.array(images, dtype=np.float32, copy=True))


def load_image(path, image_size: int) -> np.ndarray:
    """Decode a JPEG/PNG file into a uint8 RGB array resized to image_size x image_size.

    Pixels become 8-bit RGB by ``images.to_rgb8``'s rule (16-bit >> 8, alpha dropped, EXIF orientation
    applied), the one every decoder of the package shares.
    """
    try:
        with Image.open(path) as img:
            img = to_rgb8(img, source=path).resize((int(image_size), int(image_size)), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


def augment_images(images, seed, rotation: float = ROTATION, zoom: float = ZOOM, brightness: float = BRIGHTNESS,
                   shear: float = SHEAR, flip: bool = True) -> tf.Tensor:
    """Randomly flipped, rotated, zoomed, sheared and brightened copies of float images in 0..255.

    ``images``: (N, H, W, 3); ``seed``: two integers. Stateless: the same seed
    gives the same output. Per image: horizontal and vertical flips (each with
    probability 1/2), a rotation by up to ``rotation`` of a full turn either way,
    a zoom of +-``zoom`` (both axes alike), a shear of +-``shear`` on each axis,
    all composed into one bilinear warp about the centre with reflected
    borders; then a brightness shift of +-``brightness`` x 255, clipped to
    0..255. The ranges are those of Keras' RandomFlip/RandomRotation/RandomZoom/
    RandomShear/RandomBrightness with the same factors; a factor of 0 (or
    flip=False) leaves that transform out.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    n = shape[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)

    def uniform(i, low, high):
        return tf.random.stateless_uniform([n], seeds[i], low, high)

    one, zero = tf.ones([n]), tf.zeros([n])
    flip_x = tf.where(uniform(0, 0.0, 1.0) < 0.5, -one, one) if flip else one
    flip_y = tf.where(uniform(1, 0.0, 1.0) < 0.5, -one, one) if flip else one
    angle = uniform(2, -rotation, rotation) * (2 * math.pi) if rotation else zero
    scale = 1.0 + uniform(3, -zoom, zoom) if zoom else one
    shear_x = uniform(4, -shear, shear) if shear else zero
    shear_y = uniform(5, -shear, shear) if shear else zero
    out = images
    if flip or rotation or zoom or shear:
        # Output -> input pixel map, flip . rotation . zoom . shear about the centre
        # (the composition Keras' layers apply one after another).
        cos, sin = tf.cos(angle), tf.sin(angle)
        a00 = flip_x * scale * (cos - sin * shear_y)
        a01 = flip_x * scale * (cos * shear_x - sin)
        a10 = flip_y * scale * (sin + cos * shear_y)
        a11 = flip_y * scale * (sin * shear_x + cos)
        cx = (tf.cast(shape[2], tf.float32) - 1) / 2
        cy = (tf.cast(shape[1], tf.float32) - 1) / 2
        transforms = tf.stack([a00, a01, cx - a00 * cx - a01 * cy,
                               a10, a11, cy - a10 * cx - a11 * cy, zero, zero], axis=1)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")
        out.set_shape(images.shape)  # the op loses the static height and width; the warp keeps them
    if brightness:
        delta = uniform(6, -brightness, brightness) * 255.0
        out = tf.clip_by_value(out + delta[:, None, None, None], 0.0, 255.0)
    return out


def augmented_copies(image: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` augmented versions of one uint8 image, exactly as training draws them (for the gallery)."""
    batch = np.repeat(np.asarray(image, dtype=np.float32)[None], n, axis=0)
    out = augment_images(batch, [int(seed), 0]).numpy()
    return [np.clip(x, 0, 255).astype(np.uint8) for x in out]


def balanced_indices(labels, target_per_class: int, seed: int) -> np.ndarray:
    """Indices that give every present class exactly ``target_per_class`` samples.

    A class with at least that many images is subsampled without replacement;
    a smaller class keeps all its images, repeated whole as often as fits, and
    the remainder is drawn without replacement. Returned in class order, not
    shuffled; deterministic for a given seed.
    """
    labels = np.asarray(labels)
    target = int(target_per_class)
    if target < 1:
        raise ParameterError(f"balance_target={target_per_class}: expected a positive integer")
    rng = np.random.default_rng(seed)
    out = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        repeats, rest = divmod(target, len(members))
        out.append(np.concatenate([np.tile(members, repeats), rng.choice(members, rest, replace=False)]))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def class_weights(labels) -> dict[int, float]:
    """sklearn's "balanced" weights n / (k * n_c) for the classes present in ``labels``."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights)}


class _ImageStore:
    """uint8 images at the input size, decoded on first use and (optionally) kept."""

    def __init__(self, paths, image_size: int, cache: bool):
        self.paths = [str(p) for p in paths]
        self.size = int(image_size)
        self.cache = cache
        # np.empty reserves address space only; pages are touched as images arrive.
        self.images = np.empty((len(self.paths), self.size, self.size, 3), np.uint8) if cache else None
        self.ready = np.zeros(len(self.paths), bool)
        self.pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Images at ``indices`` (decoding those not cached yet, in parallel)."""
        if not self.cache:
            return np.stack(list(self.pool.map(lambda i: load_image(self.paths[i], self.size), indices)))
        todo = np.unique(indices[~self.ready[indices]])
        for i, img in zip(todo, self.pool.map(lambda i: load_image(self.paths[i], self.size), todo)):
            self.images[i] = img
            self.ready[i] = True
        return self.images[indices]


def make_dataset(paths, labels, image_size: int, batch_size: int, training: bool, augment: bool = True,
                 balance_target: int | None = None, seed: int = 0, cache: bool = True,
                 n_classes: int = len(CLASSES)) -> tf.data.Dataset:
    """A tf.data pipeline of (preprocessed float32 images, one-hot float32 labels).

    training=True: each epoch draws ``balance_target`` images per class (all
    images once if None/0), shuffles them, and augments them if ``augment``;
    the draw and the order change per epoch and repeat for the same seed.
    training=False: every image once, in the given order, unaugmented.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(paths) != len(labels):
        raise ParameterError(f"make_dataset: {len(paths)} paths but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError("make_dataset: no images")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ParameterError(f"make_dataset: labels must be class indices 0..{n_classes - 1}")
    if int(batch_size) < 1:
        raise ParameterError(f"batch_size={batch_size}: expected a positive integer")
    store = _ImageStore(paths, image_size, cache)
    balance = int(balance_target or 0) if training else 0
    epoch_size = balance * len(np.unique(labels)) if balance else len(labels)
    batch_size = int(batch_size)
    state = {"epoch": 0}

    def order() -> np.ndarray:
        """Sample indices of the next epoch."""
        if not training:
            return np.arange(len(labels))
        epoch_seed = [int(seed), state["epoch"]]
        state["epoch"] += 1
        idx = balanced_indices(labels, balance, epoch_seed) if balance else np.arange(len(labels))
        return np.random.default_rng(epoch_seed).permutation(idx)

    def batches():
        """Yield uint8 image batches, integer labels and the batch's augmentation key for one epoch."""
        epoch = state["epoch"]
        idx = order()
        for batch_no, start in enumerate(range(0, len(idx), batch_size)):
            chunk = idx[start:start + batch_size]
            yield store.get(chunk), labels[chunk], np.int64(epoch) * 2**32 + batch_no

    size = int(image_size)
    augmenting = training and augment
    base_seed = tf.constant(int(seed), tf.int64)

    def to_model_input(x, y, key):
        """uint8 batch -> (augmented,) preprocessed float32 images and one-hot labels."""
        x = tf.cast(x, tf.float32)
        if augmenting:
            x = augment_images(x, tf.stack([base_seed, key]))
        # Warps lose the static shape; restore it, since layers such as the public-code
        # attention need the feature map's height when the model is traced.
        x = tf.ensure_shape(preprocess(x), (None, size, size, 3))
        return x, tf.one_hot(y, n_classes, dtype=tf.float32)

    ds = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None,), tf.int64),
        tf.TensorSpec((), tf.int64)))
    ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(epoch_size / batch_size)))
    # Stateless augmentation: batches may be processed in parallel, in a deterministic order.
    ds = ds.map(to_model_input, num_parallel_calls=PARALLEL_CALLS, deterministic=True)
    return without_autotune(ds.prefetch(PREFETCH_BATCHES))


# Fixed tf.data parallelism instead of the autotuner. A tf.data iterator with autotuning on owns a
# thread that re-plans the pipeline after waits that double from 10 ms (10, 20, 40 ms ...), and
# destroying the iterator waits for that thread's current wait to end. Keras makes a new iterator
# every epoch, so each epoch ended only at the next of 10.23 s, 20.47 s, 40.95 s ... after it
# began: 420 images trained in 7.7 s took 10.2 s (measured with benchmarks/training_speed.py
# --part loop). Two map calls and two batches in flight keep a 2-core CPU's step fed.
PARALLEL_CALLS = max(1, min(4, os.cpu_count() or 1))
PREFETCH_BATCHES = 2


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuner off (see :data:`PARALLEL_CALLS`), so its iterators end at once."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def epoch_class_weights(labels, balance_target: int | None) -> dict[int, float]:
    """Class weights for the classes an epoch contains: with balancing, every class is equal.

    Weights come from the per-epoch class counts (after balancing), so
    balancing and weighting never correct the imbalance twice; with
    balancing off they carry it alone.
    """
    labels = np.asarray(labels)
    if balance_target:
        labels = np.repeat(np.unique(labels), int(balance_target))
    return class_weights(labels)


def balance_table(labels, balance_target: int | None) -> pd.DataFrame:
    """Per class: training images, images drawn per epoch, and the class weight applied."""
    labels = np.asarray(labels)
    weights = epoch_class_weights(labels, balance_target)
    present = np.unique(labels)
    counts = {int(c): int((labels == c).sum()) for c in present}
    return pd.DataFrame({
        "class": [CLASSES[c] for c in counts],
        "training images": list(counts.values()),
        "per epoch": [int(balance_target) if balance_target else n for n in counts.values()],
        "class weight": [round(weights[c], 3) for c in counts],
    })
