"""Training: schedules, which layers train in each phase, BatchNorm inference mode, history, determinism."""

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lesionscan.core import parameters
from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import ModelSection, TrainSection
from lesionscan.model import networks, train

SIZE = 32  # ResNet50's smallest input: keeps these CPU tests quick


@pytest.fixture(autouse=True, scope="module")
def restore_determinism():
    """seed_everything switches TF op determinism on for the process; put it back afterwards."""
    from tensorflow.python.framework.config import disable_op_determinism, is_op_determinism_enabled

    before = is_op_determinism_enabled()
    yield
    if before:
        tf.config.experimental.enable_op_determinism()
    else:
        disable_op_determinism()


def _data(n, seed, batch=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 60, (n, SIZE, SIZE, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, n), 7).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _layer_state(model):
    backbone = networks.backbone_layers(model)
    return backbone, [layer for layer in model.layers if layer not in backbone]


def test_config_phases_and_schedules():
    cfg = TrainSection(epochs_phase1=2, epochs_phase2=3, epochs=4)
    assert cfg.phases(pretrained=False) == [("full", 4, 1e-3)]  # auto, random init: one full phase
    assert ModelSection(weights="imagenet").pretrained
    assert cfg.phases(pretrained=True) == [("frozen", 2, 1e-4), ("finetune", 3, 1e-5)]
    assert TrainSection(schedule="full", epochs=1).phases(pretrained=True) == [("full", 1, 1e-3)]
    assert TrainSection(schedule="two-phase", epochs_phase1=0).phases(pretrained=False)[0][0] == "finetune"
    with pytest.raises(ParameterError, match="schedule"):
        TrainSection(schedule="fast")


def test_config_from_profile():
    from lesionscan.core import parameters
    from lesionscan.core.parameters import resolve

    params = resolve("smoke", {"weights": "/tmp/resnet.h5", "epochs_phase1": 3})
    sections = parameters.sections(params)
    cfg, model = sections.train, sections.model
    assert model.pretrained and model.weights == "/tmp/resnet.h5"
    assert cfg.epochs_phase1 == 3 and cfg.unfreeze_fraction == params["unfreeze_fraction"]
    assert cfg.class_weights == params["class_weights"]
    assert not parameters.sections(resolve("smoke")).model.pretrained


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return networks.build_model("soft_attention", SIZE, ModelSection(attention_heads=2))


def test_set_phase_frozen_trains_only_attention_and_head(model):
    train.set_phase(model, "frozen")
    backbone, rest = _layer_state(model)
    assert not any(layer.trainable for layer in backbone)
    assert all(layer.trainable for layer in rest)
    names = {v.path.split("/")[0] for v in model.trainable_weights}
    assert names == {"soft_attention", "predictions"}


def test_set_phase_finetune_unfreezes_last_fraction_except_batchnorm(model):
    train.set_phase(model, "finetune", unfreeze_fraction=0.4)
    backbone, rest = _layer_state(model)
    first = len(backbone) - round(0.4 * len(backbone))
    assert not any(layer.trainable for layer in backbone[:first])
    for layer in backbone[first:]:
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in backbone if isinstance(layer, keras.layers.BatchNormalization))
    assert model.get_layer("conv5_block3_3_conv").trainable and not model.get_layer("conv1_conv").trainable
    assert all(layer.trainable for layer in rest)


def test_set_phase_full_trains_everything(model):
    train.set_phase(model, "full")
    assert all(layer.trainable for layer in model.layers)
    with pytest.raises(ParameterError, match="phase"):
        train.set_phase(model, "half")


