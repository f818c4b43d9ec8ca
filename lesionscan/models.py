"""The two models of the study: ResNet50 (baseline) and ResNet50 + soft attention.

Both share one backbone, ``keras.applications.ResNet50`` built on our own
input tensor, so its layers sit flat in the model (Grad-CAM can target
``conv5_block3_out`` by name, and the two-phase schedule can freeze layers by
position). The soft-attention model inserts :class:`SoftAttention` between the
last convolutional block and global average pooling, as in the report.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np
from keras import ops

from lesionscan.errors import ParameterError

KINDS = ("baseline", "soft_attention")
ATTENTION_LAYER = "soft_attention"
# Single-output pass-through of the attended features: tools that need one
# tensor per layer (tf-keras-vis Grad-CAM) target this name.
ATTENDED_FEATURES_LAYER = "attended_features"
BACKBONE_OUTPUT = "conv5_block3_out"


@keras.saving.register_keras_serializable(package="lesionscan")
class SoftAttention(keras.layers.Layer):
    """Soft attention of Datta et al. 2021 (eq. 1), implemented as the equation reads.

    For features ``t`` of shape (B, H, W, C): ``K`` score maps come from a 3-D
    convolution whose kernel spans the full channel depth, which is exactly a
    3x3 ``same`` 2-D convolution from C channels to K maps. Each map is
    softmax-normalised over the H x W positions, the K maps are summed, scaled
    by a learnable scalar ``gamma`` and multiplied into ``t``::

        attended = gamma * t * sum_k softmax_hw(W_k * t)

    ``call`` returns ``[attended, maps]``: ``attended`` has the shape of ``t``;
    ``maps`` is (B, H, W, K), one probability distribution over positions per
    head (each head sums to 1 over H x W). Sum over the last axis for the map
    that actually multiplies the features (see :func:`attention_maps`).

    The authors' public Keras layer differs (no gamma, a kernel covering only
    three channels); this layer follows the equation.
    """

    def __init__(self, heads: int = 16, gamma_init: float = 1.0, kernel_size: int = 3,
                 kernel_initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("name", ATTENTION_LAYER)
        super().__init__(**kwargs)
        if int(heads) < 1:
            raise ParameterError(f"attention_heads={heads}: expected a positive integer")
        self.heads = int(heads)
        self.gamma_init = float(gamma_init)
        self.kernel_size = int(kernel_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        """Create the score-map kernel (k x k x C x K), its bias and gamma."""
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, channels, self.heads),
            initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.heads,), initializer="zeros")
        self.gamma = self.add_weight(
            name="gamma", shape=(), initializer=keras.initializers.Constant(self.gamma_init))

    def call(self, inputs):
        """Return ``[gamma * t * sum of head maps, per-head maps (B, H, W, K)]``."""
        scores = ops.conv(inputs, self.kernel, strides=1, padding="same") + self.bias
        shape = ops.shape(scores)
        flat = ops.reshape(scores, (shape[0], shape[1] * shape[2], self.heads))
        with warnings.catch_warnings():  # a 1x1 feature map (32 px input) is legal: one position, map = 1
            warnings.filterwarnings("ignore", message="You are using a softmax over axis")
            maps = ops.reshape(ops.softmax(flat, axis=1), shape)
        summed = ops.sum(maps, axis=-1, keepdims=True)
        attended = self.gamma * inputs * summed
        return [attended, maps]

    def compute_output_shape(self, input_shape):
        """Shapes of ``[attended, maps]``."""
        return [tuple(input_shape), tuple(input_shape[:-1]) + (self.heads,)]

    def get_config(self):
        """Everything needed to rebuild the layer from a saved model."""
        config = super().get_config()
        config.update(heads=self.heads, gamma_init=self.gamma_init, kernel_size=self.kernel_size,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def _backbone(inputs, weights: str):
    """ResNet50 without top on ``inputs``; ``weights`` "none", "imagenet" or a file path."""
    if weights is None or str(weights).lower() == "none":
        return keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    hint = ("pass `--set weights=PATH` (a ResNet50 no-top weights file, e.g. "
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) or `--set weights=none` "
            "(random initialisation)")
    if str(weights).lower() == "imagenet":
        try:
            return keras.applications.ResNet50(include_top=False, weights="imagenet", input_tensor=inputs)
        except Exception as exc:  # offline, proxy, corrupt cache: all user-fixable
            raise ParameterError(f"weights=imagenet: could not download the ResNet50 ImageNet weights "
                                 f"({exc}); {hint}") from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ParameterError(f"weights={weights}: no such file; {hint}")
    try:
        return keras.applications.ResNet50(include_top=False, weights=str(path), input_tensor=inputs)
    except Exception as exc:
        raise ParameterError(f"weights={weights}: could not load it as ResNet50 no-top weights ({exc}); "
                             f"{hint}") from None


def check_weights(weights: str) -> None:
    """Fail before a long run starts when the backbone's weights cannot be had.

    Building the backbone once fetches ImageNet weights into Keras' cache (or
    loads the file), so the chapters later find them; offline, the user
    learns it in seconds rather than after the data chapters have run.
    """
    if str(weights).lower() != "none":
        _backbone(keras.Input(shape=(64, 64, 3)), weights)


def build_model(kind: str, image_size: int = 224, n_classes: int = 7, weights: str = "none",
                dropout: float = 0.5, l2: float = 1e-4, attention_heads: int = 16,
                gamma_init: float = 1.0, bn_momentum: float | None = None) -> keras.Model:
    """Build the baseline or soft-attention model; the model's name is ``kind``.

    ``bn_momentum`` replaces the backbone's batch-normalisation momentum
    (Keras: 0.99). A network trained from scratch for a few hundred steps
    needs a lower one (0.9): with 0.99 the moving statistics still lag far
    behind the weights at the end of training, and the model scores well in
    training mode but near chance in inference mode.

    baseline: ResNet50 -> GAP -> Dropout -> Dense softmax (L2).
    soft_attention: ResNet50 -> SoftAttention -> GAP -> Dropout -> Dense softmax (L2).
    Inputs are ResNet50-preprocessed images (see ``pipeline.preprocess``).
    """
    if kind not in KINDS:
        raise ParameterError(f"model kind {kind!r}: expected one of {', '.join(KINDS)}")
    if int(image_size) < 32:
        raise ParameterError(f"image_size={image_size}: expected at least 32 (ResNet50 downsamples by 32)")
    inputs = keras.Input(shape=(int(image_size), int(image_size), 3), name="image")
    backbone = _backbone(inputs, weights)
    if bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    x = backbone.output
    if kind == "soft_attention":
        x, _ = SoftAttention(heads=attention_heads, gamma_init=gamma_init, name=ATTENTION_LAYER)(x)
        x = keras.layers.Identity(name=ATTENDED_FEATURES_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    return keras.Model(inputs, outputs, name=kind)


def backbone_layers(model: keras.Model) -> list:
    """The ResNet50 layers of ``model`` in order (input layer excluded).

    Found by position: everything after the input up to ``conv5_block3_out``,
    so it works the same on a freshly built and on a reloaded model.
    """
    names = [layer.name for layer in model.layers]
    if BACKBONE_OUTPUT not in names:
        raise ParameterError(f"model {model.name!r} has no layer {BACKBONE_OUTPUT!r}: not a LesionScan model")
    end = names.index(BACKBONE_OUTPUT)
    return [layer for layer in model.layers[: end + 1] if not isinstance(layer, keras.layers.InputLayer)]


def attention_maps(model: keras.Model, images_preprocessed, upsample_to=None,
                   batch_size: int = 32) -> np.ndarray:
    """Summed soft-attention maps (N, h, w) of ``model`` for preprocessed images.

    The sum over heads is the map that multiplies the features (before gamma).
    With ``upsample_to=(H, W)`` the maps are resized bilinearly to image size.
    Works on a reloaded model: the maps are read from the layer's second output.
    """
    try:
        layer = model.get_layer(ATTENTION_LAYER)
    except ValueError:
        raise ParameterError(f"model {model.name!r} has no soft-attention layer; "
                             "attention maps exist only for the soft_attention model") from None
    probe = keras.Model(model.inputs, layer.output[1])
    maps = probe.predict(np.asarray(images_preprocessed, dtype="float32"), batch_size=batch_size, verbose=0)
    summed = maps.sum(axis=-1)
    if upsample_to is not None:
        height, width = (int(v) for v in upsample_to)
        summed = np.asarray(ops.image.resize(summed[..., None], (height, width), interpolation="bilinear"))[..., 0]
    return summed.astype("float32")


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a saved LesionScan model (.keras); anything else is a ParameterError."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"model file {path}: no such file")
    try:
        model = keras.models.load_model(path, custom_objects={"SoftAttention": SoftAttention}, compile=compile)
    except Exception as exc:
        raise ParameterError(f"model file {path}: could not load it as a Keras model ({exc})") from None
    if model.name not in KINDS:
        raise ParameterError(f"model file {path}: model {model.name!r} is not a LesionScan model "
                             f"(expected one of {', '.join(KINDS)})")
    return model
