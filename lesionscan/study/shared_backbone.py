"""Chapter 5's shared-backbone ablation: one frozen backbone's features, computed once for every head.

Every head of the shared-backbone mode starts from the same frozen backbone
(the run's baseline), so what it trains and is tested on is the same for every
attention kind; only the training draw (balanced sample and augmentation)
depends on the seed. :class:`BackboneFeatures` loads that backbone once, runs
it once over the validation and the test subset and once per training draw,
and hands each head the backbone tensors it reads, by layer name (every kind
reads ``conv5_block3_out``; multi-scale also ``conv4_block6_out``, so both are
taken in the same pass). Fifteen heads (five kinds, three seeds) then cost
three passes over the training draw instead of fifteen, and one model load
instead of fifteen.

Training and validation features are stored as float16, like the phase-1
cache of ``model.train`` (which is what a head trained alone would get); test
features as float32, so a head's recorded predictions are those of the model
it saves, to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from lesionscan.core.errors import LesionScanError
from lesionscan.core.parameters import TrainingRecipe
from lesionscan.model import saving, train
from lesionscan.model.layers import BACKBONE_OUTPUT, STAGE4_OUTPUT

SHARED_OUTPUTS = (STAGE4_OUTPUT, BACKBONE_OUTPUT)  # what any kind of models.KINDS reads from the backbone


def tensor_names(feature_model: keras.Model) -> list[str]:
    """The names of the layers whose outputs ``feature_model`` returns, in its output order."""
    return [t._keras_history[0].name for t in keras.tree.flatten(feature_model.outputs)]


class BackboneFeatures:
    """The features of one trained model's backbone over a run's subsets, computed on first use."""

    def __init__(self, model_path: Path, max_gb: float = 16.0):
        self.backbone = saving.load_model(model_path)
        self.max_bytes = train.feature_budget(max_gb)
        self._caches: dict[tuple, tuple[list[str], train.FeatureCache]] = {}

    def _features(self, key: tuple, dataset, names: list[str], draws: int = 1,
                  dtype=np.float16) -> train.FeatureCache | None:
        """The cache of ``names`` over ``dataset`` (one pass per draw), extracted the first time ``key`` is asked."""
        have = self._caches.get(key)
        if have is None or not set(names) <= set(have[0]):
            wanted = sorted(set(names) | set(SHARED_OUTPUTS) | set(have[0] if have else ()))
            extractor = keras.Model(self.backbone.inputs, [self.backbone.get_layer(n).output for n in wanted])
            cache = train.extract_features(extractor, dataset, draws=draws, max_bytes=self.max_bytes, dtype=dtype)
            if cache is None:
                return None
            self._caches[key] = have = (wanted, cache)
        order, cache = have
        return train.FeatureCache(features=[cache.features[order.index(n)] for n in names], targets=cache.targets,
                                  draws=cache.draws, batch_size=cache.batch_size)

    def training(self, recipe: TrainingRecipe, train_ds, val_ds):
        """Phase 1's features for ``train.train(features=...)``: ``recipe``'s training draw and the validation set.

        The draw is keyed by what makes the training pipeline (seed, split
        protocol, pipeline section, draws), the validation set by the split
        and the image size: every head with the same keys gets the same arrays.
        """
        split, pipe, draws = recipe.split, recipe.pipeline, int(recipe.train.cache_draws)

        def features(feature_model: keras.Model):
            names = tensor_names(feature_model)
            return (self._features(("train", recipe.seed, split, pipe, draws), train_ds, names, draws=draws),
                    self._features(("val", split, pipe.image_size, pipe.batch_size), val_ds, names))
        return features

    def test_probabilities(self, model: keras.Model, recipe: TrainingRecipe, test_ds) -> np.ndarray:
        """``model``'s class probabilities on the test subset, from float32 backbone features."""
        feature_model, head_model = train.split_at_backbone(model)
        names = tensor_names(feature_model)
        cache = self._features(("test", recipe.split, recipe.pipeline.image_size, recipe.pipeline.batch_size),
                               test_ds, names, dtype=np.float32)
        if cache is None:
            raise LesionScanError(f"the test subset's backbone features exceed {self.max_bytes / 1e9:.1f} GB (the "
                                  "smaller of cache_max_gb and half the RAM)")
        inputs = cache.features[0] if len(cache.features) == 1 else cache.features
        return np.asarray(head_model.predict(inputs, batch_size=cache.batch_size, verbose=0))


_OPEN: dict[tuple, BackboneFeatures] = {}


def of(model_path: Path, max_gb: float) -> BackboneFeatures:
    """The features of the model saved at ``model_path``, one instance per file version in this process."""
    stat = Path(model_path).stat()
    key = (str(Path(model_path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _OPEN:
        _OPEN.clear()  # one backbone at a time: a new file version replaces the features of the old one
        _OPEN[key] = BackboneFeatures(model_path, max_gb)
    return _OPEN[key]
