"""Training on more than one device: ``TrainSection.distribute`` resolved to a ``tf.distribute`` strategy.

* ``auto``: :class:`tf.distribute.MirroredStrategy` over the visible GPUs when there are two or more,
  otherwise TensorFlow's default strategy (one device, what training did before);
* ``none``: the default strategy;
* ``mirrored``: MirroredStrategy over the visible GPUs (one is allowed); where there is no GPU, over the
  logical CPU devices if there are two or more (a CPU split with
  ``tf.config.set_logical_device_configuration``, as the tests do); anything else is a
  :class:`~lesionscan.core.errors.ParameterError`.

MirroredStrategy keeps one copy of every variable per device (replica), splits each batch the pipeline
yields between them and sums their gradients, so ``batch_size`` stays the global batch: 32 on two GPUs is
16 images per GPU, and the learning rates mean what they mean on one device. Batch normalisation
computes its batch statistics per replica, over the replica's share of the batch, so a model trained
under the strategy is numerically not the one trained on one device (``distribute`` determines a model;
``core.parameters``).

Keras 3 wants the model's, the optimizer's and the metrics' variables created under the strategy's
scope; ``fit`` then distributes by itself. :func:`training_scope` is that scope, entered once per
training around building, compiling and fitting (``study.experiments``). A strategy is made once per
set of devices and process, so a model loaded under it (chapter 5's shared backbone) keeps working with
the next training's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import tensorflow as tf

from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import field_of

CHOICES = field_of("distribute").metadata["choices"]  # auto, none, mirrored
DEFAULT = "default"  # the name recorded for TensorFlow's default (one-device) strategy

_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}


def _devices(kind: str) -> list[str]:
    return [device.name for device in tf.config.list_logical_devices(kind)]


def _mirrored(devices: list[str]) -> tf.distribute.MirroredStrategy:
    key = tuple(devices)
    if key not in _MIRRORED:
        _MIRRORED[key] = tf.distribute.MirroredStrategy(devices=list(devices))
    return _MIRRORED[key]


def resolve(distribute: str, verbose: bool = True) -> tf.distribute.Strategy:
    """The strategy ``distribute`` (one of :data:`CHOICES`) means on this machine; one progress line if ``verbose``.

    Listing the devices initialises TensorFlow's runtime: logical devices must be configured before.
    """
    if distribute not in CHOICES:
        raise ParameterError(f"distribute={distribute!r}: expected one of {', '.join(CHOICES)}")
    gpus, cpus = _devices("GPU"), _devices("CPU")
    if distribute == "none":
        strategy, why = tf.distribute.get_strategy(), "one device"
    elif distribute == "auto" and len(gpus) < 2:
        strategy, why = tf.distribute.get_strategy(), f"{len(gpus)} GPU{'s' * (len(gpus) != 1)} visible"
    elif gpus:
        strategy, why = _mirrored(gpus), f"over {len(gpus)} GPU{'s' * (len(gpus) != 1)}"
    elif len(cpus) >= 2:
        strategy, why = _mirrored(cpus), f"over {len(cpus)} logical CPU devices, no GPU visible"
    else:
        raise ParameterError(f"distribute=mirrored: no GPU is visible and {len(cpus)} CPU device, so there is "
                             "nothing to mirror over; expected at least one GPU (or two logical CPU devices); "
                             "use distribute=auto or distribute=none")
    if verbose:
        info = describe(strategy)
        name = "default strategy" if info["strategy"] == DEFAULT else info["strategy"]
        print(f"distribute={distribute}: {name}, {info['replicas']} replica{'s' * (info['replicas'] != 1)} "
              f"({why}); batch_size is the global batch", flush=True)
    return strategy


def describe(strategy: tf.distribute.Strategy) -> dict:
    """``{"strategy": "MirroredStrategy" or "default", "replicas": n}``: what a run records about it."""
    name = DEFAULT if not isinstance(strategy, tf.distribute.MirroredStrategy) else type(strategy).__name__
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}


@contextmanager
def training_scope(distribute: str, verbose: bool = True) -> Iterator[tf.distribute.Strategy]:
    """The scope to build, compile and fit a model in under ``distribute``; yields the strategy."""
    strategy = resolve(distribute, verbose)
    with strategy.scope():
        yield strategy
