"""Training: schedules, which layers train in each phase, BatchNorm inference mode, history, determinism."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lesionscan import models, train  # noqa: E402
from lesionscan.errors import ParameterError  # noqa: E402

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
    backbone = models.backbone_layers(model)
    return backbone, [layer for layer in model.layers if layer not in backbone]


def test_config_phases_and_schedules():
    cfg = train.TrainConfig(epochs_phase1=2, epochs_phase2=3, epochs=4)
    assert cfg.phases() == [("full", 4, 1e-3)]  # auto, random init: one full phase
    cfg.weights = "imagenet"
    assert cfg.pretrained and cfg.phases() == [("frozen", 2, 1e-4), ("finetune", 3, 1e-5)]
    assert train.TrainConfig(schedule="full", weights="w.h5", epochs=1).phases() == [("full", 1, 1e-3)]
    assert train.TrainConfig(schedule="two-phase", epochs_phase1=0).phases()[0][0] == "finetune"
    with pytest.raises(ParameterError, match="schedule"):
        train.TrainConfig(schedule="fast").phases()


def test_config_from_profile():
    from lesionscan.profiles import resolve

    params = resolve("smoke", {"weights": "/tmp/resnet.h5", "epochs_phase1": 3})
    cfg = train.TrainConfig.from_params(params)
    assert cfg.pretrained and cfg.weights == "/tmp/resnet.h5" and cfg.epochs_phase1 == 3 and cfg.unfreeze_fraction == params["unfreeze_fraction"]
    assert cfg.use_class_weights == params["class_weights"]
    assert not train.TrainConfig.from_params(resolve("smoke")).pretrained


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return models.build_model("soft_attention", image_size=SIZE, attention_heads=2)


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
    net = models.build_model("soft_attention", image_size=SIZE, attention_heads=2)
    cfg = train.TrainConfig(schedule="two-phase", epochs_phase1=1, epochs_phase2=1)
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
    net = models.build_model("baseline", image_size=SIZE)
    cfg = train.TrainConfig(schedule="two-phase", epochs_phase1=1, epochs_phase2=0, use_class_weights=False)
    history = train.train(net, _data(4, 1), _data(4, 2), cfg, class_weight={0: 2.0}, verbose=0)
    assert history["phase"].tolist() == ["frozen"]
    assert [c["class_weight"] for c in calls] == [None]
    assert "epoch" not in capsys.readouterr().out
