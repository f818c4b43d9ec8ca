"""Training schedules of the report: two-phase fine-tuning, or one full phase.

Two-phase (with pretrained weights): phase "frozen" trains the attention and
head on a frozen backbone; phase "finetune" unfreezes the last 40 % of the
ResNet50 layers, BatchNormalization excluded, at a lower learning rate.
Full (random initialisation): everything trains from the start, because a
frozen random backbone teaches the head little. Each phase recompiles with
Adam and label-smoothed cross-entropy, stops early on validation loss
(restoring the best weights) and lowers the learning rate on plateaus.
Only training and validation data are ever passed in: never the test set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

from lesionscan.errors import ParameterError
from lesionscan.models import backbone_layers

SCHEDULES = ("auto", "two-phase", "full")
PHASES = ("frozen", "finetune", "full")
HISTORY_COLUMNS = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]


@dataclass
class TrainConfig:
    """Every training knob; defaults are the report's values where it gives them.

    ``weights`` is the model's initialisation ("none", "imagenet" or a file);
    schedule "auto" means two-phase for pretrained weights, full for "none".
    """

    schedule: str = "auto"
    epochs_phase1: int = 10
    epochs_phase2: int = 20
    epochs: int = 30
    lr_phase1: float = 1e-4
    lr_phase2: float = 1e-5
    lr_full: float = 1e-3
    unfreeze_fraction: float = 0.4
    label_smoothing: float = 0.1
    early_stopping_patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.2
    use_class_weights: bool = True
    weights: str = "none"

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from pretrained weights (anything but "none")."""
        return str(self.weights).lower() != "none"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        """Config from a resolved profile (profiles.resolve); profile "class_weights" -> use_class_weights."""
        values = {f.name: params[f.name] for f in fields(cls) if f.name in params}
        if "class_weights" in params:
            values["use_class_weights"] = bool(params["class_weights"])
        return cls(**values)

    def phases(self) -> list[tuple[str, int, float]]:
        """(phase, epochs, learning rate) in order, with "auto" resolved."""
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"schedule={self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        two_phase = self.schedule == "two-phase" or (self.schedule == "auto" and self.pretrained)
        if two_phase:
            plan = [("frozen", self.epochs_phase1, self.lr_phase1), ("finetune", self.epochs_phase2, self.lr_phase2)]
        else:
            plan = [("full", self.epochs, self.lr_full)]
        return [(name, int(n), float(lr)) for name, n, lr in plan if n > 0]


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


class _EpochLog(keras.callbacks.Callback):
    """Collect one history row per epoch (lr as used during it) and print it as one line."""

    def __init__(self, phase: str, last_epoch: int, rows: list, verbose: int):
        super().__init__()
        self.phase, self.last_epoch, self.rows, self.verbose = phase, last_epoch, rows, verbose

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "phase": self.phase, "lr": self.lr}
        row.update({k: float(logs[k]) if k in logs else math.nan for k in HISTORY_COLUMNS[2:6]})
        self.rows.append(row)
        if self.verbose:
            metrics = " - ".join(f"{k}: {row[k]:.4f}" for k in HISTORY_COLUMNS[2:6])
            print(f"[{self.phase}] epoch {epoch + 1}/{self.last_epoch} - {time.perf_counter() - self.start:.0f}s"
                  f" - {metrics} - lr: {self.lr:.2e}", flush=True)


def train(model: keras.Model, train_ds, val_ds, config: TrainConfig, class_weight: dict | None = None,
          verbose: int = 2) -> pd.DataFrame:
    """Train ``model`` by ``config``'s schedule; return the history, one row per epoch.

    Columns: epoch (global, 1-based), phase, loss, accuracy, val_loss,
    val_accuracy, lr. ``class_weight`` is applied only if
    ``config.use_class_weights``. verbose=0 is silent; otherwise one line per
    epoch, with the phase name.
    """
    rows: list[dict] = []
    epoch = 0
    weights = class_weight if config.use_class_weights else None
    for phase, n_epochs, lr in config.phases():
        set_phase(model, phase, config.unfreeze_fraction)
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      metrics=["accuracy"])
        before = len(rows)
        callbacks = [
            _EpochLog(phase, epoch + n_epochs, rows, verbose),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience,
                                          restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                              patience=config.lr_patience, verbose=0),
        ]
        model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + n_epochs,
                  class_weight=weights, callbacks=callbacks, shuffle=False, verbose=0)
        epoch += len(rows) - before
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
