"""Soft-attention layer and the two models: shapes, the equation's invariants, save/reload, weights errors."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lesionscan import models  # noqa: E402
from lesionscan.errors import ParameterError  # noqa: E402


def _features(batch=2, size=5, channels=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype("float32")


def test_attention_output_shapes():
    layer = models.SoftAttention(heads=3)
    attended, maps = layer(_features())
    assert tuple(attended.shape) == (2, 5, 5, 8)
    assert tuple(maps.shape) == (2, 5, 5, 3)
    assert layer.compute_output_shape((None, 5, 5, 8)) == [(None, 5, 5, 8), (None, 5, 5, 3)]


def test_each_head_is_a_distribution_over_positions():
    _, maps = models.SoftAttention(heads=4)(_features(size=6))
    maps = np.asarray(maps)
    assert (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_attended_is_gamma_times_features_times_summed_maps():
    x = _features()
    layer = models.SoftAttention(heads=2, gamma_init=0.5)
    attended, maps = layer(x)
    expected = 0.5 * x * np.asarray(maps).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(attended), expected, rtol=1e-5, atol=1e-6)
    assert float(layer.gamma.numpy()) == 0.5


def test_gradients_reach_gamma_and_kernel():
    layer = models.SoftAttention(heads=2)
    x = tf.constant(_features())
    layer(x)
    with tf.GradientTape() as tape:
        attended, _ = layer(x)
        loss = tf.reduce_sum(attended ** 2)
    grads = tape.gradient(loss, [layer.gamma, layer.kernel, layer.bias])
    assert all(g is not None for g in grads[:2])
    assert float(tf.abs(grads[0])) > 0
    assert float(tf.reduce_max(tf.abs(grads[1]))) > 0
    assert {w.name for w in layer.trainable_weights} == {"kernel", "bias", "gamma"}


def test_attention_config_round_trip():
    layer = models.SoftAttention(heads=5, gamma_init=0.25, kernel_size=1, name="att")
    clone = models.SoftAttention.from_config(layer.get_config())
    assert (clone.heads, clone.gamma_init, clone.kernel_size, clone.name) == (5, 0.25, 1, "att")
    assert keras.saving.get_registered_name(models.SoftAttention) == "lesionscan>SoftAttention"


def test_attention_rejects_zero_heads():
    with pytest.raises(ParameterError, match="attention_heads"):
        models.SoftAttention(heads=0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(0, 60, size=(3, 64, 64, 3)).astype("float32")


@pytest.fixture(scope="module")
def sa_model():
    keras.utils.set_random_seed(0)
    return models.build_model("soft_attention", image_size=64, attention_heads=4, gamma_init=0.7)


@pytest.fixture(scope="module")
def baseline_model():
    keras.utils.set_random_seed(0)
    return models.build_model("baseline", image_size=64)


def test_models_build_flat_with_named_layers(sa_model, baseline_model):
    for model in (sa_model, baseline_model):
        names = [layer.name for layer in model.layers]
        assert "conv5_block3_out" in names and "conv1_conv" in names  # ResNet50 flat, not nested
        assert not any(isinstance(layer, keras.Model) for layer in model.layers)
        assert model.output_shape == (None, 7)
        assert len(models.backbone_layers(model)) == names.index("conv5_block3_out")
    assert sa_model.name == "soft_attention" and baseline_model.name == "baseline"
    assert "soft_attention" in [layer.name for layer in sa_model.layers]
    assert sa_model.get_layer("attended_features").output.shape == (None, 2, 2, 2048)
    assert "soft_attention" not in [layer.name for layer in baseline_model.layers]
    # the attention layer adds a 3x3x2048xK kernel, K biases and gamma
    assert sa_model.count_params() - baseline_model.count_params() == 3 * 3 * 2048 * 4 + 4 + 1


def test_unknown_kind_is_a_parameter_error():
    with pytest.raises(ParameterError, match="baseline, soft_attention"):
        models.build_model("vgg", image_size=64)


@pytest.mark.parametrize("which", ["sa", "baseline"])
def test_save_and_reload_predict_identically(which, sa_model, baseline_model, images, tmp_path):
    model = sa_model if which == "sa" else baseline_model
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = models.load_model(path)
    assert reloaded.name == model.name
    np.testing.assert_array_equal(model.predict(images, verbose=0), reloaded.predict(images, verbose=0))
    assert len(models.backbone_layers(reloaded)) == len(models.backbone_layers(model))
    if which == "sa":
        assert float(reloaded.get_layer("soft_attention").gamma.numpy()) == pytest.approx(0.7)
        np.testing.assert_allclose(models.attention_maps(reloaded, images), models.attention_maps(model, images),
                                   rtol=1e-6)


def test_attention_maps_shape_and_upsampling(sa_model, images):
    maps = models.attention_maps(sa_model, images)
    assert maps.shape == (3, 2, 2)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 4.0, rtol=1e-5)  # K heads, each sums to 1
    up = models.attention_maps(sa_model, images, upsample_to=(64, 48))
    assert up.shape == (3, 64, 48) and up.dtype == np.float32
    assert up.min() >= maps.min() - 1e-6 and up.max() <= maps.max() + 1e-6  # bilinear stays within range


def test_attention_maps_need_the_attention_model(baseline_model, images):
    with pytest.raises(ParameterError, match="soft-attention"):
        models.attention_maps(baseline_model, images)


def test_missing_weights_file_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="weights=none"):
        models.build_model("baseline", image_size=64, weights=str(tmp_path / "nope.h5"))


def test_weights_file_is_loaded(baseline_model, tmp_path):
    backbone = keras.Model(baseline_model.inputs, baseline_model.get_layer("conv5_block3_out").output)
    path = tmp_path / "resnet50_notop.weights.h5"
    backbone.save_weights(path)
    model = models.build_model("baseline", image_size=64, weights=str(path))
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(),
                                  baseline_model.get_layer("conv1_conv").kernel.numpy())


def test_unreadable_weights_file_is_a_parameter_error(tmp_path):
    path = tmp_path / "bad.weights.h5"
    path.write_text("not hdf5")
    with pytest.raises(ParameterError, match="could not load"):
        models.build_model("baseline", image_size=64, weights=str(path))


def test_imagenet_offline_is_a_parameter_error(monkeypatch):
    from keras.src.applications import resnet

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(resnet.file_utils, "get_file", offline)
    with pytest.raises(ParameterError) as info:
        models.build_model("soft_attention", image_size=64, weights="imagenet")
    assert "--set weights=PATH" in str(info.value) and "--set weights=none" in str(info.value)


def test_load_model_rejects_other_files(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        models.load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("junk")
    with pytest.raises(ParameterError, match="could not load"):
        models.load_model(junk)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="other")
    other.save(tmp_path / "other.keras")
    with pytest.raises(ParameterError, match="not a LesionScan model"):
        models.load_model(tmp_path / "other.keras")
