"""Loading a saved LesionScan model: the one loader, for the study's own chapters and for untrusted files.

A ``.keras`` file is checked before Keras deserialises anything (a zip with a
config under 16 MB describing a functional model of one of our kinds), loaded
with Keras' ``safe_mode`` (no Python lambdas) and our registered layers, and
then checked for the shape of a LesionScan classifier. Saving is Keras' own
(``model.save``), through an atomic rename.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError
from lesionscan.model.layers import ATTENTION_LAYER, BACKBONE_OUTPUT, CUSTOM_OBJECTS
from lesionscan.model.networks import KINDS, attention_layers

# A ResNet50 config.json is about 0.2 MB; a larger one is not ours (and may be a zip bomb).
_MAX_CONFIG_BYTES = 16_000_000


def check_archive(path: Path) -> None:
    """Cheap checks on the file, before Keras reads it: a .keras zip whose config is a functional model of ours."""
    expected = f"expected a .keras file saved by LesionScan (a model named one of {', '.join(KINDS)})"
    if not path.exists():
        raise ParameterError(f"model file {path}: no such file")
    if not path.is_file():
        raise ParameterError(f"model file {path}: not a file")
    if path.suffix != ".keras":
        raise ParameterError(f"model file {path}: not a .keras file; {expected}")
    if not zipfile.is_zipfile(path):
        raise ParameterError(f"model file {path}: not a Keras archive (not a zip file); {expected}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ParameterError(f"model file {path}: not a Keras archive (no config.json and "
                                     f"model.weights.h5 inside); {expected}")
            if archive.getinfo("config.json").file_size > _MAX_CONFIG_BYTES:
                raise ParameterError(f"model file {path}: its config.json is implausibly large; {expected}")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ParameterError(f"model file {path}: not a readable Keras archive ({exc}); {expected}") from exc
    inner = config.get("config") if isinstance(config, dict) else None
    name = inner.get("name") if isinstance(inner, dict) else None
    if not isinstance(config, dict) or config.get("class_name") != "Functional" or name not in KINDS:
        raise ParameterError(f"model file {path}: a Keras model named {name!r}, not a LesionScan model; {expected}")


def input_size(model) -> int:
    """The model's square input size in pixels (from its input shape)."""
    return int(model.inputs[0].shape[1])


def load_model(path) -> keras.Model:
    """Load a LesionScan model saved as ``.keras``; anything else is a :class:`ParameterError` naming the file.

    Checked, in this order:

    1. the file exists, is a regular file and ends in ``.keras``;
    2. it is a zip archive holding ``config.json`` and ``model.weights.h5``
       (the Keras 3 format), and the config (under 16 MB) describes a
       functional model whose name is one of :data:`lesionscan.model.networks.KINDS`
       (read before Keras deserialises anything);
    3. Keras loads it with ``safe_mode=True`` and our custom layers;
    4. the loaded model is named one of the KINDS, has one input of shape
       (None, S, S, 3) with S >= 32, and one output of shape
       (None, len(CLASSES)) = (None, 7);
    5. its output layer ``predictions`` has a softmax activation;
    6. the baseline has no attention layer, every other kind at least one;
    7. it has the layer Grad-CAM explains (``soft_attention`` or
       ``conv5_block3_out``, see :func:`lesionscan.explain.gradcam.default_layer`).
    """
    path = Path(path)
    check_archive(path)
    try:
        model = keras.models.load_model(path, custom_objects=dict(CUSTOM_OBJECTS), compile=False,
                                        safe_mode=True)
    except Exception as exc:
        raise ParameterError(f"model file {path}: could not load it as a Keras model ({type(exc).__name__}: "
                             f"{exc})") from exc

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
    names = {layer.name for layer in model.layers}
    if not names & {ATTENTION_LAYER, BACKBONE_OUTPUT}:
        raise reject(f"neither a {ATTENTION_LAYER!r} nor a {BACKBONE_OUTPUT!r} layer for Grad-CAM to explain")
    return model
