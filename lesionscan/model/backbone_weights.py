"""ResNet50 no-top weights files: the one loader of ``weights=PATH``, its checks, and a random file for dry runs.

Keras' ImageNet file, ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``,
is a *legacy* Keras HDF5 weights file: a root attribute ``layer_names``
listing every layer of the network in model order, and per layer a group
named after it whose attribute ``weight_names`` lists its arrays
(``conv1_conv/kernel:0``, ``conv1_conv/bias:0``; batch norm: ``gamma``,
``beta``, ``moving_mean``, ``moving_variance``), each a dataset at that path
inside the group. ``keras.applications.ResNet50(weights=PATH)`` builds the
network and calls ``model.load_weights(PATH)``; for a ``.h5`` file Keras 3
then loads *by position*: the n-th layer of the file that has weights goes
into the n-th layer of the model that has weights (names are not compared),
each array checked only for its shape. :func:`load` does the same, after
:func:`check_legacy_file` has compared the file's layers with the
backbone's one by one, so a file of another network, of grey-scale input,
with the classifier top, truncated or not HDF5 at all is refused naming the
file and what was expected instead of a raw Keras or h5py error.

Keras 3's own format (``.weights.h5``, what ``model.save_weights`` writes;
and a whole ``.keras`` model) is loaded by Keras' loader, which matches
its variables by object path and refuses mismatches itself.

:func:`write_random_weights` writes a file in the ImageNet file's layout with
seeded random values, so the two-phase protocol of pretrained weights can be
run and checked offline; :func:`read_legacy_file` reads such a file back.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import keras
import numpy as np

from lesionscan.core.errors import ParameterError

OFFICIAL_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
LEGACY_SUFFIXES = (".h5", ".hdf5")  # the ImageNet file's format, loaded by position
KERAS3_SUFFIXES = (".weights.h5", ".keras")  # Keras 3's formats, loaded by Keras' own matching
_PROBE_SIZE = 64  # px of the random images that set a random file's batch-norm statistics


def _weighted_layers(model: keras.Model) -> list:
    """The model's layers that hold weights, in model order (what a legacy file is loaded into, by position)."""
    return [layer for layer in model.layers if _legacy_weights(layer)]