def _step(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    x, y = next(iter(_data(4, seed=5)))
    model.train_on_batch(x, y)


def test_finetune_batchnorm_runs_in_inference_mode(model):
    bn, conv, early = (model.get_layer(n) for n in ("conv5_block3_3_bn", "conv5_block3_3_conv", "conv1_conv"))
    train.set_phase(model, "finetune")
    before = [bn.moving_mean.numpy().copy(), conv.kernel.numpy().copy(), early.kernel.numpy().copy()]
    _step(model)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before[0])  # BN statistics untouched
    assert not np.array_equal(conv.kernel.numpy(), before[1])  # unfrozen conv trained
    np.testing.assert_array_equal(early.kernel.numpy(), before[2])  # early layer frozen
    train.set_phase(model, "full")  # positive control: a training BN layer updates its statistics
    _step(model)
    assert not np.array_equal(bn.moving_mean.numpy(), before[0])


def _spy_fit(monkeypatch):
    """Record the keyword arguments of every Model.fit call (fit still runs)."""
    calls = []
    real_fit = keras.Model.fit

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    return calls


def _run_two_phase(monkeypatch):
    """seed, build, train 1 epoch frozen + 1 epoch finetune; return history, predictions, fit kwargs."""
    calls = _spy_fit(monkeypatch)
    train.seed_everything(7)
    net = networks.build_model("soft_attention", SIZE, ModelSection(attention_heads=2))
    cfg = TrainSection(schedule="two-phase", epochs_phase1=1, epochs_phase2=1)
    history = train.train(net, _data(8, seed=1), _data(4, seed=2), cfg,
                          class_weight={i: 1.0 + i for i in range(7)})
    return history, net.predict(_data(4, seed=3), verbose=0), calls


def test_train_two_phase_history_callbacks_and_determinism(monkeypatch, capsys):
    history, preds, calls = _run_two_phase(monkeypatch)
    assert list(history.columns) == train.HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    assert history["phase"].tolist() == ["frozen", "finetune"]
    assert history["lr"].tolist() == pytest.approx([1e-4, 1e-5])
    assert history[["loss", "accuracy", "val_loss", "val_accuracy"]].notna().all().all()
    out = capsys.readouterr().out
    assert "[frozen] epoch 1/1" in out and "[finetune] epoch 2/2" in out and "val_loss" in out
    assert [c["initial_epoch"] for c in calls] == [0, 1] and [c["epochs"] for c in calls] == [1, 2]
    for kwargs in calls:
        stop = [cb for cb in kwargs["callbacks"] if isinstance(cb, keras.callbacks.EarlyStopping)]
        plateau = [cb for cb in kwargs["callbacks"] if isinstance(cb, keras.callbacks.ReduceLROnPlateau)]
        assert len(stop) == 1 and stop[0].monitor == "val_loss" and stop[0].restore_best_weights
        assert len(plateau) == 1 and plateau[0].monitor == "val_loss"
        assert kwargs["class_weight"] == {i: 1.0 + i for i in range(7)}
    # same seed, same everything: identical history and predictions
    history3, preds3, _ = _run_two_phase(monkeypatch)
    assert history3.equals(history)
    np.testing.assert_array_equal(preds3, preds)


def test_train_quiet_and_class_weights_off(monkeypatch, capsys):
    calls = _spy_fit(monkeypatch)
    train.seed_everything(0)
    net = networks.build_model("baseline", SIZE)
    cfg = TrainSection(schedule="two-phase", epochs_phase1=1, epochs_phase2=0, class_weights=False)
    history = train.train(net, _data(4, 1), _data(4, 2), cfg, class_weight={0: 2.0}, verbose=0)
    assert history["phase"].tolist() == ["frozen"]
    assert [c["class_weight"] for c in calls] == [None]
    assert "epoch" not in capsys.readouterr().out


# --- phase-1 feature caching -------------------------------------------------------------------------

CACHE_SIZE = 64  # 2 x 2 final feature map: the attention softmax has more than one position


