"""Training under a distribution strategy (``distribute``): the parameter, what it resolves to on this machine,
and a model trained mirrored over two devices that saves, reloads and predicts like one trained on one.

TensorFlow fixes its logical devices when it first initialises them, so the two-device training runs in a
fresh process: this file run as a script (``python tests/unit/test_distribute.py OUT``) splits the CPU into
two logical devices before anything else touches TensorFlow's devices, trains, and leaves in ``OUT`` what
the test below checks.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lesionscan.core import parameters
from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import TrainSection

SIZE = 32  # ResNet50's smallest input
IMAGES = 8
BATCH = 4  # the global batch: two images per replica under the mirrored strategy


def _images():
    rng = np.random.default_rng(0)
    return rng.normal(0, 60, (IMAGES, SIZE, SIZE, 3)).astype("float32"), np.arange(IMAGES) % 7


def _train_both(out: Path) -> None:
    """Split the CPU in two, train the smallest model of the package with distribute=mirrored and =none."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from lesionscan.core import atomic
    from lesionscan.model import distribution, networks, saving, train

    images, classes = _images()
    labels = keras.utils.to_categorical(classes, 7).astype("float32")

    def data():
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)

    report = {"devices": len(tf.config.list_logical_devices("CPU"))}
    for distribute in ("mirrored", "none"):
        started = time.perf_counter()
        train.seed_everything(0)
        with distribution.training_scope(distribute) as strategy:
            model = networks.build_model("baseline", SIZE)
            history = train.train(model, data(), data(), TrainSection(schedule="full", epochs=1, distribute=distribute),
                                  verbose=0)
            if distribute == "mirrored":  # phase 1's feature cache runs a model under the strategy too
                tiny_in = keras.Input((SIZE, SIZE, 3))
                tiny_out = keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 3)(tiny_in))
                tiny = keras.Model(tiny_in, keras.layers.GlobalAveragePooling2D()(tiny_out))
                cache = train.extract_features(tiny, data(), dtype=np.float32)
                report["cached"] = {"samples": cache.n_samples,
                                    "equal": bool(np.allclose(cache.features[0], tiny.predict(images, verbose=0),
                                                              rtol=1e-5, atol=1e-5))}
        probabilities = {"trained": model.predict(images, verbose=0)}
        if distribute == "mirrored":  # saved as the study saves, reloaded as every reader of a model does
            path = out / f"{distribute}.keras"
            with atomic.atomic_path(path) as tmp:
                model.save(tmp)
            reloaded = saving.load_model(path)
            probabilities["reloaded"] = reloaded.predict(images, verbose=0)
            report["reloaded"] = {"name": reloaded.name, "input": list(reloaded.inputs[0].shape[1:])}
        np.savez(out / f"{distribute}.npz", **probabilities)
        report[distribute] = {**distribution.describe(strategy), "epochs": len(history),
                              "seconds": round(time.perf_counter() - started, 1)}
    (out / "report.json").write_text(json.dumps(report))


def test_distribute_is_a_checked_parameter_that_determines_the_model():
    assert TrainSection().distribute == "auto" and parameters.resolve("smoke")["distribute"] == "auto"
    assert parameters.resolve("smoke", ["distribute=mirrored"])["distribute"] == "mirrored"
    with pytest.raises(ParameterError, match=r"distribute='horovod': expected one of auto, none, mirrored"):
        parameters.resolve("smoke", ["distribute=horovod"])
    with pytest.raises(ParameterError, match="distribute"):
        TrainSection(distribute="gpu")
    assert "more than one GPU" in parameters.help_text("distribute")
    assert "global batch" in parameters.help_text("distribute")
    recipe = parameters.sections(parameters.resolve("smoke")).recipe("baseline")
    assert recipe.fingerprint()["train"]["distribute"] == "auto"  # numerics differ under a strategy


def test_auto_and_none_are_the_default_strategy_without_gpus(capsys):
    tf = pytest.importorskip("tensorflow")
    from lesionscan.model import distribution

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    for value in ("auto", "none"):
        strategy = distribution.resolve(value)
        assert strategy is tf.distribute.get_strategy()
        assert distribution.describe(strategy) == {"strategy": "default", "replicas": 1}
        with distribution.training_scope(value, verbose=False) as scoped:
            assert scoped is strategy
    out = capsys.readouterr().out.splitlines()
    assert out == ["distribute=auto: default strategy, 1 replica (0 GPUs visible); batch_size is the global batch",
                   "distribute=none: default strategy, 1 replica (one device); batch_size is the global batch"]


def test_mirrored_on_one_device_is_a_clear_error():
    tf = pytest.importorskip("tensorflow")
    from lesionscan.model import distribution

    if tf.config.list_logical_devices("GPU") or len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process has more than one device")
    with pytest.raises(ParameterError, match=r"distribute=mirrored: no GPU is visible and 1 CPU device.*"
                                             r"use distribute=auto or distribute=none"):
        distribution.resolve("mirrored")
    with pytest.raises(ParameterError, match="distribute='many'"):
        distribution.resolve("many")


@pytest.mark.slow
def test_mirrored_training_saves_reloads_and_predicts_like_one_device(tmp_path):
    """On the CPU split into two logical devices, in a fresh process: about 110 s of CPU (two ResNet50 traces)."""
    started = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = time.perf_counter() - started
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["devices"] == 2
    assert report["mirrored"]["strategy"] == "MirroredStrategy" and report["mirrored"]["replicas"] == 2
    assert report["none"]["strategy"] == "default" and report["none"]["replicas"] == 1
    assert "distribute=mirrored: MirroredStrategy, 2 replicas (over 2 logical CPU devices" in done.stdout
    assert report["cached"] == {"samples": IMAGES, "equal": True}  # each image once, not once per replica
    assert report["reloaded"] == {"name": "baseline", "input": [SIZE, SIZE, 3]}
    mirrored, single = np.load(tmp_path / "mirrored.npz"), np.load(tmp_path / "none.npz")
    assert mirrored["reloaded"].shape == mirrored["trained"].shape == single["trained"].shape == (IMAGES, 7)
    np.testing.assert_allclose(mirrored["reloaded"], mirrored["trained"], rtol=1e-5, atol=1e-6)
    for probs in (mirrored["reloaded"], single["trained"]):  # valid probabilities; the values differ
        assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert report["mirrored"]["epochs"] == report["none"]["epochs"] == 1
    print(f"two trainings in a subprocess: {seconds:.0f} s ({report['mirrored']['seconds']} s mirrored, "
          f"{report['none']['seconds']} s on one device)")


if __name__ == "__main__":
    _train_both(Path(sys.argv[1]))
