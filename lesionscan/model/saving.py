"""Loading a saved LesionScan model: the one loader, for the study's own chapters and for untrusted files.

A ``.keras`` file is checked before Keras deserialises anything (a zip with a
config under 16 MB describing a functional model of one of our kinds, built
only from the classes our models use, with the input and output of a
classifier), loaded with Keras' ``safe_mode`` (no Python lambdas) and our
registered layers, and then checked for the shape of a LesionScan classifier.
Saving is Keras' own (``model.save``), through an atomic rename.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import keras

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError
from lesionscan.model.layers import ATTENTION_LAYER, BACKBONE_OUTPUT, CUSTOM_OBJECTS
from lesionscan.model.networks import KINDS, attention_layers

# A ResNet50 config.json is about 0.2 MB; a larger one is not ours (and may be a zip bomb).
_MAX_CONFIG_BYTES = 16_000_000
# ResNet50's float32 weights are about 0.1 GB (0.3 GB with Adam's slots); the declared size bounds decompression.
_MAX_WEIGHTS_BYTES = 2_000_000_000
# Our configs nest 11 levels and hold about 200 layers; Keras deserialises them recursively.
_MAX_CONFIG_DEPTH = 64
_MAX_LAYERS = 2_000
# The study's image_size range (PipelineSection: 32 to 512 px); the input is square RGB.
_MIN_INPUT, _MAX_INPUT = 32, 512
# Layer widths above these are not ours; they bound what building one layer can allocate (ResNet50: 2048 filters).
_MAX_WIDTH = {"units": 4096, "filters": 4096, "heads": 256, "classes": 64, "kernel_size": 7}
# The classes our saved configs name, by module (see every kind's config, tests/unit/test_model_files.py).
# Initializers, regularizers and constraints are plain arithmetic: any class of those modules is accepted.
_KERAS_LAYERS = frozenset({"InputLayer", "Conv2D", "BatchNormalization", "Activation", "Add", "ZeroPadding2D",
                           "MaxPooling2D", "GlobalAveragePooling2D", "Dropout", "Dense", "Identity", "Concatenate"})
_ANY_CLASS = frozenset({"keras.initializers", "keras.regularizers", "keras.constraints"})
_OWN_MODULE = "lesionscan.model.layers"
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9]*\Z")  # a class, not a function such as get or deserialize


def _reject(path: Path, why: str) -> ParameterError:
    """The one error shape for a model file we refuse: the file, what is wrong, what we expected."""
    return ParameterError(f"model file {path}: {why}; expected a .keras file saved by `lesionscan study` "
                          f"(a model named one of {', '.join(KINDS)})")


def _brief(exc: BaseException) -> str:
    """An exception as one short line: Keras' messages can carry a whole config over many lines."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _check_file(path: Path) -> None:
    """The path names a regular ``.keras`` file (a broken link or a link loop is named as such)."""
    if not path.exists():
        raise _reject(path, "a symbolic link that does not resolve (broken, or a loop)" if path.is_symlink()
                      else "no such file")
    if not path.is_file():
        raise _reject(path, "not a file" + (" (a folder)" if path.is_dir() else ""))
    if path.suffix != ".keras":
        raise _reject(path, "not a .keras file")
    if path.stat().st_size == 0:
        raise _reject(path, "an empty file (0 bytes)")


