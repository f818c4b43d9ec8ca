"""Grad-CAM on tiny Keras models shaped like ours, and heatmap overlays.

The models here stand in for models.py's: a ResNet-like last block named
``conv5_block3_out`` and, for the attention model, a custom registered layer
named ``soft_attention`` that returns ``[features, maps]``. Its maps are
zero on the first feature columns, so Grad-CAM of the attention-weighted
features must be zero there while Grad-CAM of ``conv5_block3_out`` is not.
"""

import keras
import numpy as np
import pytest

from lesionscan.core.errors import ParameterError
from lesionscan.explain import gradcam

SIZE = 16
MASKED_COLUMNS = 2  # of the 8 feature columns


@keras.saving.register_keras_serializable(package="lesionscan_tests")
class ToyAttention(keras.layers.Layer):
    """Attention-like layer: sigmoid maps from a conv, zeroed on the first columns, times the features."""

    def __init__(self, masked_columns=0, **kwargs):
        super().__init__(**kwargs)
        self.masked_columns = masked_columns

    def build(self, input_shape):
        self.conv = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=keras.initializers.Constant(0.05))
        self.conv.build(input_shape)

    def call(self, x):
        maps = keras.ops.sigmoid(self.conv(x))[..., 0]
        width = keras.ops.shape(maps)[2]
        keep = keras.ops.cast(keras.ops.arange(width) >= self.masked_columns, maps.dtype)
        maps = maps * keep
        return [x * maps[..., None], maps]

    def compute_output_shape(self, input_shape):
        return [input_shape, input_shape[:-1]]

    def get_config(self):
        return {**super().get_config(), "masked_columns": self.masked_columns}


def _backbone(inputs):
    positive = keras.initializers.RandomUniform(0.0, 0.1, seed=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=positive)(inputs)
    return keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", kernel_initializer=positive,
                               name="conv5_block3_out")(x)


def _head(x):
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(3, activation="softmax", kernel_initializer="ones", name="predictions")(x)


@pytest.fixture(scope="module")
def baseline():
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, _head(_backbone(inputs)), name="baseline")


@pytest.fixture(scope="module")
def attention():
    inputs = keras.Input((SIZE, SIZE, 3))
    features, _ = ToyAttention(MASKED_COLUMNS, name="soft_attention")(_backbone(inputs))
    return keras.Model(inputs, _head(features), name="soft_attention")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, size=(3, SIZE, SIZE, 3)).astype("float32")


def _check_maps(maps, n):
    assert maps.shape == (n, SIZE, SIZE)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.reshape(n, -1).max(axis=1), 1.0, atol=1e-3)  # each map scaled to its own max


def test_default_layer_by_name(baseline, attention):
    assert gradcam.default_layer(baseline) == "conv5_block3_out"
    assert gradcam.default_layer(attention) == "soft_attention"
    inputs = keras.Input((SIZE, SIZE, 3))
    other = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ParameterError, match="layer=NAME"):
        gradcam.default_layer(other)


@pytest.mark.parametrize("plus", [False, True])
def test_gradcam_baseline_shape_and_range(baseline, images, plus):
    _check_maps(gradcam.gradcam(baseline, images, [0, 1, 2], plus=plus), 3)


@pytest.mark.parametrize("layer", [None, "soft_attention", "conv5_block3_out"])
def test_gradcam_attention_model_both_layers(attention, images, layer):
    _check_maps(gradcam.gradcam(attention, images, [2, 1, 0], layer=layer, batch_size=2), 3)


def test_attention_target_is_the_weighted_features(attention, images):
    """Grad-CAM of the attention output sees the masked columns as empty; the backbone's does not."""
    on_attention = gradcam.gradcam(attention, images, 0)
    on_backbone = gradcam.gradcam(attention, images, 0, layer=attention.get_layer("conv5_block3_out"))
    # feature columns 0-1 of 8 are masked; bilinear upsampling keeps image columns 0-2 at zero
    assert np.abs(on_attention[:, :, :3]).max() < 1e-6
    assert on_backbone[:, :, :3].max() > 0.05


