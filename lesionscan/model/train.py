"""Training schedules of the report: two-phase fine-tuning, or one full phase.

Two-phase (with pretrained weights): phase "frozen" trains the attention and
head on a frozen backbone; phase "finetune" unfreezes the last 40 % of the
ResNet50 layers, BatchNormalization excluded, at a lower learning rate.
Full (random initialisation): everything trains from the start, because a
frozen random backbone teaches the head little. Each phase recompiles with
Adam and label-smoothed cross-entropy, stops early on validation loss
(restoring the best weights) and lowers the learning rate on plateaus, or along a
cosine from the phase's rate towards 0 (``lr_schedule``).
Only training and validation data are ever passed in: never the test set.

Feature caching (``TrainSection.cache_features``): a frozen backbone gives the
same features every time it sees the same input, so phase "frozen" runs the
backbone once and trains the attention and head on stored features. The model
is cut where backbone tensors feed non-backbone layers (one or more of them,
:func:`feature_tensors`): ``feature_model`` maps images to those tensors,
``head_model`` maps them to the prediction, sharing the model's layer objects
and so its weights (:func:`split_at_backbone`). What is cached is *draws*:
whole passes over the training dataset as the pipeline yields them, each with
its own balanced sample and augmentation. ``cache_draws`` passes are stored
(float16, one pass computed per draw, the backbone's cost of one ordinary
epoch each); phase-1 epoch ``e`` trains on draw ``e mod cache_draws`` in a new
order from the seed. So phase 1 sees ``cache_draws`` augmentations and
balanced samples instead of one per epoch: the price of the speed-up. The
validation features are computed once. If the cache would exceed
``cache_max_gb`` or half the machine's RAM (or the dataset is endless, or the
feature model has trainable weights), phase 1 runs through the image pipeline
as without caching. At 224 px one sample's ResNet50 features take 200 kB
(7 x 7 x 2048 float16): the paper profile's 14,000 images per epoch plus
validation need about 3 GB per draw; at 96 px 37 kB.
Phases "finetune" and "full" always run through the image pipeline.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import TrainSection
from lesionscan.model.networks import backbone_layers
from lesionscan.model.pipeline import PREFETCH_BATCHES, without_autotune

PHASES = ("frozen", "finetune", "full")
HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "inputs"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; optionally make TF ops deterministic.

    Call before building models and datasets: the same seed then gives the
    same initial weights, sample draws, augmentations and training history.
    """
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework.config import disable_op_determinism  # no public API for this

        disable_op_determinism()


def set_phase(model: keras.Model, phase: str, unfreeze_fraction: float = 0.4) -> None:
    """Set which layers train in ``phase`` ("frozen", "finetune" or "full").

    frozen: no backbone layer trains (attention and head do).
    finetune: the last ``unfreeze_fraction`` of the backbone layers train,
    except BatchNormalization, which stays frozen and so runs in inference mode
    (Keras 3 uses moving statistics for a non-trainable BN layer).
    full: every layer trains, BatchNormalization included.
    Recompile afterwards for the change to take effect.
    """
    if phase not in PHASES:
        raise ParameterError(f"phase {phase!r}: expected one of {', '.join(PHASES)}")
    if not 0 <= unfreeze_fraction <= 1:
        raise ParameterError(f"unfreeze_fraction={unfreeze_fraction}: expected a fraction in [0, 1]")
    model.trainable = True
    for layer in model.layers:  # Keras 3 does not push model.trainable down to a functional model's layers
        layer.trainable = True
    if phase == "full":
        return
    backbone = backbone_layers(model)
    first = len(backbone) - (round(len(backbone) * unfreeze_fraction) if phase == "finetune" else 0)
    for i, layer in enumerate(backbone):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def configure_precision() -> str:
    """Mixed precision (keras "mixed_float16") on a GPU, float32 otherwise; return the policy name.

    Call before building the model: layers take the global policy when they
    are created. On a CPU float16 arithmetic is slow, so the policy is (re)set
    to float32 there. Under mixed_float16 Keras wraps the optimizer in a
    LossScaleOptimizer at compile time; the model's final softmax must be
    float32 (its Dense layer built with ``dtype="float32"``).
    """
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return keras.mixed_precision.global_policy().name


