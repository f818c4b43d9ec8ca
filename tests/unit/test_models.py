"""Soft-attention layer and the two models: shapes, the equation's invariants, save/reload, weights errors."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import ModelSection
from lesionscan.explain import attention
from lesionscan.model import layers, networks, saving


def _features(batch=2, size=5, channels=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype("float32")


def test_attention_output_shapes():
    layer = layers.SoftAttention(heads=3)
    attended, maps = layer(_features())
    assert tuple(attended.shape) == (2, 5, 5, 8)
    assert tuple(maps.shape) == (2, 5, 5, 3)
    assert layer.compute_output_shape((None, 5, 5, 8)) == [(None, 5, 5, 8), (None, 5, 5, 3)]


def test_each_head_is_a_distribution_over_positions():
    _, maps = layers.SoftAttention(heads=4)(_features(size=6))
    maps = np.asarray(maps)
    assert (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_attended_is_gamma_times_features_times_summed_maps():
    x = _features()
    layer = layers.SoftAttention(heads=2, gamma_init=0.5)
    attended, maps = layer(x)
    expected = 0.5 * x * np.asarray(maps).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(attended), expected, rtol=1e-5, atol=1e-6)
    assert float(layer.gamma.numpy()) == 0.5


def test_gradients_reach_gamma_and_kernel():
    layer = layers.SoftAttention(heads=2)
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
    layer = layers.SoftAttention(heads=5, gamma_init=0.25, kernel_size=1, name="att")
    clone = layers.SoftAttention.from_config(layer.get_config())
    assert (clone.heads, clone.gamma_init, clone.kernel_size, clone.name) == (5, 0.25, 1, "att")
    assert keras.saving.get_registered_name(layers.SoftAttention) == "lesionscan>SoftAttention"


def test_attention_rejects_zero_heads():
    with pytest.raises(ParameterError, match="attention_heads"):
        layers.SoftAttention(heads=0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(0, 60, size=(3, 64, 64, 3)).astype("float32")


@pytest.fixture(scope="module")
def sa_model():
    keras.utils.set_random_seed(0)
    return networks.build_model("soft_attention", 64, ModelSection(attention_heads=4, gamma_init=0.7))


@pytest.fixture(scope="module")
def baseline_model():
    keras.utils.set_random_seed(0)
    return networks.build_model("baseline", 64)


def test_models_build_flat_with_named_layers(sa_model, baseline_model):
    for model in (sa_model, baseline_model):
        names = [layer.name for layer in model.layers]
        assert "conv5_block3_out" in names and "conv1_conv" in names  # ResNet50 flat, not nested
        assert not any(isinstance(layer, keras.Model) for layer in model.layers)
        assert model.output_shape == (None, 7)
        assert len(networks.backbone_layers(model)) == names.index("conv5_block3_out")
    assert sa_model.name == "soft_attention" and baseline_model.name == "baseline"
    assert "soft_attention" in [layer.name for layer in sa_model.layers]
    assert sa_model.get_layer("attended_features").output.shape == (None, 2, 2, 2048)
    assert "soft_attention" not in [layer.name for layer in baseline_model.layers]
    # the attention layer adds a 3x3x2048xK kernel, K biases and gamma
    assert sa_model.count_params() - baseline_model.count_params() == 3 * 3 * 2048 * 4 + 4 + 1


def test_unknown_kind_is_a_parameter_error():
    with pytest.raises(ParameterError, match="baseline, soft_attention"):
        networks.build_model("vgg", 64)


@pytest.mark.parametrize("which", ["sa", "baseline"])
def test_save_and_reload_predict_identically(which, sa_model, baseline_model, images, tmp_path):
    model = sa_model if which == "sa" else baseline_model
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = saving.load_model(path)
    assert reloaded.name == model.name
    np.testing.assert_array_equal(model.predict(images, verbose=0), reloaded.predict(images, verbose=0))
    assert len(networks.backbone_layers(reloaded)) == len(networks.backbone_layers(model))
    if which == "sa":
        assert float(reloaded.get_layer("soft_attention").gamma.numpy()) == pytest.approx(0.7)
        np.testing.assert_allclose(attention.attention_maps(reloaded, images), attention.attention_maps(model, images),
                                   rtol=1e-6)


def test_attention_maps_shape_and_upsampling(sa_model, images):
    maps = attention.attention_maps(sa_model, images)
    assert maps.shape == (3, 2, 2)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 4.0, rtol=1e-5)  # K heads, each sums to 1
    up = attention.attention_maps(sa_model, images, upsample_to=(64, 48))
    assert up.shape == (3, 64, 48) and up.dtype == np.float32
    assert up.min() >= maps.min() - 1e-6 and up.max() <= maps.max() + 1e-6  # bilinear stays within range


def test_attention_maps_need_the_attention_model(baseline_model, images):
    with pytest.raises(ParameterError, match="soft-attention"):
        attention.attention_maps(baseline_model, images)


def test_missing_weights_file_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="weights=none"):
        networks.build_model("baseline", 64, ModelSection(weights=str(tmp_path / "nope.h5")))


def test_weights_file_is_loaded(baseline_model, tmp_path):
    backbone = keras.Model(baseline_model.inputs, baseline_model.get_layer("conv5_block3_out").output)
    path = tmp_path / "resnet50_notop.weights.h5"
    backbone.save_weights(path)
    model = networks.build_model("baseline", 64, ModelSection(weights=str(path)))
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(),
                                  baseline_model.get_layer("conv1_conv").kernel.numpy())


def test_unreadable_weights_file_is_a_parameter_error(tmp_path):
    path = tmp_path / "bad.weights.h5"
    path.write_text("not hdf5")
    with pytest.raises(ParameterError, match="could not load"):
        networks.build_model("baseline", 64, ModelSection(weights=str(path)))


def test_imagenet_offline_is_a_parameter_error(monkeypatch):
    from keras.src.applications import resnet

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(resnet.file_utils, "get_file", offline)
    with pytest.raises(ParameterError) as info:
        networks.build_model("soft_attention", 64, ModelSection(weights="imagenet"))
    assert "--set weights=PATH" in str(info.value) and "--set weights=none" in str(info.value)


def test_load_model_rejects_other_files(tmp_path):
    with pytest.raises(ParameterError, match="no such file"):
        saving.load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("junk")
    with pytest.raises(ParameterError, match="not a Keras archive"):
        saving.load_model(junk)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="other")
    other.save(tmp_path / "other.keras")
    with pytest.raises(ParameterError, match="not a LesionScan model"):
        saving.load_model(tmp_path / "other.keras")


# --- the public-code attention, class attention, and every kind end to end ---------------------------------


def _public_scores_by_hand(x, kernel, bias):
    """Pre-ReLU scores of the public layer's 3-D convolution, by TensorFlow's documented "same" rule, in loops."""
    batch, height, width, _ = x.shape
    depth, heads = kernel.shape[0], kernel.shape[-1]
    before = (depth - 1) // 2  # rows of padding above; along the channels: none, so channels 0..2
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    out = np.zeros((batch, height, width, heads))
    for i in range(height):
        for j in range(width):
            for h in range(height):
                row = before + h - i
                if 0 <= row < depth:
                    out[:, i, j] += np.einsum("bwc,wck->bk", padded[:, h, j:j + 3, :3], kernel[row, :, :, 0, :])
    return out + bias


@pytest.mark.parametrize("shape", [(2, 5, 6, 8), (1, 9, 9, 4), (2, 3, 3, 16)])
def test_public_attention_computes_the_public_convolution(shape):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    layer = layers.SoftAttentionPublic(heads=3)
    layer(x)
    np.testing.assert_allclose(np.asarray(layer.scores(x)),
                               _public_scores_by_hand(x, layer.kernel.numpy(), layer.bias.numpy()),
                               rtol=1e-4, atol=1e-4)


def test_public_attention_reads_three_channels_and_has_no_gamma():
    x = _features(channels=8)
    layer = layers.SoftAttentionPublic(heads=2)
    attended, maps = layer(x)
    maps = np.asarray(maps)
    other = x.copy()
    other[..., 3:] = _features(channels=5, seed=9)
    np.testing.assert_allclose(np.asarray(layer(other)[1]), maps, rtol=1e-6)  # channels 3.. never matter
    np.testing.assert_allclose(np.asarray(attended), x * maps.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert {w.name for w in layer.weights} == {"kernel", "bias"} and not hasattr(layer, "gamma")
    assert tuple(layer.kernel.shape) == (8, 3, 3, 1, 2)  # as many weights as the equation's 3x3x8x2


def test_class_attention_pools_features_under_each_class_map():
    x = _features(channels=8)
    layer = layers.ClassAttention(classes=3)
    pooled, maps = layer(x)
    maps = np.asarray(maps)
    assert tuple(pooled.shape) == (2, 3, 8) and maps.shape == (2, 5, 5, 3)
    assert layer.compute_output_shape((None, 5, 5, 8)) == [(None, 3, 8), (None, 5, 5, 3)]
    assert (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(pooled), np.einsum("bhwk,bhwc->bkc", maps, x), rtol=1e-4, atol=1e-5)


def test_class_wise_dense_reads_each_class_vector():
    z = np.random.default_rng(3).normal(size=(2, 3, 8)).astype("float32")
    layer = layers.ClassWiseDense(activation="linear", kernel_regularizer=keras.regularizers.L2(0.1))
    logits = np.asarray(layer(z))
    expected = (z * layer.kernel.numpy()).sum(axis=-1) + layer.bias.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert len(layer.losses) == 1  # the L2 penalty
    probs = np.asarray(layers.ClassWiseDense()(z))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: layers.SoftAttentionPublic(heads=2),
                                  lambda: layers.ClassAttention(classes=3)], ids=["public", "class"])
def test_gradients_reach_the_attention_convolution(make):
    keras.utils.set_random_seed(0)
    layer = make()
    x = tf.constant(_features(channels=8))
    layer(x)
    with tf.GradientTape() as tape:
        out, _ = layer(x)
        loss = tf.reduce_sum(out ** 2)
    grads = dict(zip([w.name for w in layer.trainable_weights],
                     tape.gradient(loss, layer.trainable_weights)))
    assert set(grads) == {"kernel", "bias"}
    assert float(tf.reduce_max(tf.abs(grads["kernel"]))) > 0


def test_custom_layer_configs_round_trip():
    custom = [
        layers.SoftAttentionPublic(heads=5, kernel_initializer="zeros", name="pub"),
        layers.ClassAttention(classes=4, kernel_size=1, name="cls"),
        layers.ClassWiseDense(activation="linear", kernel_regularizer=keras.regularizers.L2(0.01), name="cwd"),
    ]
    for layer in custom:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config and clone.name == layer.name
        assert keras.saving.get_registered_name(type(layer)) == f"lesionscan>{type(layer).__name__}"
    assert custom[0].get_config()["heads"] == 5
    assert (custom[1].get_config()["classes"], custom[1].get_config()["kernel_size"]) == (4, 1)
    assert custom[2].get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.01)


# attention layer -> shape of its per-head maps for a 64 px input and attention_heads=3
EXPECTED_ATTENTION = {
    "baseline": {},
    "soft_attention": {"soft_attention": (2, 2, 3)},
    "soft_attention_public": {"soft_attention": (2, 2, 3)},
    "multiscale": {"soft_attention": (2, 2, 3), "soft_attention_stage4": (4, 4, 3)},
    "class_attention": {"class_attention": (2, 2, 7)},
}


def test_kinds_are_listed():
    assert set(networks.KINDS) == set(EXPECTED_ATTENTION) and networks.KINDS[:2] == ("baseline", "soft_attention")


@pytest.fixture(scope="module", params=networks.KINDS)
def trained(request, images, tmp_path_factory):
    """One model per kind at 64 px: its weights before and after one training step, and a reloaded copy."""
    kind = request.param
    keras.utils.set_random_seed(0)
    model = networks.build_model(kind, 64, ModelSection(attention_heads=3, gamma_init=0.7))
    before = {f"{layer.name}/{w.name}": w.numpy().copy() for layer in model.layers
              if layer.name in EXPECTED_ATTENTION[kind] or layer.name == "predictions" for w in layer.weights}
    # eagerly: tracing ResNet50's training step costs ~20 s on 2 cores, one eager step ~3 s
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", run_eagerly=True)
    loss = model.train_on_batch(images, np.eye(7, dtype="float32")[[0, 3, 6]])
    path = tmp_path_factory.mktemp(kind) / f"{kind}.keras"
    model.save(path)
    return kind, model, saving.load_model(path), before, float(np.asarray(loss).ravel()[0])


def test_every_kind_is_flat_and_trains_its_attention(trained, baseline_model):
    kind, model, _, before, loss = trained
    assert model.name == kind and model.output_shape == (None, 7) and np.isfinite(loss)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    backbone = [layer.name for layer in networks.backbone_layers(model)]
    assert backbone == [layer.name for layer in networks.backbone_layers(baseline_model)]  # same layers unfreeze
    assert not set(networks.attention_layers(model)) & set(backbone)
    assert set(networks.attention_layers(model)) == set(EXPECTED_ATTENTION[kind])
    for key, value in before.items():  # one Adam step moved every attention weight (gamma, kernel, bias)
        layer_name, weight_name = key.split("/")
        after = next(w for w in model.get_layer(layer_name).weights if w.name == weight_name).numpy()
        assert np.any(after != value), f"{key} did not change: no gradient reached it"
    if kind in ("soft_attention", "multiscale"):
        assert any(key.endswith("/gamma") for key in before)


def test_every_kind_round_trips(trained, images):
    kind, model, reloaded, _, _ = trained
    assert reloaded.name == kind
    np.testing.assert_array_equal(model(images, training=False), reloaded(images, training=False))
    assert ([layer.name for layer in networks.backbone_layers(reloaded)]
            == [layer.name for layer in networks.backbone_layers(model)])
    for layer in reloaded.layers:
        if layer.name in EXPECTED_ATTENTION[kind] or layer.name == "predictions":
            assert type(layer) is type(model.get_layer(layer.name))
            assert layer.get_config() == model.get_layer(layer.name).get_config()
    if kind == "soft_attention_public":
        assert {w.name for w in reloaded.get_layer("soft_attention").weights} == {"kernel", "bias"}


def test_every_attention_head_is_a_distribution_over_positions(trained, images):
    kind, _, reloaded, _, _ = trained
    for name, shape in EXPECTED_ATTENTION[kind].items():
        heads = attention.attention_heads(reloaded, images, layer=name)
        assert heads.shape == (3, *shape)
        assert (heads >= 0).all()
        np.testing.assert_allclose(heads.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_attention_maps_of_every_kind(trained, images):
    kind, _, reloaded, _, _ = trained
    if kind == "baseline":
        with pytest.raises(ParameterError, match="soft-attention"):
            attention.attention_maps(reloaded, images)
        return
    maps = attention.attention_maps(reloaded, images, upsample_to=(16, 16))
    assert maps.shape == (3, 16, 16)
    maps = attention.attention_maps(reloaded, images)
    assert maps.shape == (3, 2, 2)
    if kind == "class_attention":  # the predicted class's map, or a chosen class's
        heads = attention.attention_heads(reloaded, images)
        predicted = reloaded.predict(images, verbose=0).argmax(axis=-1)
        np.testing.assert_allclose(maps, heads[np.arange(3), :, :, predicted], rtol=1e-6)
        np.testing.assert_allclose(attention.attention_maps(reloaded, images, class_index=4), heads[..., 4], rtol=1e-6)
        with pytest.raises(ParameterError, match="class_index"):
            attention.attention_maps(reloaded, images, class_index=7)
    else:  # the sum over the K = 3 heads of the last stage
        np.testing.assert_allclose(maps.sum(axis=(1, 2)), 3.0, rtol=1e-5)
    if kind == "multiscale":
        assert attention.attention_maps(reloaded, images, layer="soft_attention_stage4").shape == (3, 4, 4)
        with pytest.raises(ParameterError, match="no attention layer"):
            attention.attention_maps(reloaded, images, layer="gap")


def test_grad_cam_works_on_every_kind(trained, images):
    from lesionscan.explain import gradcam

    kind, _, reloaded, _, _ = trained
    expected = "conv5_block3_out" if kind in ("baseline", "class_attention") else "soft_attention"
    assert gradcam.default_layer(reloaded) == expected
    cams = gradcam.gradcam(reloaded, images[:2], [0, 5])
    assert cams.shape == (2, 64, 64) and np.isfinite(cams).all()


def test_parameter_counts_of_every_kind():
    table = networks.parameter_counts(32, ModelSection(attention_heads=2))
    assert list(table.columns) == ["kind", "parameters", "trainable", "beyond_baseline"]
    assert tuple(table["kind"]) == networks.KINDS
    extra = dict(zip(table["kind"], table["beyond_baseline"]))
    sa4, sa5 = 3 * 3 * 1024 * 2 + 2 + 1, 3 * 3 * 2048 * 2 + 2 + 1  # kernel, biases, gamma
    assert extra == {
        "baseline": 0,
        "soft_attention": sa5,
        "soft_attention_public": 2048 * 3 * 3 * 1 * 2 + 2,  # no gamma
        "multiscale": sa5 + sa4 + 1024 * 7,  # and the classifier reads 1024 more features
        "class_attention": 3 * 3 * 2048 * 7 + 7,  # the class-wise classifier has a dense layer's weights
    }
    frozen = table["parameters"] - table["trainable"]  # batch-normalisation statistics only
    assert frozen.nunique() == 1 and frozen.iloc[0] > 0