def _read_config(path: Path) -> object:
    """The archive's parsed config.json, after checking its members and their declared sizes."""
    if not zipfile.is_zipfile(path):
        raise _reject(path, "not a Keras archive (not a zip file; is it truncated or damaged?)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
            if missing:
                raise _reject(path, f"not a Keras archive ({' and '.join(missing)} missing from the zip)")
            if archive.getinfo("config.json").file_size > _MAX_CONFIG_BYTES:
                raise _reject(path, f"its config.json is implausibly large (over {_MAX_CONFIG_BYTES:,} bytes)")
            if archive.getinfo("model.weights.h5").file_size > _MAX_WEIGHTS_BYTES:
                raise _reject(path, f"its model.weights.h5 is implausibly large (over {_MAX_WEIGHTS_BYTES:,} bytes)")
            raw = archive.read("config.json")  # reads at most the declared size, then checks the CRC
    except ParameterError:
        raise
    except Exception as exc:  # BadZipFile, bad CRC, encrypted member, unknown compression, I/O
        raise _reject(path, f"not a readable Keras archive ({_brief(exc)})") from exc
    try:
        return json.loads(raw)
    except RecursionError:
        raise _reject(path, "its config.json nests too deeply to be a model config") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
        raise _reject(path, f"its config.json is not valid JSON ({_brief(exc)})") from None


def _class_problem(obj: dict, top: bool) -> str | None:
    """Why a serialised object (a dict with "class_name") is not one a LesionScan model holds, or None."""
    module, name = obj.get("module"), obj.get("class_name")
    registered = obj.get("registered_name")
    if module != _OWN_MODULE and registered not in (None, name):  # Keras looks a registered name up first
        return f"it names {module}.{name} registered as {registered!r}, which LesionScan models do not use"
    if top:
        return None if (module, name) == ("keras.src.models.functional", "Functional") else \
            f"the model is {module}.{name}, not a functional model"
    if module is None and name == "__keras_tensor__":
        return None
    if module == "keras.layers" and name in _KERAS_LAYERS:
        return None
    if module == "keras" and name in ("DTypePolicy", "FloatDTypePolicy"):
        return None
    if module in _ANY_CLASS and isinstance(name, str) and _CLASS_NAME.match(name):
        return None
    if module == _OWN_MODULE and name in CUSTOM_OBJECTS and registered == f"lesionscan>{name}":
        return None
    return f"it names {module}.{name}, which LesionScan models do not use"


def _width_problem(key: str, value) -> str | None:
    """Why a layer's width or kernel size is larger than any of ours, or None."""
    values = value if isinstance(value, list) else [value]
    limit = _MAX_WIDTH[key]
    if all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= limit for v in values):
        return None
    return f"a layer with {key} {value!r}, expected positive integers up to {limit}"


def _walk_problems(config: dict) -> str | None:
    """Walk the whole config without recursion: its depth, every class it names, every layer width.

    ``compile_config`` is skipped: :func:`load_model` loads with ``compile=False``, so Keras never reads it.
    """
    stack = [(config, 1, True)]
    while stack:
        node, depth, top = stack.pop()
        if depth > _MAX_CONFIG_DEPTH:
            return f"its config.json nests more than {_MAX_CONFIG_DEPTH} levels deep"
        if isinstance(node, dict):
            if "class_name" in node:
                problem = _class_problem(node, top)
                if problem:
                    return problem
            for key, value in node.items():
                if key in _MAX_WIDTH and not isinstance(value, (dict, type(None))):
                    problem = _width_problem(key, value)
                    if problem:
                        return problem
                if key != "compile_config":
                    stack.append((value, depth + 1, False))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, False) for value in node)
    return None


def _settings(layer) -> dict:
    """A layer entry's "config" dict ({} when the entry or its config is not an object)."""
    settings = layer.get("config") if isinstance(layer, dict) else None
    return settings if isinstance(settings, dict) else {}


def _shape_problems(layers: list) -> str | None:
    """Why the config's layers are not a classifier of RGB squares into our classes (read before Keras builds it)."""
    if len(layers) > _MAX_LAYERS:
        return f"{len(layers):,} layers, more than any LesionScan model ({_MAX_LAYERS:,} at most)"
    inputs = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
    if len(inputs) != 1:
        return f"{len(inputs)} input layers, expected one"
    shape = _settings(inputs[0]).get("batch_shape")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[0] is None and shape[3] == 3
            and shape[1] == shape[2] and isinstance(shape[1], int) and _MIN_INPUT <= shape[1] <= _MAX_INPUT):
        return (f"input shape {shape}, expected [None, S, S, 3]: square RGB images of S = {_MIN_INPUT} to "
                f"{_MAX_INPUT} px")
    head = [layer for layer in layers if isinstance(layer, dict) and layer.get("name") == "predictions"]
    if len(head) != 1:
        return f"{len(head)} layers named 'predictions', expected one (the classifier)"
    units = _settings(head[0]).get("units")
    if head[0].get("class_name") == "Dense" and units != len(CLASSES):
        return (f"output shape (None, {units}) from its 'predictions' layer, expected (None, {len(CLASSES)}): "
                f"one probability per class ({', '.join(CLASSES)})")
    return None


