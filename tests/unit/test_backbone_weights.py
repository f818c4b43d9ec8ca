"""ResNet50 no-top weights files: the random file in the ImageNet file's layout loads as ``weights=PATH`` (the
backbone's weights equal the file's arrays), and a file of the wrong shape, a truncated, missing or non-HDF5 file
is refused naming the file and what was expected. No training.

Refusals happen before any weight is set, so most tests check them on one shared backbone with
``backbone_weights.load``, the loader ``networks.build_model`` calls; a few go through ``build_model`` and the
start-up check themselves.
"""

import re
import shutil

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import ModelSection
from lesionscan.model import backbone_weights, networks


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A random ResNet50 no-top weights file in the ImageNet file's layout (written once for the module)."""
    return backbone_weights.write_random_weights(tmp_path_factory.mktemp("weights") / "random_notop.h5", seed=3)


@pytest.fixture(scope="module")
def backbone():
    """A ResNet50 no-top at 64 px, random-initialised: what the refused files are checked against."""
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))


def _build(path, kind="baseline", size=64):
    return networks.build_model(kind, size, ModelSection(weights=str(path)))


def _message(info, path, fragments) -> str:
    message = str(info.value)
    assert f"weights={path}" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _refused_by_build(path, *fragments) -> str:
    """Building a model from ``path`` is a ParameterError naming ``weights=PATH`` and every fragment."""
    with pytest.raises(ParameterError) as info:
        _build(path)
    return _message(info, path, fragments)


def _refused(backbone, path, *fragments) -> str:
    """Loading ``path`` into the backbone as ``build_model`` does is a ParameterError naming it and every fragment."""
    with pytest.raises(ParameterError) as info:
        backbone_weights.load(backbone, path, label=f"weights={path}")
    return _message(info, path, fragments)


def test_the_random_file_has_the_imagenet_files_layout(weights_file):
    """Legacy Keras h5 by layer name: layer_names at the root, per layer weight_names like conv1_conv/kernel:0."""
    with h5py.File(weights_file, "r") as f:
        layer_names = [n.decode() for n in f.attrs["layer_names"]]
        # the input layer's name carries a per-process counter (input_layer_2 after two models were built)
        assert layer_names[0].startswith("input_layer") and layer_names[1:4] == ["conv1_pad", "conv1_conv", "conv1_bn"]
        assert layer_names[-1] == "conv5_block3_out"
        assert [n.decode() for n in f["conv1_conv"].attrs["weight_names"]] == ["conv1_conv/kernel:0",
                                                                             "conv1_conv/bias:0"]
        assert [n.decode() for n in f["conv1_bn"].attrs["weight_names"]] == [
            "conv1_bn/gamma:0", "conv1_bn/beta:0", "conv1_bn/moving_mean:0", "conv1_bn/moving_variance:0"]
        assert f["conv1_conv"]["conv1_conv"]["kernel:0"].shape == (7, 7, 3, 64)  # nested, as in the official file
        assert f["conv5_block3_3_conv"]["conv5_block3_3_conv"]["kernel:0"].shape == (1, 1, 512, 2048)
    arrays = backbone_weights.read_legacy_file(weights_file)
    assert len(arrays) == 106  # ResNet50's layers with weights, without the top
    assert all(np.isfinite(a).all() for layer in arrays.values() for a in layer)
    assert all((layer[3] > 0).all() for name, layer in arrays.items() if name.endswith("_bn"))  # variances


def test_weights_path_loads_the_file_into_the_backbone(weights_file):
    """Every layer of the backbone holds exactly the file's arrays, through the package and through Keras itself."""
    arrays = backbone_weights.read_legacy_file(weights_file)
    model = _build(weights_file)
    backbone = networks.backbone_layers(model)
    assert {layer.name for layer in backbone if layer.weights} == set(arrays)
    for name, expected in arrays.items():
        layer = model.get_layer(name)
        loaded = [keras.ops.convert_to_numpy(v) for v in layer.trainable_weights + layer.non_trainable_weights]
        assert len(loaded) == len(expected), name
        for got, want in zip(loaded, expected):
            np.testing.assert_array_equal(got, want, err_msg=name)
    # Keras' own ResNet50(weights=PATH), the call the ImageNet file is made for, reads it the same way.
    plain = keras.applications.ResNet50(include_top=False, weights=str(weights_file), input_shape=(64, 64, 3))
    for name in arrays:
        for got, want in zip(plain.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=name)
    # Batch-norm statistics that fit the random kernels: on smooth images the features stay of order one.
    rng = np.random.default_rng(0)
    images = np.repeat(np.repeat(rng.uniform(0, 255, (4, 4, 4, 3)), 16, axis=1), 16, axis=2).astype("float32")
    features = keras.ops.convert_to_numpy(plain(keras.applications.resnet50.preprocess_input(images)))
    assert np.isfinite(features).all() and 0.1 < features.std() < 100


def test_the_random_weights_are_seeded(weights_file, tmp_path):
    first = backbone_weights.read_legacy_file(weights_file)
    again = backbone_weights.read_legacy_file(backbone_weights.write_random_weights(tmp_path / "a.h5", seed=3))
    assert all(np.array_equal(x, y) for name in first for x, y in zip(first[name], again[name]))
    other = backbone_weights.random_backbone(seed=4)
    assert not np.array_equal(first["conv1_conv"][0], other.get_layer("conv1_conv").kernel.numpy())