@pytest.mark.parametrize("kind", networks.KINDS)
def test_head_on_features_matches_model(kind):
    keras.utils.set_random_seed(1)
    net = networks.build_model(kind, CACHE_SIZE, ModelSection(attention_heads=2))
    feature_model, head_model = train.split_at_backbone(net)
    # the head shares the model's layers: same variable objects, no copies
    model_vars = {id(v) for v in net.weights}
    assert head_model.weights and all(id(v) in model_vars for v in head_model.weights)
    assert not {id(v) for v in feature_model.weights} & {id(v) for v in head_model.weights}
    backbone = {id(layer) for layer in networks.backbone_layers(net)}
    assert all(id(t._keras_history.operation) in backbone for t in train.feature_tensors(net))
    x = np.random.default_rng(0).normal(0, 60, (3, CACHE_SIZE, CACHE_SIZE, 3)).astype("float32")
    features = feature_model.predict_on_batch(x)
    np.testing.assert_allclose(head_model.predict_on_batch(features), net.predict_on_batch(x), atol=1e-5)
    # and through the float16 cache (stored features round to 3 significant digits)
    cache = train.extract_features(feature_model, tf.data.Dataset.from_tensor_slices(
        (x, np.eye(7, dtype="float32")[:3])).batch(2))
    assert all(a.dtype == np.float16 for a in cache.features) and cache.n_samples == 3
    ds = train.feature_dataset(cache, [t.dtype for t in keras.tree.flatten(head_model.inputs)])
    np.testing.assert_allclose(head_model.predict(ds, verbose=0), net.predict_on_batch(x), atol=2e-3)


def _count_calls(monkeypatch):
    """Count predict_on_batch calls per model name and the model each fit trains."""
    calls = {"predict_on_batch": {}, "fit": []}
    real_pob, real_fit = keras.Model.predict_on_batch, keras.Model.fit

    def pob(self, *args, **kwargs):
        calls["predict_on_batch"][self.name] = calls["predict_on_batch"].get(self.name, 0) + 1
        return real_pob(self, *args, **kwargs)

    def fit(self, *args, **kwargs):
        calls["fit"].append(self.name)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict_on_batch", pob)
    monkeypatch.setattr(keras.Model, "fit", fit)
    return calls