def _legacy_weights(layer) -> list:
    """A layer's variables in the order a legacy h5 file stores them: trainable first (Keras' ``_legacy_weights``)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _expected(backbone: keras.Model) -> str:
    layers = _weighted_layers(backbone)
    first = layers[0]
    return (f"ResNet50 no-top weights for RGB images in the layout of {OFFICIAL_FILE}: {len(layers)} layers with "
            f"weights, the first {first.name} with a kernel of shape {tuple(first.kernel.shape)}")


def _decode(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _names(group, attribute: str) -> list[str] | None:
    """A list attribute of a legacy file (Keras splits a long one into ``name0``, ``name1``...); None if absent."""
    if attribute in group.attrs:
        return _decode(group.attrs[attribute])
    if f"{attribute}0" not in group.attrs:
        return None
    out, chunk = [], 0
    while f"{attribute}{chunk}" in group.attrs:
        out += _decode(group.attrs[f"{attribute}{chunk}"])
        chunk += 1
    return out


def _file_layers(root) -> list[tuple[str, list[tuple[str, tuple]]]]:
    """(layer name, [(weight name, shape)...]) of each layer of a legacy file that has weights, in file order."""
    if _names(root, "layer_names") is None and "model_weights" in root:  # a whole model saved as .h5
        root = root["model_weights"]
    layer_names = _names(root, "layer_names")
    if layer_names is None:
        raise ValueError("it has no 'layer_names' attribute, so it is not a Keras weights file")
    layers = []
    for name in layer_names:
        if name not in root:
            raise ValueError(f"it lists a layer {name!r} but has no group for it (damaged?)")
        group = root[name]
        weight_names = _names(group, "weight_names") or []
        shapes = []
        for weight in weight_names:
            if weight not in group or not isinstance(group[weight], h5py.Dataset):
                raise ValueError(f"layer {name!r} lists an array {weight!r} it does not hold (damaged?)")
            shapes.append((weight, tuple(group[weight].shape)))
        if shapes:
            layers.append((name, shapes))
    return layers


def check_legacy_file(path: Path, backbone: keras.Model, label: str) -> None:
    """Refuse ``path`` unless it is a legacy Keras h5 weights file whose layers fit ``backbone``'s, by position.

    ``label`` names the setting in the error (``weights=PATH``). Reads the
    file's structure only (names and shapes), not its values.
    """
    expected = _expected(backbone)

    def refuse(why: str) -> ParameterError:
        return ParameterError(f"{label}: could not load it as ResNet50 no-top weights: {why}; expected {expected}")

    if not h5py.is_hdf5(path):
        size = path.stat().st_size
        raise refuse("an empty file (0 bytes)" if size == 0 else "not an HDF5 file (no HDF5 signature)")
    try:
        with h5py.File(path, "r") as handle:
            found = _file_layers(handle)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    except Exception as exc:  # OSError from h5py: a truncated or damaged file
        raise refuse(f"an unreadable HDF5 file, truncated or damaged ({_brief(exc)})") from None
    wanted = _weighted_layers(backbone)
    if len(found) != len(wanted):
        top = " (with a classifier top: use the no-top file)" if len(found) > len(wanted) and any(
            name in ("predictions", "probs", "fc1000") for name, _ in found[len(wanted):]) else ""
        raise refuse(f"it holds weights for {len(found)} layers{top}, ResNet50 without its top has {len(wanted)}")
    for position, ((name, arrays), layer) in enumerate(zip(found, wanted), start=1):
        variables = _legacy_weights(layer)
        if len(arrays) != len(variables):
            raise refuse(f"its layer {position} with weights ({name!r}) holds {len(arrays)} arrays, ResNet50's "
                         f"layer {position} ({layer.name!r}) has {len(variables)}")
        for (weight, shape), variable in zip(arrays, variables):
            if tuple(shape) != tuple(variable.shape):
                raise refuse(f"its layer {position} with weights ({name!r}) holds {weight!r} of shape {shape}, "
                             f"ResNet50's layer {position} ({layer.name!r}) needs {variable.name} of shape "
                             f"{tuple(variable.shape)}")


def load(backbone: keras.Model, path: Path, label: str, hint: str = "") -> None:
    """Load the weights file ``path`` into ``backbone`` (a ResNet50 no-top), as ``ResNet50(weights=PATH)`` does.

    A legacy ``.h5``/``.hdf5`` file is checked first (:func:`check_legacy_file`);
    a ``.weights.h5`` or ``.keras`` file is left to Keras' loader; any other
    suffix is refused (Keras reads no other file). Every refusal is a
    :class:`ParameterError` naming ``label`` (``weights=PATH``), followed by ``hint``.
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    name = path.name.lower()
    try:
        if name.endswith(KERAS3_SUFFIXES):
            if not h5py.is_hdf5(path) and not name.endswith(".keras"):
                raise ParameterError(f"{label}: could not load it as ResNet50 no-top weights: not an HDF5 file "
                                     f"(no HDF5 signature); expected {_expected(backbone)}")
        elif name.endswith(LEGACY_SUFFIXES):
            check_legacy_file(path, backbone, label)
        else:
            raise ParameterError(f"{label}: could not load it as ResNet50 no-top weights: a file named "
                                 f"{path.name!r}, and Keras reads weights only from {', '.join(LEGACY_SUFFIXES)} "
                                 f"(as {OFFICIAL_FILE}), {KERAS3_SUFFIXES[0]} or {KERAS3_SUFFIXES[1]} files; "
                                 f"expected {_expected(backbone)}")
    except ParameterError as exc:
        raise ParameterError(f"{exc}{tail}") from None
    try:
        with warnings.catch_warnings():  # Keras warns once per layer it skips before it refuses a .weights.h5
            warnings.simplefilter("ignore")
            backbone.load_weights(str(path))
    except Exception as exc:
        raise ParameterError(f"{label}: could not load it as ResNet50 no-top weights ({_brief(exc)}); expected "
                             f"{_expected(backbone)}{tail}") from exc


def read_legacy_file(path) -> dict[str, list[np.ndarray]]:
    """The arrays of a legacy h5 weights file by layer name, each layer's in the file's order (layers with weights)."""
    with h5py.File(path, "r") as handle:
        root = handle["model_weights"] if _names(handle, "layer_names") is None and "model_weights" in handle \
            else handle
        return {name: [np.asarray(root[name][weight]) for weight, _ in arrays] for name, arrays in _file_layers(root)}