def _edited_copy(weights_file, path):
    shutil.copy(weights_file, path)
    return h5py.File(path, "a")


def test_a_file_for_grey_scale_images_is_refused_naming_the_layer_and_the_shapes(weights_file, tmp_path):
    """The ImageNet file's layout for one input channel (conv1's kernel 7 x 7 x 1 x 64), through build_model."""
    path = tmp_path / "resnet50_grey_notop.h5"
    with _edited_copy(weights_file, path) as f:
        group = f["conv1_conv"]["conv1_conv"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", data=np.zeros((7, 7, 1, 64), "float32"))
    _refused_by_build(path, "could not load it as ResNet50 no-top weights", "'conv1_conv'", "(7, 7, 1, 64)",
                      "(7, 7, 3, 64)", backbone_weights.OFFICIAL_FILE, "--set weights=none")


def test_a_file_with_the_classifier_top_is_refused(backbone, weights_file, tmp_path):
    path = tmp_path / "resnet50_with_top.h5"
    with _edited_copy(weights_file, path) as f:
        f.attrs["layer_names"] = np.asarray(list(f.attrs["layer_names"]) + [b"avg_pool", b"predictions"])
        for name, names in (("avg_pool", []), ("predictions", [b"predictions/kernel:0", b"predictions/bias:0"])):
            group = f.create_group(name)
            group.attrs["weight_names"] = np.asarray(names, dtype="S")
        f["predictions"].create_dataset("predictions/kernel:0", data=np.zeros((2048, 1000), "float32"))
        f["predictions"].create_dataset("predictions/bias:0", data=np.zeros(1000, "float32"))
    _refused(backbone, path, "107 layers", "classifier top", "106")


def test_a_file_of_another_network_is_refused(backbone, tmp_path):
    inputs = keras.Input((32, 32, 3))
    small = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    path = backbone_weights.write_legacy_file(small, tmp_path / "small.h5")
    _refused(backbone, path, "1 layers", "106 layers with weights", backbone_weights.OFFICIAL_FILE)


def test_a_file_whose_arrays_are_misplaced_is_refused(backbone, weights_file, tmp_path):
    """Same layer count, but one layer's arrays swapped for another's: the position and the shapes are named."""
    path = tmp_path / "swapped.h5"
    with _edited_copy(weights_file, path) as f:
        names = list(f.attrs["layer_names"])
        i, j = names.index(b"conv2_block1_1_conv"), names.index(b"conv5_block3_3_conv")
        names[i], names[j] = names[j], names[i]
        f.attrs["layer_names"] = np.asarray(names)
    message = _refused(backbone, path, "'conv5_block3_3_conv'", "'conv2_block1_1_conv'", "(1, 1, 64, 64)")
    assert re.search(r"layer \d+ with weights", message)


def test_a_truncated_file_is_refused_naming_it(backbone, weights_file, tmp_path):
    path = tmp_path / "truncated.h5"
    path.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
    _refused(backbone, path, "truncated or damaged")


def test_a_missing_file_is_refused_naming_it(tmp_path):
    _refused_by_build(tmp_path / "resnet50_notop.h5", "no such file", "--set weights=PATH")


@pytest.mark.parametrize("name", ["resnet50_notop.h5", "resnet50_notop.weights.h5"])
def test_a_file_that_is_not_hdf5_is_refused_naming_it(backbone, tmp_path, name):
    path = tmp_path / name
    path.write_text("<html>a login page saved instead of the weights</html>\n")
    _refused(backbone, path, "not an HDF5 file", backbone_weights.OFFICIAL_FILE)


def test_an_empty_file_is_refused_naming_it(backbone, tmp_path):
    path = tmp_path / "resnet50_notop.h5"
    path.write_bytes(b"")
    _refused(backbone, path, "empty file")


def test_a_file_of_another_format_is_refused_naming_it(backbone, weights_file, tmp_path):
    path = tmp_path / "resnet50_notop.bin"
    shutil.copy(weights_file, path)
    _refused(backbone, path, "'resnet50_notop.bin'", ".h5", ".weights.h5")


def test_the_start_up_check_refuses_a_bad_file_before_a_run(tmp_path):
    """``check_weights`` (run before any chapter) refuses the file as building a model would."""
    path = tmp_path / "resnet50_notop.h5"
    path.write_text("not hdf5")
    with pytest.raises(ParameterError, match=re.escape(f"weights={path}") + ".*not an HDF5 file"):
        networks.check_weights(str(path))


def test_a_keras3_weights_file_of_another_network_is_refused(backbone, tmp_path):
    """Keras 3's own format is matched by Keras' loader, which refuses a mismatch; the error names the file."""
    inputs = keras.Input((32, 32, 1))
    path = tmp_path / "small.weights.h5"
    keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs)).save_weights(path)
    _refused(backbone, path, "could not load it as ResNet50 no-top weights", backbone_weights.OFFICIAL_FILE)