def feature_tensors(model: keras.Model) -> list:
    """The backbone tensors that feed non-backbone layers, in a fixed order.

    Walks back from the model's outputs through the non-backbone layers and
    stops at the first tensor made by a backbone layer (``networks.backbone_layers``)
    or by the input layer; a head that reads several backbone stages gives
    several tensors.
    """
    backbone = {id(layer) for layer in backbone_layers(model)}
    found, seen_tensors, seen_nodes = [], set(), set()

    def visit(tensor):
        operation, node_index, _ = tensor._keras_history
        if id(operation) in backbone or isinstance(operation, keras.layers.InputLayer):
            if id(tensor) not in seen_tensors:
                seen_tensors.add(id(tensor))
                found.append(tensor)
            return
        node = operation._inbound_nodes[node_index]
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        for parent in node.input_tensors:
            visit(parent)

    for output in keras.tree.flatten(model.outputs):
        visit(output)
    return found


def split_at_backbone(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(feature_model, head_model)``: images -> backbone features -> prediction.

    Both are functional models over the model's own layer objects, so they
    share its weights: training ``head_model`` trains ``model``'s attention and
    head, and ``head_model(feature_model(x))`` equals ``model(x)``. The feature
    model has one output per tensor of :func:`feature_tensors`, the head model
    one input each, in the same order. (Keras 3 builds a model on intermediate
    tensors by giving the head fresh Input layers and re-linking the same
    layers to them.)
    """
    tensors = feature_tensors(model)
    inputs = tensors[0] if len(tensors) == 1 else tensors
    feature_model = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, inputs,
                                name=f"{model.name}_features")
    head_model = keras.Model(inputs, model.outputs[0] if len(model.outputs) == 1 else model.outputs,
                             name=f"{model.name}_head")
    return feature_model, head_model


_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class FeatureCache:
    """Backbone features of whole dataset passes, kept in memory.

    ``features``: one array per feature tensor, samples first (float16 unless
    a value overflowed float16, then float32 for that tensor); ``targets``: the
    rest of each dataset element (labels, and sample weights if the dataset had
    them), samples first; ``draws``: (start, stop) sample range of each pass;
    ``batch_size``: the dataset's batch size (its first batch's length).
    """

    features: list
    targets: list
    draws: list
    batch_size: int

    @property
    def nbytes(self) -> int:
        """Memory held by the cache, in bytes."""
        return int(sum(a.nbytes for a in self.features) + sum(a.nbytes for a in self.targets))

    @property
    def n_samples(self) -> int:
        """Samples cached (all draws together)."""
        return int(len(self.targets[0])) if self.targets else 0


def _batch_predictor(model: keras.Model):
    """A function of one batch giving ``model``'s outputs, under a distribution strategy too.

    Under a MirroredStrategy ``predict_on_batch`` hands every replica the whole batch and returns its
    outputs once per replica, and ``predict`` costs a distributed dataset per batch: there the batch
    runs on one device instead, through the model's own variables (a forward pass: the same features).
    """
    if model.distribute_strategy.num_replicas_in_sync == 1:
        return model.predict_on_batch
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def extract_features(feature_model: keras.Model, dataset, draws: int = 1,
                     max_bytes: float | None = None, dtype=np.float16) -> FeatureCache | None:
    """Run ``feature_model`` over ``draws`` passes of ``dataset`` (batch by batch); store the outputs.

    Each pass iterates the dataset anew, so a training pipeline gives a new
    balanced draw and augmentation per pass. Features are stored as
    ``dtype``: float16 by default (float32 for a tensor whose values overflow
    float16), float32 where they must give the model's own predictions. Returns None if the
    dataset is endless, or if the cache would need more than ``max_bytes``
    (estimated at the first batch from the dataset's cardinality): then one
    batch was computed and one pass started, which moves a training
    pipeline on by one draw.
    """
    n_batches = int(dataset.cardinality())
    if n_batches == tf.data.INFINITE_CARDINALITY:
        return None
    store: list[np.ndarray] | None = None
    targets: list[np.ndarray] | None = None
    bounds, filled, batch_size = [], 0, 0
    predict = _batch_predictor(feature_model)

    def grow(arrays, capacity):
        out = []
        for a in arrays:
            bigger = np.empty((capacity,) + a.shape[1:], a.dtype)
            bigger[:filled] = a[:filled]
            out.append(bigger)
        return out

    for _ in range(int(draws)):
        start = filled
        for element in dataset:
            x, rest = element[0], [np.asarray(t) for t in element[1:]]
            outputs = predict(x)
            outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
            n = len(outputs[0])
            if store is None:
                batch_size = n
                per_sample = sum(o[0].size * 2 for o in outputs) + sum(t[0].nbytes for t in rest)
                capacity = n_batches * n * int(draws) if n_batches > 0 else 64 * n
                if max_bytes is not None and capacity * per_sample > max_bytes:
                    return None
                store = [np.empty((capacity,) + o.shape[1:], dtype) for o in outputs]
                targets = [np.empty((capacity,) + t.shape[1:], t.dtype) for t in rest]
            if filled + n > len(targets[0] if targets else store[0]):
                capacity = 2 * (filled + n)
                if max_bytes is not None and capacity * (sum(a[0].nbytes for a in store + targets)) > max_bytes:
                    return None
                store, targets = grow(store, capacity), grow(targets, capacity)
            for i, o in enumerate(outputs):
                if store[i].dtype == np.float16 and o.size and float(np.abs(o).max()) > _FLOAT16_MAX:
                    store[i] = store[i].astype(np.float32)  # keep the values; float16 would make them inf
                store[i][filled:filled + n] = o
            for i, t in enumerate(rest):
                targets[i][filled:filled + n] = t
            filled += n
        bounds.append((start, filled))
    if store is None:
        return None
    return FeatureCache(features=[a[:filled] for a in store], targets=[t[:filled] for t in targets],
                        draws=bounds, batch_size=batch_size)


def feature_dataset(cache: FeatureCache, input_dtypes, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches ``((features...), *targets)`` from a cache, features cast to ``input_dtypes``.

    shuffle_seed=None: all cached samples once, in stored order (validation).
    Otherwise epoch ``e`` (counted per iteration) yields draw ``e mod len(draws)``
    in an order drawn from ``[shuffle_seed, e]``, at the cache's batch size.
    """
    state = {"epoch": 0}
    sizes = {stop - start for start, stop in cache.draws}
    single = len(cache.features) == 1

    def order() -> np.ndarray:
        if shuffle_seed is None:
            return np.arange(cache.n_samples)
        epoch = state["epoch"]
        state["epoch"] += 1
        start, stop = cache.draws[epoch % len(cache.draws)]
        return start + np.random.default_rng([int(shuffle_seed), epoch]).permutation(stop - start)

    def batches():
        idx = order()
        for start in range(0, len(idx), cache.batch_size):
            chunk = idx[start:start + cache.batch_size]
            yield (tuple(a[chunk] for a in cache.features),) + tuple(t[chunk] for t in cache.targets)

    signature = (tuple(tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in cache.features),) + \
        tuple(tf.TensorSpec((None,) + t.shape[1:], tf.as_dtype(t.dtype)) for t in cache.targets)
    dtypes = [tf.as_dtype(d) for d in input_dtypes]

    def cast(features, *targets):
        x = tuple(tf.cast(f, d) for f, d in zip(features, dtypes))
        return (x[0] if single else x,) + targets

    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    if shuffle_seed is None or len(sizes) == 1:
        n = cache.n_samples if shuffle_seed is None else sizes.pop()
        ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(n / cache.batch_size)))
    return without_autotune(ds.map(cast).prefetch(PREFETCH_BATCHES))