def check_archive(path: Path) -> None:
    """Cheap checks on the file, before Keras reads it: a .keras zip whose config is a functional model of ours.

    A hostile file is refused here, naming it, before it can make Keras build
    a class that is not ours or recurse without end; the layer count, widths
    and input size bound (but do not fix) what building it may allocate.
    """
    path = Path(path)
    _check_file(path)
    config = _read_config(path)
    if not isinstance(config, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        raise _reject(path, f"its config.json is {kind.get(type(config), 'null')}, not an object")
    inner = config.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    if config.get("class_name") != "Functional" or name not in KINDS:
        raise _reject(path, f"a Keras model named {name!r}, not a LesionScan model")
    layers = inner.get("layers")
    if not isinstance(layers, list):
        raise _reject(path, "its config.json lists no layers")
    problem = _walk_problems(config) or _shape_problems(layers)
    if problem:
        raise _reject(path, f"not a LesionScan model ({problem})")


def input_size(model) -> int:
    """The model's square input size in pixels (from its input shape)."""
    return int(model.inputs[0].shape[1])


def _explained_layer_problem(model) -> str | None:
    """Why Grad-CAM could not explain the model: its layer is missing or outputs no feature map, or None."""
    names = {layer.name for layer in model.layers}
    name = next((n for n in (ATTENTION_LAYER, BACKBONE_OUTPUT) if n in names), None)
    if name is None:
        return f"neither a {ATTENTION_LAYER!r} nor a {BACKBONE_OUTPUT!r} layer for Grad-CAM to explain"
    output = model.get_layer(name).output
    output = output[0] if isinstance(output, (list, tuple)) else output
    if len(output.shape) != 4:
        return f"its {name!r} layer outputs shape {tuple(output.shape)}, not a feature map for Grad-CAM"
    return None


def load_model(path) -> keras.Model:
    """Load a LesionScan model saved as ``.keras``; anything else is a :class:`ParameterError` naming the file.

    Checked, in this order:

    1. the file exists, is a regular, non-empty file and ends in ``.keras``;
    2. it is a zip archive holding ``config.json`` and ``model.weights.h5``
       (the Keras 3 format), and the config (under 16 MB, at most 64 levels
       deep) describes a functional model whose name is one of
       :data:`lesionscan.model.networks.KINDS`, built only from the classes
       our models use, with one (None, S, S, 3) input and a 7-way
       ``predictions`` layer (read before Keras deserialises anything);
    3. Keras loads it with ``safe_mode=True`` and our custom layers;
    4. the loaded model is named one of the KINDS, has one input of shape
       (None, S, S, 3) with S >= 32, and one output of shape
       (None, len(CLASSES)) = (None, 7);
    5. its output layer ``predictions`` has a softmax activation;
    6. the baseline has no attention layer, every other kind at least one;
    7. it has the layer Grad-CAM explains (``soft_attention`` or
       ``conv5_block3_out``, see :func:`lesionscan.explain.gradcam.default_layer`),
       and that layer outputs a feature map.
    """
    path = Path(path)
    check_archive(path)
    try:
        model = keras.models.load_model(path, custom_objects=dict(CUSTOM_OBJECTS), compile=False,
                                        safe_mode=True)
    except Exception as exc:  # Keras' errors for a damaged archive, bad weights or a config it cannot build
        raise ParameterError(f"model file {path}: could not load it as a Keras model ({_brief(exc)})") from exc

    def reject(why: str):
        return ParameterError(f"model file {path}: not a LesionScan model ({why})")

    if model.name not in KINDS:
        raise reject(f"model name {model.name!r}, expected one of {', '.join(KINDS)}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise reject(f"{len(model.inputs)} inputs and {len(model.outputs)} outputs, expected one of each")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3 or int(shape[1]) < 32:
        raise reject(f"input shape {shape}, expected (None, S, S, 3) with S >= 32")
    out_shape = tuple(model.outputs[0].shape)
    if out_shape[1:] != (len(CLASSES),):
        raise reject(f"output shape {out_shape}, expected (None, {len(CLASSES)}): one probability per class "
                     f"({', '.join(CLASSES)})")
    try:
        activation = model.get_layer("predictions").activation
    except (ValueError, AttributeError):
        raise reject("no output layer 'predictions' with an activation") from None
    if getattr(activation, "__name__", None) != "softmax":
        raise reject(f"output activation {getattr(activation, '__name__', activation)!r}, expected softmax")
    attention = attention_layers(model)
    if (model.name == "baseline") == bool(attention):
        raise reject(f"a {model.name!r} model with attention layers {attention or 'none'}")
    problem = _explained_layer_problem(model)
    if problem:
        raise reject(problem)
    return model