def test_cached_phase1_runs_backbone_once(monkeypatch, capsys):
    calls = _count_calls(monkeypatch)
    train.seed_everything(3)
    net = networks.build_model("soft_attention", SIZE, ModelSection(attention_heads=2))
    cfg = TrainSection(schedule="two-phase", epochs_phase1=3, epochs_phase2=1, early_stopping_patience=9)
    history = train.train(net, _data(8, seed=1), _data(4, seed=2), cfg, class_weight={i: 1.0 for i in range(7)})
    assert list(history.columns) == train.HISTORY_COLUMNS
    assert history["phase"].tolist() == ["frozen"] * 3 + ["finetune"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history[["loss", "accuracy", "val_loss", "val_accuracy"]].notna().all().all()
    # 2 training batches + 1 validation batch through the backbone, once, for 3 epochs
    assert calls["predict_on_batch"] == {"soft_attention_features": 3}
    assert calls["fit"] == ["soft_attention_head", "soft_attention"]
    assert "features cached once: 8 training samples (1 draw), 4 validation images" in capsys.readouterr().out


def _counting_dataset(n, seed, passes):
    """Like the pipeline: a new random draw each time the dataset is iterated (counted in ``passes``)."""

    def gen():
        passes.append(1)
        rng = np.random.default_rng([seed, len(passes)])
        x = rng.normal(0, 60, (n, SIZE, SIZE, 3)).astype("float32")
        y = np.eye(7, dtype="float32")[rng.integers(0, 7, n)]
        for i in range(0, n, 4):
            yield x[i:i + 4], y[i:i + 4]

    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32), tf.TensorSpec((None, 7), tf.float32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).apply(
        tf.data.experimental.assert_cardinality(n // 4))


@pytest.mark.parametrize("cache_max_gb, fit_name, expected_passes", [(1.0, "baseline_head", 2),
                                                                     (1e-9, "baseline", 1 + 3)])
def test_cache_draws_and_memory_budget(monkeypatch, cache_max_gb, fit_name, expected_passes):
    calls = _count_calls(monkeypatch)
    train.seed_everything(4)
    net = networks.build_model("baseline", SIZE)
    conv = net.get_layer("conv5_block3_3_conv").kernel.numpy().copy()
    head = net.get_layer("predictions").kernel.numpy().copy()
    passes = []
    cfg = TrainSection(schedule="two-phase", epochs_phase1=3, epochs_phase2=0, cache_draws=2,
                            cache_max_gb=cache_max_gb, early_stopping_patience=9)
    history = train.train(net, _counting_dataset(8, 0, passes), _data(4, seed=2), cfg, verbose=0)
    assert len(history) == 3 and calls["fit"] == [fit_name]
    # cached: 2 draws for 3 epochs; over budget: the probe's (one batch) and one pass per epoch
    assert len(passes) == expected_passes
    np.testing.assert_array_equal(net.get_layer("conv5_block3_3_conv").kernel.numpy(), conv)
    assert not np.array_equal(net.get_layer("predictions").kernel.numpy(), head)


def test_cache_features_off_trains_on_images(monkeypatch):
    calls = _count_calls(monkeypatch)
    train.seed_everything(0)
    net = networks.build_model("baseline", SIZE)
    cfg = TrainSection(schedule="two-phase", epochs_phase1=1, epochs_phase2=0, cache_features=False)
    train.train(net, _data(4, 1), _data(4, 2), cfg, verbose=0)
    assert calls["fit"] == ["baseline"] and calls["predict_on_batch"] == {}
    assert parameters.sections({"cache_features": False}).train.cache_features is False
    with pytest.raises(ParameterError, match="cache_draws"):
        train.train(net, _data(4, 1), _data(4, 2), TrainSection(cache_draws=0), verbose=0)


def test_feature_dataset_cycles_draws_in_new_orders():
    features = np.arange(10, dtype=np.float16)[:, None] * np.ones((1, 3), np.float16)
    labels = np.arange(10, dtype=np.int64)
    cache = train.FeatureCache(features=[features], targets=[labels], draws=[(0, 6), (6, 10)], batch_size=4)
    ds = train.feature_dataset(cache, ["float32"], shuffle_seed=5)
    epochs = [np.concatenate([y.numpy() for _, y in ds]) for _ in range(3)]
    assert sorted(epochs[0]) == list(range(6)) and sorted(epochs[1]) == list(range(6, 10))
    assert sorted(epochs[2]) == list(range(6)) and not np.array_equal(epochs[2], epochs[0])  # draw 0, new order
    x, y = next(iter(ds))
    assert x.dtype == tf.float32 and x.shape == (4, 3) and np.array_equal(x.numpy()[:, 0], y.numpy())
    val = train.feature_dataset(cache, ["float32"])
    assert [len(y) for _, y in val] == [4, 4, 2] and np.concatenate([y for _, y in val]).tolist() == list(range(10))
    assert val.cardinality().numpy() == 3
    assert ds.options().autotune.enabled is False and val.options().autotune.enabled is False


def test_extract_features_float16_overflow_and_budget():
    inputs = keras.Input((2,))
    scale = keras.Model(inputs, [keras.layers.Rescaling(1.0)(inputs), keras.layers.Rescaling(1e5)(inputs)])
    x = np.ones((5, 2), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(5))).batch(2)
    cache = train.extract_features(scale, ds, draws=2)
    assert cache.draws == [(0, 5), (5, 10)] and cache.batch_size == 2 and cache.n_samples == 10
    assert cache.features[0].dtype == np.float16  # fits float16
    assert cache.features[1].dtype == np.float32 and np.all(cache.features[1] == 1e5)  # would overflow it
    assert cache.targets[0].tolist() == list(range(5)) * 2
    assert train.extract_features(scale, ds, max_bytes=10) is None


# --- precision ----------------------------------------------------------------------------------------

@pytest.fixture
def restore_policy():
    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


def test_configure_precision_float32_on_cpu_mixed_on_gpu(monkeypatch, restore_policy):
    if not tf.config.list_physical_devices("GPU"):
        assert train.configure_precision() == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert train.configure_precision() == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert train.configure_precision() == "float32"


def test_cached_training_under_mixed_precision(restore_policy):
    """What a GPU run does (float16 features, loss scaling, lr logging), checked on the CPU at 32 px."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    train.seed_everything(2)
    net = networks.build_model("soft_attention", SIZE, ModelSection(attention_heads=2))
    cfg = TrainSection(schedule="two-phase", epochs_phase1=2, epochs_phase2=0)
    history = train.train(net, _data(8, seed=1), _data(4, seed=2), cfg, verbose=0)
    assert history["phase"].tolist() == ["frozen"] * 2
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
    assert history["lr"].tolist() == pytest.approx([1e-4, 1e-4])


def _small_net():
    """Pooling and a dense layer: traces at once, for tests of the loop around the network, not the network."""
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(pooled))


def test_progress_lines_give_the_batch_and_the_time_left(monkeypatch, capsys):
    """Inside an epoch a line with the batch reached and the epoch's time left; after one, the phase's."""
    monkeypatch.setattr(train, "PROGRESS_SECONDS", 0.0)
    net = _small_net()  # the log does not depend on the network
    cfg = TrainSection(schedule="full", epochs=2, early_stopping_patience=5)
    train.train(net, _data(8, seed=1), _data(4, seed=2), cfg)
    out = capsys.readouterr().out
    assert re.search(r"\[full\] epoch 1/2: batch 1/2, [\d.]+ s per batch, about \d+ s left in the epoch", out)
    assert re.search(r"\[full\] epoch 1/2 - \d+s - .* - phase ends in at most \d+ s\n", out)
    assert "epoch 2/2 -" in out and "phase ends" not in out.split("epoch 2/2 -")[1]
    assert [train._duration(s) for s in (45, 600, 4800)] == ["45 s", "10 min", "1 h 20 min"]


def test_cosine_schedule_decays_each_phase_from_its_rate(monkeypatch):
    """``lr_schedule=cosine``: a phase starts at its own rate and falls along a cosine; no plateau cuts."""
    calls = _spy_fit(monkeypatch)
    net = _small_net()  # the schedule does not depend on the network
    cfg = TrainSection(schedule="full", epochs=4, lr_full=1e-2, lr_schedule="cosine", early_stopping_patience=10)
    history = train.train(net, _data(8, seed=1), _data(4, seed=2), cfg, verbose=0)
    assert history["lr"].tolist() == pytest.approx([1e-2, 1e-2 * (1 + np.cos(np.pi / 4)) / 2, 0.5e-2,
                                                    1e-2 * (1 + np.cos(3 * np.pi / 4)) / 2])
    assert not any(isinstance(cb, keras.callbacks.ReduceLROnPlateau) for c in calls for cb in c["callbacks"])
    later_phase = train._rate_schedule(cfg, 1e-3, first_epoch=4, n_epochs=2)  # epochs count on across phases
    assert [later_phase.schedule(e, None) for e in (4, 5)] == pytest.approx([1e-3, 0.5e-3])
    with pytest.raises(ParameterError, match="lr_schedule='step'"):
        TrainSection(lr_schedule="step")


@pytest.mark.parametrize("cached_phase", [False, True])
def test_training_step_is_traced_once_per_phase(monkeypatch, cached_phase):
    """Optimizer and metric variables exist before ``fit`` traces, so TensorFlow traces the step once, not twice.

    ``train_step`` runs in Python only while a trace is built: counting its calls counts traces. Without
    ``build_before_tracing`` Keras creates the variables inside the first trace and the count is 2.
    """
    traces = []
    original = keras.Model.train_step

    def counting(self, data):
        traces.append(self.name)
        return original(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting)
    net = _small_net() if not cached_phase else networks.build_model("baseline", SIZE, ModelSection())
    cfg = TrainSection(schedule="two-phase" if cached_phase else "full", epochs=2, epochs_phase1=2,
                       epochs_phase2=0, early_stopping_patience=5)
    train.train(net, _data(8, seed=1), _data(4, seed=2), cfg, verbose=0)
    assert len(traces) == 1, traces