def _ram_bytes() -> float:
    """Physical memory of the machine (infinite where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return math.inf


def feature_budget(cache_max_gb: float) -> float:
    """Bytes a feature cache may take: ``cache_max_gb``, and never more than half the machine's RAM."""
    return min(float(cache_max_gb) * 1e9, _ram_bytes() / 2)


def _cached_phase(model: keras.Model, train_ds, val_ds, config: TrainSection, verbose: int, features=None):
    """(head_model, train features, validation features) for phase "frozen", or None to use images.

    ``features``: a function of the feature model giving ``(train cache, validation cache)`` computed
    elsewhere (chapter 5 computes one backbone's features once for every head trained on it).
    """
    feature_model, head_model = split_at_backbone(model)
    if feature_model.trainable_weights:  # only a frozen feature extractor gives fixed features
        return None
    start = time.perf_counter()
    budget = feature_budget(config.cache_max_gb)
    if features is not None:
        train_cache, val_cache = features(feature_model)
    else:
        train_cache = extract_features(feature_model, train_ds, draws=config.cache_draws, max_bytes=budget)
        val_cache = None
        if train_cache is not None and val_ds is not None:
            val_cache = extract_features(feature_model, val_ds, max_bytes=budget - train_cache.nbytes)
    if train_cache is None or (val_ds is not None and val_cache is None):
        if verbose:
            print(f"[frozen] feature cache skipped (over {budget / 1e9:.1f} GB, the smaller of cache_max_gb and "
                  "half the RAM, or an endless dataset): training on images", flush=True)
        return None
    dtypes = [t.dtype for t in keras.tree.flatten(head_model.inputs)]
    train_features = feature_dataset(train_cache, dtypes, shuffle_seed=int(np.random.randint(2**31 - 1)))
    val_features = feature_dataset(val_cache, dtypes) if val_cache is not None else None
    if verbose:
        size = train_cache.nbytes + (val_cache.nbytes if val_cache is not None else 0)
        print(f"[frozen] backbone features {'shared' if features is not None else 'cached once'}: "
              f"{train_cache.n_samples} training samples "
              f"({len(train_cache.draws)} draw{'s' * (len(train_cache.draws) != 1)}), "
              f"{val_cache.n_samples if val_cache is not None else 0} validation images, "
              f"{size / 1e6:.0f} MB, {time.perf_counter() - start:.0f}s", flush=True)
    return head_model, train_features, val_features