def test_gradcam_leaves_model_unchanged(attention, images):
    before = attention.predict(images, verbose=0)
    gradcam.gradcam(attention, images, [0, 0, 0])
    assert attention.get_layer("predictions").activation is keras.activations.softmax
    np.testing.assert_allclose(attention.predict(images, verbose=0), before, rtol=1e-6)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("plus", [False, True])
def test_one_explainer_explains_many_batches_as_separate_calls_would(attention, images, plus, monkeypatch):
    """Chapter 6 sets each method up once (one model copy) and reuses it for every batch: same maps as a fresh
    set-up per call, and the copy is made once."""
    from tf_keras_vis import ModelVisualization

    explainer = gradcam.GradcamExplainer(attention, plus=plus)
    copies = []
    real_init = ModelVisualization.__init__

    def counting_init(self, *args, **kwargs):
        copies.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ModelVisualization, "__init__", counting_init)
    batches = [explainer(images[:2], [2, 1]), explainer(images[2:], [0])]
    assert copies == []  # no new copy of the model for later batches
    fresh = gradcam.gradcam(attention, images, [2, 1, 0], plus=plus)
    assert copies == [1]
    np.testing.assert_allclose(np.concatenate(batches), fresh, atol=1e-6)


def test_gradcam_after_save_and_reload(attention, images, tmp_path):
    path = tmp_path / "soft_attention.keras"
    attention.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.get_layer("soft_attention"), ToyAttention)
    maps = gradcam.gradcam(reloaded, images, [0, 1, 2])
    _check_maps(maps, 3)
    np.testing.assert_allclose(maps, gradcam.gradcam(attention, images, [0, 1, 2]), atol=1e-5)
    _check_maps(gradcam.gradcam(reloaded, images, [0, 1, 2], plus=True, layer="conv5_block3_out"), 3)


def test_gradcam_single_image_and_bad_arguments(baseline, images):
    assert gradcam.gradcam(baseline, images[0], 1).shape == (1, SIZE, SIZE)
    with pytest.raises(ParameterError, match="2 class indices for 3 images"):
        gradcam.gradcam(baseline, images, [0, 1])
    np.testing.assert_allclose(gradcam.gradcam(baseline, images, ["akiec", "bcc", "bkl"]),
                               gradcam.gradcam(baseline, images, [0, 1, 2]))
    with pytest.raises(ParameterError, match="unknown class code"):
        gradcam.gradcam(baseline, images, "melanoma")
    with pytest.raises(ParameterError, match="out of range"):
        gradcam.gradcam(baseline, images, 3)
    with pytest.raises(ParameterError, match="no layer named 'conv9'"):
        gradcam.gradcam(baseline, images, 0, layer="conv9")
    with pytest.raises(ParameterError, match="feature map"):
        gradcam.gradcam(baseline, images, 0, layer="predictions")


def test_overlay_shape_dtype_and_blending():
    image = np.full((30, 40, 3), 200, dtype=np.uint8)
    heat = np.linspace(0, 1, 12).reshape(3, 4)
    out = gradcam.overlay(image, heat)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert (gradcam.overlay(image, heat, alpha=0.0) == image).all()
    full = gradcam.overlay(image, heat, alpha=1.0)
    assert not (full == image).all()
    assert not np.array_equal(full[0, 0], full[-1, -1])  # low and high ends get different colours


def test_overlay_grayscale_nan_and_bad_input():
    gray = np.zeros((8, 8), dtype=np.uint8)
    heat = np.full((8, 8), np.nan)
    out = gradcam.overlay(gray, heat)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    with pytest.raises(ParameterError, match="alpha"):
        gradcam.overlay(gray, np.zeros((8, 8)), alpha=1.5)
    with pytest.raises(ParameterError, match="heatmap"):
        gradcam.overlay(gray, np.zeros((2, 8, 8)))