def _randomise(model: keras.Model, rng: np.random.Generator) -> None:
    """Seeded random values for every weight: He-normal kernels, small biases, batch norm's scale near 1."""
    for layer in _weighted_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, channels).astype("float32"))
        else:
            for variable in _legacy_weights(layer):
                shape = tuple(variable.shape)
                if len(shape) > 1:  # a kernel: He-normal by its fan-in
                    scale = np.sqrt(2.0 / np.prod(shape[:-1]))
                    variable.assign(rng.normal(0.0, scale, shape).astype("float32"))
                else:
                    variable.assign(rng.normal(0.0, 0.05, shape).astype("float32"))


def _probe_images(rng: np.random.Generator, n: int = 8) -> np.ndarray:
    """Random smooth colour images as ResNet50 sees them (caffe preprocessing: BGR, channel means subtracted).

    Photographs vary slowly across the image; white noise does not, and a
    network calibrated on it sees far larger activations on real images.
    """
    coarse = rng.uniform(0.0, 255.0, (n, 4, 4, 3)).astype("float32")
    smooth = keras.ops.convert_to_numpy(keras.ops.image.resize(coarse, (_PROBE_SIZE, _PROBE_SIZE),
                                                               interpolation="bicubic"))
    grain = rng.normal(0.0, 8.0, smooth.shape).astype("float32")
    return keras.applications.resnet.preprocess_input(np.clip(smooth + grain, 0, 255))


def _calibrate_batch_norm(model: keras.Model, rng: np.random.Generator) -> None:
    """Set every batch norm's moving statistics to those of its input on random images, all in one pass.

    In training mode each batch norm normalises by its batch's statistics; taking
    those statistics as the moving ones makes inference mode give the same
    activations on that batch. So a random network's activations stay of order
    one through all 16 blocks, as a trained network's do, instead of growing
    block by block: the features, losses and maps of a dry run stay finite.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for layer in norms])
    images = _probe_images(rng)
    for layer, activations in zip(norms, probe(images, training=True)):
        values = keras.ops.convert_to_numpy(activations).astype("float64")
        layer.moving_mean.assign(values.mean(axis=(0, 1, 2)).astype("float32"))
        layer.moving_variance.assign(values.var(axis=(0, 1, 2)).astype("float32"))


def random_backbone(seed: int = 0) -> keras.Model:
    """A ResNet50 no-top (any input size, RGB) with seeded random weights and batch-norm statistics that fit them."""
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(int(seed))
    _randomise(model, rng)
    _calibrate_batch_norm(model, rng)
    return model


def write_legacy_file(model: keras.Model, path) -> Path:
    """Write ``model``'s weights as a legacy Keras h5 weights file, the layout of Keras' ImageNet no-top file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as handle:
        # Fixed-length byte strings, as Keras writes them (np.asarray of bytes), not h5py's variable-length str.
        handle.attrs["layer_names"] = np.asarray([layer.name.encode("utf8") for layer in model.layers])
        handle.attrs["backend"] = keras.backend.backend().encode("utf8")
        handle.attrs["keras_version"] = keras.__version__.encode("utf8")
        for layer in model.layers:
            group = handle.create_group(layer.name)
            variables = _legacy_weights(layer)
            names = [f"{layer.name}/{variable.name}:0" for variable in variables]
            group.attrs["weight_names"] = np.asarray([name.encode("utf8") for name in names], dtype="S")
            for name, variable in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(variable))
    tmp.replace(path)
    return path


def write_random_weights(path, seed: int = 0) -> Path:
    """Write a ResNet50 no-top weights file with seeded random values, in the ImageNet file's layout; return its path.

    ``--set weights=PATH`` loads it as it would the ImageNet file (same
    layer names, array names, shapes and order), so a study with pretrained
    weights (two-phase training) runs offline. The same seed writes the same
    values. Kernels are He-normal, biases small, batch norm's scale and shift
    random near 1 and 0, and its moving statistics those of the random
    network's own activations on random images (:func:`_calibrate_batch_norm`).
    """
    return write_legacy_file(random_backbone(seed), path)