PROGRESS_SECONDS = 30.0  # a line at least this often inside a long epoch, so no terminal stays silent


class _EpochLog(keras.callbacks.Callback):
    """Collect one history row per epoch (lr as used during it) and print progress a user can read.

    One line per epoch with its metrics and the time the phase still needs at
    the pace measured so far (an upper bound: early stopping may end it
    sooner), and inside an epoch longer than :data:`PROGRESS_SECONDS` a line
    that often with the batch reached and the epoch's time left.
    """

    def __init__(self, phase: str, last_epoch: int, rows: list, verbose: int):
        super().__init__()
        self.phase, self.last_epoch, self.rows, self.verbose = phase, last_epoch, rows, verbose
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.last_line = time.perf_counter()
        self.epoch = epoch
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if not self.verbose or now - self.last_line < PROGRESS_SECONDS:
            return
        self.last_line = now
        steps = (self.params or {}).get("steps")
        per_batch = (now - self.start) / (batch + 1)
        left = f", about {_duration(per_batch * (steps - batch - 1))} left in the epoch" if steps else ""
        print(f"[{self.phase}] epoch {self.epoch + 1}/{self.last_epoch}: batch {batch + 1}"
              f"{f'/{steps}' if steps else ''}, {per_batch:.1f} s per batch{left}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self.start
        self.epoch_seconds.append(seconds)
        row = {"epoch": epoch + 1, "phase": self.phase, "lr": self.lr}
        row.update({k: float(logs[k]) if k in logs else math.nan for k in HISTORY_COLUMNS[2:6]})
        self.rows.append(row)
        if self.verbose:
            metrics = " - ".join(f"{k}: {row[k]:.4f}" for k in HISTORY_COLUMNS[2:6])
            remaining = self.last_epoch - (epoch + 1)
            pace = sum(self.epoch_seconds) / len(self.epoch_seconds)
            left = f" - phase ends in at most {_duration(pace * remaining)}" if remaining else ""
            print(f"[{self.phase}] epoch {epoch + 1}/{self.last_epoch} - {seconds:.0f}s - {metrics} - "
                  f"lr: {self.lr:.2e}{left}", flush=True)


def _duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1 h 20 min``: as precise as a waiting user needs."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def cosine_rate(lr: float, epoch_in_phase: int, n_epochs: int) -> float:
    """The rate of a phase's epoch under cosine decay: ``lr`` in its first epoch, falling towards 0 after its last."""
    return float(lr) * 0.5 * (1.0 + math.cos(math.pi * epoch_in_phase / max(int(n_epochs), 1)))


def _rate_schedule(config: TrainSection, lr: float, first_epoch: int, n_epochs: int) -> keras.callbacks.Callback:
    """The phase's learning-rate callback: fixed decay (``cosine``) or cuts when the validation loss stalls."""
    if config.lr_schedule == "cosine":
        return keras.callbacks.LearningRateScheduler(lambda epoch, _: cosine_rate(lr, epoch - first_epoch, n_epochs))
    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                             patience=config.lr_patience, verbose=0)


