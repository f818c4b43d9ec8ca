"""Untrusted model files: every malformed or hostile .keras file is one line, exit 2, naming the file, before
Keras builds anything it should not (lesionscan.model.saving). The archives are built here with zipfile from a
tiny functional model that passes every check, so no ResNet50 is needed except for the one test of every kind."""

import json
import os
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from lesionscan import cli
from lesionscan.core.errors import ParameterError
from lesionscan.model import saving

SIZE = 32


def small_model(name="baseline", classes=7, channels=3, size=SIZE, dense_feature=False, feature="conv5_block3_out"):
    """A few-kilobyte functional model with the names and shape of ours (a baseline unless told otherwise)."""
    import keras

    inputs = keras.Input((size, size, channels), name="image")
    if dense_feature:  # the layer Grad-CAM explains, but it outputs a vector, not a feature map
        x = keras.layers.GlobalAveragePooling2D(name="gap")(inputs)
        x = keras.layers.Dense(4, name=feature)(x)
    else:
        x = keras.layers.Conv2D(4, 3, name=feature)(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small model that loads: the members every other archive here is made from."""
    path = tmp_path_factory.mktemp("good") / "good.keras"
    small_model().save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return path, members


def archive(path, members):
    """Write a zip of {name: bytes or str} (strings as UTF-8); return its path."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data.encode() if isinstance(data, str) else data)
    return path


def with_config(good, path, edit):
    """``good``'s archive with its config.json replaced by ``edit(config)`` (a dict, or text to store as is)."""
    _, members = good
    config = edit(json.loads(members["config.json"]))
    return archive(path, dict(members, **{"config.json": config if isinstance(config, str) else json.dumps(config)}))


def predict_cli(capsys, model, image, *extra):
    code = cli.main(["predict", "--model", str(model), str(image), *map(str, extra)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "lesion.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def refused(capsys, model, image, *needles):
    """Run predict on ``model``: exit 2, one error line naming the file and each needle, nothing on stdout."""
    code, out, err = predict_cli(capsys, model, image, "--json")
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lesionscan: error: model file {model}:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not list(image.parent.glob("*.lesionscan.png"))
    return lines[0]


def test_the_small_model_passes_every_check(good):
    model = saving.load_model(good[0])
    assert model.name == "baseline" and saving.input_size(model) == SIZE


def test_a_zip_that_is_not_a_keras_archive_names_what_is_missing(tmp_path, capsys, image):
    path = archive(tmp_path / "notes.keras", {"readme.txt": "hello"})
    refused(capsys, path, image, "not a Keras archive", "config.json and model.weights.h5 missing")


def test_a_missing_weights_file_is_named(good, tmp_path, capsys, image):
    path = archive(tmp_path / "noweights.keras", {"config.json": good[1]["config.json"]})
    refused(capsys, path, image, "model.weights.h5 missing")


def test_a_truncated_file_says_so(good, tmp_path, capsys, image):
    data = good[0].read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    refused(capsys, path, image, "not a zip file; is it truncated or damaged?")


def test_an_empty_file_says_so(tmp_path, capsys, image):
    path = tmp_path / "zero.keras"
    path.write_bytes(b"")
    refused(capsys, path, image, "an empty file (0 bytes)")


def test_a_folder_and_a_link_loop_say_what_they_are(tmp_path, capsys, image):
    folder = tmp_path / "dir.keras"
    folder.mkdir()
    refused(capsys, folder, image, "not a file (a folder)")
    os.symlink(tmp_path / "b.keras", tmp_path / "a.keras")
    os.symlink(tmp_path / "a.keras", tmp_path / "b.keras")
    refused(capsys, tmp_path / "a.keras", image, "a symbolic link that does not resolve (broken, or a loop)")


def test_a_config_nested_a_hundred_thousand_levels_deep(good, tmp_path, capsys, image):
    path = with_config(good, tmp_path / "deep.keras", lambda c: '{"a":' * 100000 + "1" + "}" * 100000)
    refused(capsys, path, image, "config.json nests too deeply")


def test_a_config_nested_deeper_than_ours_but_within_json(good, tmp_path, capsys, image):
    def deepen(config):
        nested = {}
        for _ in range(200):
            nested = {"a": nested}
        config["config"]["layers"][0]["config"]["extra"] = nested
        return config
    refused(capsys, with_config(good, tmp_path / "deep.keras", deepen), image, "nests more than 64 levels deep")


@pytest.mark.parametrize("text, kind", [("[1, 2]", "an array"), ('"model"', "a string"), ("null", "null"),
                                        ("7", "a number")])
def test_a_config_that_is_not_an_object(good, tmp_path, capsys, image, text, kind):
    refused(capsys, with_config(good, tmp_path / "list.keras", lambda c: text), image,
            f"its config.json is {kind}, not an object")


@pytest.mark.parametrize("where", ["input", "predictions"])
def test_a_layer_whose_config_is_not_an_object(good, tmp_path, capsys, image, where):
    def break_layer(config):
        config["config"]["layers"][0 if where == "input" else -1]["config"] = [1, 2]
        return config
    refused(capsys, with_config(good, tmp_path / "layer.keras", break_layer), image, "not a LesionScan model")


def test_a_config_that_is_not_json(good, tmp_path, capsys, image):
    refused(capsys, with_config(good, tmp_path / "bad.keras", lambda c: "{not json"), image,
            "its config.json is not valid JSON")


def test_a_huge_config_is_refused_by_its_declared_size(good, tmp_path, capsys, image):
    path = with_config(good, tmp_path / "huge.keras", lambda c: " " * 17_000_000 + "{}")
    refused(capsys, path, image, "its config.json is implausibly large")


def _patch_member(path, name, local_field, central_field, value):
    """Overwrite one field (offset, struct format) of member ``name``'s local and central zip headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo(name).header_offset
    assert data[offset:offset + 4] == b"PK\x03\x04"
    central = next(i for i in range(len(data) - 4) if data[i:i + 4] == b"PK\x01\x02"
                   and data[i + 46:i + 46 + len(name)] == name.encode())
    for start, (at, fmt) in ((offset, local_field), (central, central_field)):
        data[start + at:start + at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


def test_a_zip_bomb_that_lies_about_its_size_is_stopped_at_the_declared_size(good, tmp_path, capsys, image):
    path = with_config(good, tmp_path / "bomb.keras", lambda c: " " * 17_000_000 + "{}")
    _patch_member(path, "config.json", (22, "<I"), (24, "<I"), 1000)  # the uncompressed size
    refused(capsys, path, image, "not a readable Keras archive", "BadZipFile")


def test_an_unsupported_compression_method(good, tmp_path, capsys, image):
    path = archive(tmp_path / "method.keras", good[1])
    _patch_member(path, "config.json", (8, "<H"), (10, "<H"), 99)  # the compression method
    refused(capsys, path, image, "not a readable Keras archive", "NotImplementedError")


@pytest.mark.parametrize("module, class_name", [
    ("os", "system"),
    ("builtins", "eval"),
    ("keras.utils", "get_file"),
    ("keras.config", "enable_unsafe_deserialization"),
    ("keras.layers", "TFSMLayer"),
    ("keras.layers", "Lambda"),
    ("keras.initializers", "deserialize"),
    ("lesionscan.model.layers", "Unknown"),
])
def test_a_config_naming_a_class_or_module_that_is_not_ours(good, tmp_path, capsys, image, module, class_name):
    def swap(config):
        layer = config["config"]["layers"][-1]  # the classifier
        layer["config"]["kernel_initializer"] = {"module": module, "class_name": class_name, "config": {},
                                                 "registered_name": None}
        return config
    refused(capsys, with_config(good, tmp_path / "foreign.keras", swap), image,
            f"it names {module}.{class_name}, which LesionScan models do not use")


def test_a_keras_class_under_a_registered_name_that_is_not_its_own(good, tmp_path, capsys, image):
    def rename(config):
        config["config"]["layers"][-1]["registered_name"] = "somepackage>Thing"  # Keras resolves this name first
        return config
    refused(capsys, with_config(good, tmp_path / "registered.keras", rename), image,
            "it names keras.layers.Dense registered as 'somepackage>Thing'")


def test_a_config_whose_top_is_not_a_functional_model(good, tmp_path, capsys, image):
    def sequential(config):
        config["module"] = "keras.src.models.sequential"
        return config
    refused(capsys, with_config(good, tmp_path / "seq.keras", sequential), image, "not a functional model")


def test_a_layer_far_wider_than_ours_is_refused_before_keras_allocates_it(good, tmp_path, capsys, image):
    def widen(config):
        config["config"]["layers"][1]["config"]["filters"] = 10 ** 9
        return config
    refused(capsys, with_config(good, tmp_path / "wide.keras", widen), image, "filters 1000000000")


@pytest.mark.parametrize("build, needle", [
    (dict(classes=5), "output shape (None, 5)"),
    (dict(channels=1), "input shape [None, 32, 32, 1]"),
    (dict(size=1024), "input shape [None, 1024, 1024, 3]"),
    (dict(dense_feature=True), "'conv5_block3_out' layer outputs shape (None, 4), not a feature map"),
    # what gradcam.default_layer would refuse (its "pass layer=NAME" advice): refused here, naming the file
    (dict(feature="features"), "neither a 'soft_attention' nor a 'conv5_block3_out' layer for Grad-CAM"),
])
def test_a_model_predict_cannot_use(tmp_path, capsys, image, build, needle):
    path = tmp_path / "odd.keras"
    small_model(**build).save(path)
    refused(capsys, path, image, "not a LesionScan model", needle)


def test_weights_of_another_model_give_one_line(good, tmp_path, capsys, image):
    other = tmp_path / "other.keras"
    small_model(classes=5).save(other)
    with zipfile.ZipFile(other) as zf:
        weights = zf.read("model.weights.h5")
    path = archive(tmp_path / "mixed.keras", dict(good[1], **{"model.weights.h5": weights}))
    refused(capsys, path, image, "could not load it as a Keras model")


def test_garbage_weights_give_one_line(good, tmp_path, capsys, image):
    path = archive(tmp_path / "garbage.keras", dict(good[1], **{"model.weights.h5": b"\x89HDF garbage" * 100}))
    refused(capsys, path, image, "could not load it as a Keras model")


def test_every_kind_we_build_passes_the_config_checks(tmp_path):
    """The allowed classes and shapes are those of our own models: a new layer in networks.py must be added."""
    import gc

    import keras

    from lesionscan.core.parameters import ModelSection
    from lesionscan.model import networks

    for kind in networks.KINDS:
        model = networks.build_model(kind, SIZE, ModelSection(weights="none"))
        config = json.dumps(keras.saving.serialize_keras_object(model))
        path = archive(tmp_path / f"{kind}.keras", {"config.json": config, "model.weights.h5": b""})
        saving.check_archive(path)  # raises on anything it does not accept
        del model
        gc.collect()


def test_the_api_raises_the_same_error(tmp_path):
    path = archive(tmp_path / "notes.keras", {"readme.txt": "hello"})
    with pytest.raises(ParameterError, match="config.json and model.weights.h5 missing"):
        saving.load_model(path)
