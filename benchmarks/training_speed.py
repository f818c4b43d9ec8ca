"""Training-speed benchmark: phase-1 feature caching, input-pipeline throughput, peak memory.

Run from the repository root:  .venv/bin/python benchmarks/training_speed.py [--image-size 96 ...]
Generates a small synthetic dataset in a temporary folder (deleted afterwards),
so it needs no data and no network. Never run by the tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lesionscan.core.classes import CLASSES  # noqa: E402
from lesionscan.core.parameters import ModelSection, TrainSection
from lesionscan.data import ham10000, synthetic  # noqa: E402
from lesionscan.model import networks, pipeline, train  # noqa: E402

SPEEDUP_TARGET = 5.0   # phase-1 epoch time without / with caching, epochs 2+
BUSY_TARGET = 0.90     # pipeline images/s as a fraction of a bare step's on in-memory tensors
LOOP_TARGET = 0.85     # the study's training loop as a fraction of bare ResNet50 train_on_batch (issue 12)


def epoch_times(start: float, ends: list[float]) -> list[float]:
    """Per-epoch durations (validation included) from epoch ends; the first from ``start`` (set-up and caching)."""
    marks = [start] + ends
    return [b - a for a, b in zip(marks, marks[1:])]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase1_times(args, paths, labels, val_paths, val_labels, cache: bool) -> list[float]:
    """Seconds per phase-1 epoch (soft attention, frozen backbone) with or without feature caching."""
    train.seed_everything(args.seed)
    model = networks.build_model("soft_attention", args.image_size, ModelSection(weights="none"))
    train_ds = pipeline.make_dataset(paths, labels, args.image_size, args.batch_size, training=True,
                                     augment=True, balance_target=args.balance_target, seed=args.seed)
    val_ds = pipeline.make_dataset(val_paths, val_labels, args.image_size, args.batch_size, training=False)
    # Decode the images once beforehand so both runs start from the same in-memory image store.
    for ds in (train_ds, val_ds):
        for _ in ds:
            pass
    config = TrainSection(schedule="two-phase", epochs_phase1=args.epochs, epochs_phase2=0,
                          cache_features=cache, early_stopping_patience=args.epochs + 1,
                          lr_patience=args.epochs + 1)
    clock = TrainingClock()
    start = time.perf_counter()
    train.train(model, train_ds, val_ds, config, verbose=0, callbacks=[clock])
    return epoch_times(start, clock.starts[1:] + [time.perf_counter()])


def print_bare_rate() -> float:
    """Measure and print the yardstick every benchmark reports its times beside: the bare rate at 96 px, batch 32."""
    bare = bare_resnet50_rate(96, 32)
    print(f"bare keras.applications.ResNet50(weights=None) at 96 px, batch 32, train_on_batch: {bare:.1f} images/s",
          flush=True)
    return bare


def bare_resnet50_rate(image_size: int, batch_size: int, steps: int = 12, rounds: int = 3,
                       seed: int = 0) -> float:
    """Images/s of a bare ``keras.applications.ResNet50(weights=None)`` under ``train_on_batch``.

    The machine's yardstick: in-memory random tensors, no pipeline, no
    callbacks, no validation, so it measures the network's work alone.
    Three warm-up steps (tracing), then the best of ``rounds`` timings of
    ``steps`` steps each. Every time LesionScan reports is quoted beside this
    figure; a study's cost in "reference images" is its wall time times it.
    """
    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3), classes=len(CLASSES))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32"))
    y = tf.one_hot(rng.integers(0, len(CLASSES), batch_size), len(CLASSES))
    for _ in range(3):
        model.train_on_batch(x, y)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        best = max(best, steps * batch_size / (time.perf_counter() - start))
    del model
    keras.backend.clear_session()
    return best


class TrainingClock(keras.callbacks.Callback):
    """Start time of every epoch and the seconds of its validation.

    An epoch's training time is the time to the next epoch's start (or to
    ``fit``'s return) less its validation: so whatever Keras or tf.data do
    between epochs (such as ending the epoch's dataset iterator) counts.
    """

    def __init__(self):
        super().__init__()
        self.starts: list[float] = []
        self.val_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())
        self.val_start = None

    def on_test_begin(self, logs=None):
        self.val_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.val_seconds.append(time.perf_counter() - self.val_start if self.val_start is not None else 0.0)

    def train_seconds(self, end: float) -> list[float]:
        marks = self.starts + [end]
        return [b - a - v for a, b, v in zip(marks, marks[1:], self.val_seconds)]


def study_loop_rate(args, paths, labels, val_paths, val_labels, epoch_images: int) -> tuple[list[float], list[float]]:
    """Training images/s of the study's own loop, per epoch, and each epoch's validation seconds.

    What chapter 4 runs: the soft-attention model, ``train.train`` with the
    full schedule, the real pipeline (augmentation, balanced sampling), class
    weights, early stopping, learning-rate schedule and the progress log.
    Epoch 1 includes tracing; the rate compared with the bare network's is
    that of epochs 2+ together (their images over their seconds), so a stall
    in any epoch counts.
    """
    train.seed_everything(args.seed)
    model = networks.build_model("soft_attention", args.image_size, ModelSection(weights="none"))
    train_ds = pipeline.make_dataset(paths, labels, args.image_size, args.batch_size, training=True,
                                     augment=True, balance_target=args.balance_target, seed=args.seed)
    val_ds = pipeline.make_dataset(val_paths, val_labels, args.image_size, args.batch_size, training=False)
    config = TrainSection(schedule="full", epochs=args.loop_epochs, early_stopping_patience=args.loop_epochs + 1,
                          lr_patience=args.loop_epochs + 1)
    clock = TrainingClock()
    train.train(model, train_ds, val_ds, config, class_weight=pipeline.epoch_class_weights(labels, args.balance_target),
                verbose=0, callbacks=[clock])
    end = time.perf_counter()
    del model
    keras.backend.clear_session()
    return [epoch_images / s for s in clock.train_seconds(end)], clock.val_seconds


def throughput(args, paths, labels, epoch_images: int) -> tuple[float, float, float, float]:
    """Images/s of the full-training step fed by the real pipeline, by in-memory tensors, and of the pipeline alone.

    The in-memory feed repeats one batch taken from the pipeline (same shape,
    real values) as often as the pipeline has batches per epoch. After one
    warm-up epoch each (tracing, decoding), the two feeds alternate for
    ``--rounds`` one-epoch fits and each rate is the best of its rounds: on a
    shared machine the load comes in bursts, and the best round is the one
    least disturbed, for both feeds alike. Also returns the in-memory feed's
    CPU time per image over the pipeline feed's (medians, this process only):
    a ratio that other processes hardly disturb.
    """
    train.seed_everything(args.seed)
    model = networks.build_model("soft_attention", args.image_size, ModelSection(weights="none"))
    train.set_phase(model, "full")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    real = pipeline.make_dataset(paths, labels, args.image_size, args.batch_size, training=True, augment=True,
                                 balance_target=args.balance_target, seed=args.seed)
    n_batches = int(real.cardinality())
    x, y = next(iter(real))
    bare = tf.data.Dataset.from_tensors((x, y)).repeat(n_batches)
    feeds = {"pipeline": (real, epoch_images), "in-memory": (bare, n_batches * len(x))}
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    cpu_ms: dict[str, list[float]] = {name: [] for name in feeds}
    for round_no in range(args.rounds + 1):
        for name, (ds, n_images) in feeds.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(ds, epochs=1, verbose=0, shuffle=False)
            if round_no:  # round 0 warms up
                rates[name].append(n_images / (time.perf_counter() - start))
                cpu_ms[name].append(1000 * (time.process_time() - cpu_start) / n_images)
    for name, values in rates.items():
        print(f"  {name:9} feed, images/s per round: " + ", ".join(f"{v:.1f}" for v in values) +
              f"; this process's CPU time per image: {np.median(cpu_ms[name]):.0f} ms (median)", flush=True)
    start = time.perf_counter()
    for _ in real:  # the pipeline alone
        pass
    alone_rate = epoch_images / (time.perf_counter() - start)
    cpu_ratio = float(np.median(cpu_ms["in-memory"]) / np.median(cpu_ms["pipeline"]))
    return max(rates["pipeline"]), max(rates["in-memory"]), alone_rate, cpu_ratio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96, help="model input side in px (default 96)")
    parser.add_argument("--images", type=int, default=500, help="synthetic images generated (default 500)")
    parser.add_argument("--epochs", type=int, default=4, help="phase-1 epochs per run (default 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--balance-target", type=int, default=40,
                        help="training images per class per epoch (default 40)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating one-epoch fits per feed in the throughput test, best counts (default 5)")
    parser.add_argument("--loop-epochs", type=int, default=4,
                        help="epochs of the study's training loop timed against the bare network (default 4)")
    parser.add_argument("--part", choices=("all", "loop", "phase1", "pipeline"), default="all",
                        help="run every measurement (default) or one: loop = bare ResNet50 against the study's "
                             "training loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.loop_epochs < 2:
        parser.error("--epochs and --loop-epochs must be at least 2 (epoch 1 is reported apart from epochs 2+)")

    policy = train.configure_precision()
    with tempfile.TemporaryDirectory(prefix="lesionscan-bench-") as tmp:
        t0 = time.perf_counter()
        folder = synthetic.generate(os.path.join(tmp, "data"), n_images=args.images, seed=args.seed)
        frame = ham10000.load_dataset(folder, verify_images=False)
        labels_all = frame["dx"].map(CLASSES.index).to_numpy()
        order = np.random.default_rng(args.seed).permutation(len(frame))
        n_val = max(args.batch_size, len(frame) // 5)
        val, trn = order[:n_val], order[n_val:]
        paths = frame["image_path"].to_numpy()
        train_paths, train_labels = paths[trn].tolist(), labels_all[trn]
        val_paths, val_labels = paths[val].tolist(), labels_all[val]
        epoch_images = args.balance_target * len(np.unique(train_labels))
        print(f"LesionScan training-speed benchmark: {len(frame)} synthetic images "
              f"({len(trn)} training, {len(val)} validation; made in {time.perf_counter() - t0:.0f}s), "
              f"{args.image_size} px, batch {args.batch_size}, {epoch_images} training images per epoch "
              f"(balance target {args.balance_target}), {args.epochs} phase-1 epochs")
        print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, precision policy {policy}, "
              f"devices: {', '.join(d.device_type for d in tf.config.list_physical_devices())}, "
              f"{os.cpu_count()} CPU cores\n", flush=True)

        rows = []
        if args.part in ("all", "loop"):
            bare = bare_resnet50_rate(args.image_size, args.batch_size, seed=args.seed)
            print(f"bare keras.applications.ResNet50(weights=None), train_on_batch on in-memory tensors: "
                  f"{bare:.1f} images/s", flush=True)
            loop, val_seconds = study_loop_rate(args, train_paths, train_labels, val_paths, val_labels, epoch_images)
            print("study training loop (soft attention, full schedule, pipeline, class weights, callbacks), "
                  "training images/s per epoch: " + ", ".join(f"{r:.1f}" for r in loop) +
                  "; validation s per epoch: " + ", ".join(f"{v:.1f}" for v in val_seconds), flush=True)
            loop_rate = len(loop[1:]) / sum(1 / r for r in loop[1:])  # all of epochs 2+: a stall counts
            rows += [("bare ResNet50 train_on_batch (images/s)", f"{bare:.1f}", "-", ""),
                     ("study training loop, epochs 2+ (images/s)", f"{loop_rate:.1f}", "-", ""),
                     ("study loop / bare", f"{loop_rate / bare:.0%}", f">= {LOOP_TARGET:.0%}",
                      "PASS" if loop_rate / bare >= LOOP_TARGET else "MISS")]
        if args.part in ("all", "phase1"):
            plain = phase1_times(args, train_paths, train_labels, val_paths, val_labels, cache=False)
            print("phase 1 without caching, s/epoch: " + ", ".join(f"{t:.1f}" for t in plain), flush=True)
            cached = phase1_times(args, train_paths, train_labels, val_paths, val_labels, cache=True)
            print("phase 1 with caching,    s/epoch: " + ", ".join(f"{t:.2f}" for t in cached), flush=True)
            speedup = np.mean(plain[1:]) / np.mean(cached[1:])
            rows += [
                ("phase-1 epoch 1 (s), plain / cached", f"{plain[0]:.1f} / {cached[0]:.1f}", "-", ""),
                ("phase-1 epochs 2+ mean (s), plain / cached",
                 f"{np.mean(plain[1:]):.2f} / {np.mean(cached[1:]):.2f}", "-", ""),
                ("phase-1 speed-up from epoch 2", f"{speedup:.1f}x", f">= {SPEEDUP_TARGET:.0f}x",
                 "PASS" if speedup >= SPEEDUP_TARGET else "MISS"),
            ]
        if args.part in ("all", "pipeline"):
            real_rate, bare_rate, alone_rate, cpu_ratio = throughput(args, train_paths, train_labels, epoch_images)
            print(f"full training step, best of {args.rounds} epochs: {real_rate:.1f} images/s from the pipeline, "
                  f"{bare_rate:.1f} images/s from in-memory tensors; the pipeline alone makes "
                  f"{alone_rate:.0f} images/s", flush=True)
            busy = real_rate / bare_rate
            rows += [("pipeline keeps the step busy (images/s)", f"{busy:.0%}", f">= {BUSY_TARGET:.0%}",
                      "PASS" if busy >= BUSY_TARGET else "MISS"),
                     ("  same from CPU time per image", f"{cpu_ratio:.0%}", "-", "")]
    rows.append(("peak memory (ru_maxrss)", f"{peak_rss_mb():.0f} MB", "-", ""))
    print()
    widths = [max(len(str(r[i])) for r in rows + [("measure", "value", "target", "result")]) for i in range(4)]
    for row in [("measure", "value", "target", "result"), tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