def build_before_tracing(model: keras.Model, dataset) -> None:
    """Create a compiled model's optimizer and metric variables before ``fit`` traces its training step.

    Without a distribution strategy Keras 3 creates them inside the first trace,
    and TensorFlow traces a function that creates variables twice: for ResNet50
    at 96 px that second trace costs about 6 s of every training on 2 cores
    (measured: first epoch 18 s before, 12 s after). ``_symbolic_build`` is
    what Keras itself calls first under a strategy; it only needs the
    dataset's element shapes. A model or dataset without it gets the optimizer
    built, which is most of the gain. Under a strategy (``model.distribute_strategy``, see
    ``model.distribution``) they are made in its scope, as Keras does: one copy per replica.
    """
    spec = getattr(dataset, "element_spec", None)
    symbolic_build = getattr(model, "_symbolic_build", None)
    with model.distribute_strategy.scope():
        if spec is not None and symbolic_build is not None:
            symbolic_build(data_batch=spec)
        elif not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


def train(model: keras.Model, train_ds, val_ds, config: TrainSection, pretrained: bool = False,
          class_weight: dict | None = None, verbose: int = 2, callbacks: list | None = None,
          features=None) -> pd.DataFrame:
    """Train ``model`` by ``config``'s schedule; return the history, one row per epoch.

    ``pretrained`` (the backbone starts from ImageNet or file weights) makes
    schedule "auto" two-phase.
    Columns: epoch (global, 1-based), phase, loss, accuracy, val_loss,
    val_accuracy, lr, inputs ("cached features" or "images"). ``class_weight`` is applied only if
    ``config.class_weights``. verbose=0 is silent; otherwise one line per
    epoch, with the phase name. With ``config.cache_features`` phase "frozen"
    trains the head model on cached backbone features (module docstring);
    ``train_ds`` must then yield ``(images, labels[, sample_weights])``.
    ``callbacks``: extra Keras callbacks added to every phase's fit (timing,
    say); in a cached phase 1 their ``self.model`` is the head model.
    ``features``: phase 1's cached features computed by the caller, a function
    of the feature model returning ``(train cache, validation cache)``.
    Under a distribution strategy build ``model`` and call this inside the
    strategy's scope (``distribution.training_scope``): ``fit`` then distributes.
    """
    if int(config.cache_draws) < 1:
        raise ParameterError(f"cache_draws={config.cache_draws}: expected a positive integer")
    rows: list[dict] = []
    epoch = 0
    weights = class_weight if config.class_weights else None
    for phase, n_epochs, lr in config.phases(pretrained):
        set_phase(model, phase, config.unfreeze_fraction)
        fit_model, fit_train, fit_val = model, train_ds, val_ds
        if phase == "frozen" and config.cache_features:
            cached = _cached_phase(model, train_ds, val_ds, config, verbose, features)
            if cached is not None:
                fit_model, fit_train, fit_val = cached
        fit_model.compile(optimizer=keras.optimizers.Adam(lr),
                          loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                          metrics=["accuracy"])
        build_before_tracing(fit_model, fit_train)
        before = len(rows)
        phase_callbacks = [
            _rate_schedule(config, lr, epoch, n_epochs),  # first: the log reads the rate this sets for the epoch
            _EpochLog(phase, epoch + n_epochs, rows, verbose),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience,
                                          restore_best_weights=True),
        ] + list(callbacks or [])
        fit_model.fit(fit_train, validation_data=fit_val, initial_epoch=epoch, epochs=epoch + n_epochs,
                      class_weight=weights, callbacks=phase_callbacks, shuffle=False, verbose=0)
        for row in rows[before:]:  # what the phase trained on: the cached backbone features, or images
            row["inputs"] = "images" if fit_model is model else "cached features"
        epoch += len(rows) - before
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
