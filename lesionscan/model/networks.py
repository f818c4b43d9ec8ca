"""The models of the study: ResNet50 alone and with four kinds of attention.

Every kind shares one backbone, ``keras.applications.ResNet50`` built on our
own input tensor, so its layers sit flat in the model (Grad-CAM can target
``conv5_block3_out`` by name, and the two-phase schedule freezes and unfreezes
the layers :func:`backbone_layers` returns). :func:`build_model` builds each
kind from one set of named options; :data:`KINDS` lists them:

* ``baseline``: ResNet50 -> GAP -> dropout -> dense softmax (the report's).
* ``soft_attention``: :class:`SoftAttention` (Datta et al. 2021, eq. 1, as
  the equation reads) between the last block and the pooling (the report's).
* ``soft_attention_public``: the same model with :class:`SoftAttentionPublic`,
  the attention layer of Datta et al.'s public code (no gamma, a kernel that
  reads three channels); a variant the report does not use.
* ``multiscale``: multi-scale feature fusion. The report names it without
  defining it; we define it as soft attention on two backbone stages
  (``conv4_block6_out``, stride 16, and ``conv5_block3_out``, stride 32),
  each pooled, the two vectors concatenated before the classifier.
* ``class_attention``: class-specific attention refinement, also named but
  not defined by the report; we define it as one attention map per class
  (:class:`ClassAttention`), class c's logit computed from the features
  pooled under map c (:class:`ClassWiseDense`).
"""

from __future__ import annotations

import gc
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import ops

from lesionscan.core.errors import ParameterError

KINDS = ("baseline", "soft_attention", "soft_attention_public", "multiscale", "class_attention")
ATTENTION_LAYER = "soft_attention"
# multiscale: the attention on the stride-16 stage (the stride-32 one keeps ATTENTION_LAYER)
STAGE4_ATTENTION_LAYER = "soft_attention_stage4"
CLASS_ATTENTION_LAYER = "class_attention"
# Single-output pass-through of the attended features: tools that need one
# tensor per layer (tf-keras-vis Grad-CAM) target this name.
ATTENDED_FEATURES_LAYER = "attended_features"
BACKBONE_OUTPUT = "conv5_block3_out"
STAGE4_OUTPUT = "conv4_block6_out"
# Every layer keras.applications.ResNet50 creates is named conv1_*, pool1_* or
# conv2_* ... conv5_*; none of ours is. backbone_layers relies on this.
_BACKBONE_NAME = re.compile(r"^(conv[1-5]|pool1)_")


def _softmax_over_positions(scores):
    """(B, H, W, K) scores -> (B, H, W, K) maps, each head a distribution over the H x W positions."""
    shape = ops.shape(scores)
    flat = ops.reshape(scores, (shape[0], shape[1] * shape[2], shape[3]))
    with warnings.catch_warnings():  # a 1x1 feature map (32 px input) is legal: one position, map = 1
        warnings.filterwarnings("ignore", message="You are using a softmax over axis")
        return ops.reshape(ops.softmax(flat, axis=1), shape)


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
    three channels, a ReLU before the softmax); this layer follows the
    equation. :class:`SoftAttentionPublic` is the public layer.
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
        maps = _softmax_over_positions(scores)
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


@keras.saving.register_keras_serializable(package="lesionscan")
class SoftAttentionPublic(keras.layers.Layer):
    """The soft-attention layer of Datta et al.'s public code, re-implemented as it computes.

    Their Keras layer, used as ``SoftAttention(ch=C, m=K, aggregate=True,
    concat_with_x=False)`` (as copied in public repositories that credit
    skrantidatta/Attention-based-Skin-Cancer-Classification), adds a trailing axis to
    ``t`` (B, H, W, C) -> (B, H, W, C, 1) and applies a 3-D convolution with
    kernel (C, 3, 3, 1, K), strides (1, 1, C) and ``same`` padding, then a bias
    and a ReLU, a softmax over the H x W positions per head, and multiplies
    the sum of the K maps into ``t``. The kernel's comment calls its axes
    "DHWC", but a channels-last 3-D convolution slides the kernel's three
    axes over (H, W, C) of the expanded tensor, so:

    * the kernel's C-long axis runs along the image **height**: with ``same``
      padding every output row sees every input row, through a weight that
      depends on the row offset (a full-height, position-relative kernel);
    * its 3-long axes run along the width (3 columns) and the **channels**;
      with stride C along the channels and ``same`` padding there is one
      output position, which reads channels 0, 1 and 2 only. The other C - 3
      channels never influence the maps.

    Score map of head k at (i, j), with P = (C - 1) // 2 (TensorFlow's
    ``same`` padding before the first row)::

        s_k(i, j) = relu(b_k + sum_h sum_{dj=-1..1} sum_{c=0..2} W[P + h - i, dj + 1, c, 0, k] t(h, j + dj, c))
        a_k = softmax_hw(s_k)
        attended = t * sum_k a_k

    Differences from the equation ``gamma * t * sum_k softmax_hw(W_k * t)``
    (:class:`SoftAttention`): no learnable gamma (the scale is fixed at 1);
    the score maps read three of the C channels, not all of them; the
    kernel's long axis spans the height, not the channels; a ReLU precedes the
    softmax (a head whose scores are all negative becomes a uniform map).
    The kernel has the same number of weights as the equation's 3 x 3 x C x K,
    and He-uniform initialisation as in their code. Their InceptionResNetV2
    model also max-pooled ``t`` and the attended features (2 x 2),
    concatenated them and applied a ReLU before the classifier; the
    ``soft_attention_public`` model does not, so that it differs from the
    ``soft_attention`` model in the attention layer only.

    "Same" padding follows TensorFlow's documented rule (pad_total =
    max((out - 1) * stride + kernel - in, 0), the smaller half before), which
    is what TensorFlow passes to cuDNN on a GPU. Its CPU kernels are not
    reliable for a stride larger than the kernel (measured with TensorFlow
    2.21: with oneDNN off, Eigen centres the window on the middle channels;
    with oneDNN, C = 2048 follows the rule but other shapes give meaningless
    values). So the layer computes those numbers itself, as a 2-D convolution
    of ``t[..., :3]`` with the (2H - 1) kernel rows that can meet a feature
    row, which also avoids padding the input by C - 1 rows.
    ``call`` returns ``[attended, maps]`` like :class:`SoftAttention`.
    """

    def __init__(self, heads: int = 16, kernel_initializer="he_uniform", **kwargs):
        kwargs.setdefault("name", ATTENTION_LAYER)
        super().__init__(**kwargs)
        if int(heads) < 1:
            raise ParameterError(f"attention_heads={heads}: expected a positive integer")
        self.heads = int(heads)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        """Create the (C, 3, 3, 1, K) kernel and the K biases, as the public layer does."""
        channels = int(input_shape[-1])
        if channels < 3:
            raise ParameterError(f"SoftAttentionPublic needs at least 3 feature channels, got {channels}")
        self.kernel = self.add_weight(name="kernel", shape=(channels, 3, 3, 1, self.heads),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.heads,), initializer="zeros")

    def scores(self, inputs):
        """Pre-ReLU score maps (B, H, W, K) of the public code's 3-D convolution."""
        height = inputs.shape[1]
        if height is None:
            raise ParameterError("SoftAttentionPublic needs feature maps of known height")
        height = int(height)
        depth = int(self.kernel.shape[0])
        before = (depth - 1) // 2  # rows of zero padding above the input in the 3-D convolution
        start, stop = before - (height - 1), before + height  # kernel rows meeting some input row
        pad_top, pad_bottom = max(0, -start), max(0, stop - depth)
        kernel = self.kernel[:, :, :, 0, :]  # (rows along H, 3 along W, 3 along channels, K)
        if pad_top or pad_bottom:
            kernel = ops.pad(kernel, ((pad_top, pad_bottom), (0, 0), (0, 0), (0, 0)))
        kernel = kernel[start + pad_top: stop + pad_top]
        return ops.conv(inputs[..., :3], kernel, strides=1, padding="same") + self.bias

    def call(self, inputs):
        """Return ``[t * sum of head maps, per-head maps (B, H, W, K)]``."""
        maps = _softmax_over_positions(ops.relu(self.scores(inputs)))
        attended = inputs * ops.sum(maps, axis=-1, keepdims=True)
        return [attended, maps]

    def compute_output_shape(self, input_shape):
        """Shapes of ``[attended, maps]``."""
        return [tuple(input_shape), tuple(input_shape[:-1]) + (self.heads,)]

    def get_config(self):
        """Everything needed to rebuild the layer from a saved model."""
        config = super().get_config()
        config.update(heads=self.heads,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="lesionscan")
class ClassAttention(keras.layers.Layer):
    """Class-specific attention: one map per class, and the features pooled under each map.

    Our definition of the report's "class-specific attention refinement". For
    features ``t`` (B, H, W, C) and K = ``classes``: score maps come from a
    k x k ``same`` convolution from C channels to K maps (as in
    :class:`SoftAttention`), each is softmax-normalised over the H x W
    positions, and the features are pooled under each map::

        a_c = softmax_hw(W_c * t + b_c)
        z_c = sum_hw a_c(h, w) t(h, w, :)          (a C-vector per class)

    ``call`` returns ``[z (B, K, C), maps (B, H, W, K)]``; map c is where the
    model looks for evidence of class c. :class:`ClassWiseDense` turns z into
    the class probabilities. There is no gamma: a scale would be absorbed by
    the classifier's weights.
    """

    def __init__(self, classes: int = 7, kernel_size: int = 3, kernel_initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("name", CLASS_ATTENTION_LAYER)
        super().__init__(**kwargs)
        if int(classes) < 1:
            raise ParameterError(f"n_classes={classes}: expected a positive integer")
        self.classes = int(classes)
        self.kernel_size = int(kernel_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        """Create the score-map kernel (k x k x C x K) and its bias."""
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, channels, self.classes),
            initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.classes,), initializer="zeros")

    def call(self, inputs):
        """Return ``[per-class pooled features (B, K, C), per-class maps (B, H, W, K)]``."""
        scores = ops.conv(inputs, self.kernel, strides=1, padding="same") + self.bias
        maps = _softmax_over_positions(scores)
        shape = ops.shape(inputs)
        flat_maps = ops.reshape(maps, (shape[0], shape[1] * shape[2], self.classes))
        flat_features = ops.reshape(inputs, (shape[0], shape[1] * shape[2], shape[3]))
        pooled = ops.matmul(ops.transpose(flat_maps, (0, 2, 1)), flat_features)
        return [pooled, maps]

    def compute_output_shape(self, input_shape):
        """Shapes of ``[pooled, maps]``."""
        return [(input_shape[0], self.classes, input_shape[-1]), tuple(input_shape[:-1]) + (self.classes,)]

    def get_config(self):
        """Everything needed to rebuild the layer from a saved model."""
        config = super().get_config()
        config.update(classes=self.classes, kernel_size=self.kernel_size,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="lesionscan")
class ClassWiseDense(keras.layers.Layer):
    """One linear unit per class, each reading its own class's vector: ``logit_c = w_c . z_c + b_c``.

    Input (B, K, C), as :class:`ClassAttention` pools it; output (B, K) after
    ``activation``. It has as many weights as a dense layer from C to K, and
    takes the same ``kernel_regularizer`` (L2 in our models). ``activation``
    is an attribute read at call time, so tf-keras-vis' ``ReplaceToLinear``
    works on it as on a Dense layer.
    """

    def __init__(self, activation="softmax", kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        """Create the (K, C) kernel and the K biases."""
        classes, channels = input_shape[-2], input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(classes, channels), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(classes,), initializer="zeros")

    def call(self, inputs):
        """``activation(sum_C(z * w) + b)``, shape (B, K)."""
        return self.activation(ops.sum(inputs * self.kernel, axis=-1) + self.bias)

    def compute_output_shape(self, input_shape):
        """(B, K)."""
        return tuple(input_shape[:-1])

    def get_config(self):
        """Everything needed to rebuild the layer from a saved model."""
        config = super().get_config()
        config.update(activation=keras.activations.serialize(self.activation),
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer)
                      if self.kernel_regularizer is not None else None)
        return config


_ATTENTION_CLASSES = (SoftAttention, SoftAttentionPublic, ClassAttention)
_CUSTOM_OBJECTS = {cls.__name__: cls for cls in (SoftAttention, SoftAttentionPublic, ClassAttention, ClassWiseDense)}


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
    """Build the model ``kind`` (one of :data:`KINDS`); the model's name is ``kind``.

    Options shared by all kinds: ``image_size`` (square inputs, at least 32),
    ``n_classes``, ``weights`` ("none", "imagenet" or a ResNet50 no-top
    weights file), ``dropout`` before the classifier, ``l2`` on the
    classifier's kernel (0 for none), ``bn_momentum``. ``attention_heads`` (K)
    applies to the soft-attention layers (``soft_attention``,
    ``soft_attention_public``, both stages of ``multiscale``), ``gamma_init``
    to the equation's layers (``soft_attention``, ``multiscale``); the
    class-attention model has one head per class and ignores both.

    ``bn_momentum`` replaces the backbone's batch-normalisation momentum
    (Keras: 0.99). A network trained from scratch for a few hundred steps
    needs a lower one (0.9): with 0.99 the moving statistics still lag far
    behind the weights at the end of training, and the model scores well in
    training mode but near chance in inference mode.

    baseline: ResNet50 -> GAP -> Dropout -> Dense softmax (L2).
    soft_attention: ResNet50 -> SoftAttention -> GAP -> Dropout -> Dense softmax (L2).
    soft_attention_public: the same with SoftAttentionPublic.
    multiscale: conv4_block6_out -> SoftAttention "soft_attention_stage4" -> GAP, and
    conv5_block3_out -> SoftAttention "soft_attention" -> GAP; concatenated ("fusion",
    1024 + 2048 features) -> Dropout -> Dense softmax (L2).
    class_attention: ResNet50 -> ClassAttention (K = n_classes) -> Dropout on the
    K pooled vectors -> ClassWiseDense softmax (L2).
    The attended features of a "soft_attention" layer also pass through an
    Identity layer "attended_features" (stage 4: "attended_features_stage4").
    Inputs are ResNet50-preprocessed images (see ``pipeline.preprocess``).
    """
    if kind not in KINDS:
        raise ParameterError(f"model kind {kind!r}: expected one of {', '.join(KINDS)}")
    if int(image_size) < 32:
        raise ParameterError(f"image_size={image_size}: expected at least 32 (ResNet50 downsamples by 32)")
    if int(n_classes) < 2:
        raise ParameterError(f"n_classes={n_classes}: expected at least 2")
    inputs = keras.Input(shape=(int(image_size), int(image_size), 3), name="image")
    backbone = _backbone(inputs, weights)
    if bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    x = backbone.output
    if kind == "class_attention":
        pooled, _ = ClassAttention(classes=n_classes, name=CLASS_ATTENTION_LAYER)(x)
        pooled = keras.layers.Dropout(dropout, name="dropout")(pooled)
        outputs = ClassWiseDense(activation="softmax", kernel_regularizer=regularizer, name="predictions",
                                 dtype="float32")(pooled)  # softmax in float32 under mixed precision
        return keras.Model(inputs, outputs, name=kind)
    if kind in ("soft_attention", "multiscale"):
        x, _ = SoftAttention(heads=attention_heads, gamma_init=gamma_init, name=ATTENTION_LAYER)(x)
        x = keras.layers.Identity(name=ATTENDED_FEATURES_LAYER)(x)
    elif kind == "soft_attention_public":
        x, _ = SoftAttentionPublic(heads=attention_heads, name=ATTENTION_LAYER)(x)
        x = keras.layers.Identity(name=ATTENDED_FEATURES_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if kind == "multiscale":
        stage4 = backbone.get_layer(STAGE4_OUTPUT).output
        y, _ = SoftAttention(heads=attention_heads, gamma_init=gamma_init, name=STAGE4_ATTENTION_LAYER)(stage4)
        y = keras.layers.Identity(name=ATTENDED_FEATURES_LAYER + "_stage4")(y)
        y = keras.layers.GlobalAveragePooling2D(name="gap_stage4")(y)
        x = keras.layers.Concatenate(name="fusion")([y, x])
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions",
                                 kernel_regularizer=regularizer, dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(inputs, outputs, name=kind)


def backbone_layers(model: keras.Model) -> list:
    """The ResNet50 layers of ``model`` in model order (input layer excluded).

    Found by name (ResNet50 names all its layers ``conv1_*``, ``pool1_*``,
    ``conv2_*`` ... ``conv5_*``; no layer of ours matches), not by position:
    in the multiscale model Keras places the stage-4 attention between
    backbone layers. Works the same on a freshly built and on a reloaded
    model, and returns the same layers, in the same order, for every kind.
    """
    names = [layer.name for layer in model.layers]
    if BACKBONE_OUTPUT not in names:
        raise ParameterError(f"model {model.name!r} has no layer {BACKBONE_OUTPUT!r}: not a LesionScan model")
    return [layer for layer in model.layers
            if _BACKBONE_NAME.match(layer.name) and not isinstance(layer, keras.layers.InputLayer)]


def attention_layers(model: keras.Model) -> list[str]:
    """Names of the attention layers of ``model`` (empty for the baseline)."""
    return [layer.name for layer in model.layers if isinstance(layer, _ATTENTION_CLASSES)]


def _attention_layer(model: keras.Model, layer):
    """The attention layer named ``layer``, or the model's default one (the last stage's)."""
    names = attention_layers(model)
    if not names:
        raise ParameterError(f"model {model.name!r} has no soft-attention layer; attention maps exist only "
                             f"for the attention models ({', '.join(k for k in KINDS if k != 'baseline')})")
    if layer is None:
        layer = ATTENTION_LAYER if ATTENTION_LAYER in names else names[0]
    if layer not in names:
        raise ParameterError(f"model {model.name!r} has no attention layer {layer!r}; it has {', '.join(names)}")
    return model.get_layer(layer)


def attention_heads(model: keras.Model, images_preprocessed, layer: str | None = None,
                    batch_size: int = 32) -> np.ndarray:
    """Per-head maps (N, h, w, K) of one attention layer; each head sums to 1 over h x w.

    ``layer`` names the attention layer (see :func:`attention_layers`); None
    takes "soft_attention" (the last stage in ``multiscale``) or, in
    ``class_attention``, "class_attention", whose head c is class c's map.
    """
    att = _attention_layer(model, layer)
    return _run(keras.Model(model.inputs[0], att.output[1]), images_preprocessed, batch_size)[0]


def _run(probe: keras.Model, images, batch_size: int) -> list[np.ndarray]:
    """Outputs of a throwaway probe model, batch by batch in inference mode (no graph to trace, unlike predict)."""
    images = np.asarray(images, dtype="float32")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
    parts = []
    for start in range(0, len(images), batch_size):
        out = probe(images[start:start + batch_size], training=False)
        parts.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    if not parts:  # no images: run one dummy image to learn the output shapes
        out = probe(np.zeros((1, *images.shape[1:]), dtype="float32"), training=False)
        return [np.zeros((0, *o.shape[1:]), dtype="float32") for o in (out if isinstance(out, (list, tuple)) else [out])]
    return [np.concatenate(column) for column in zip(*parts)]


def attention_maps(model: keras.Model, images_preprocessed, upsample_to=None,
                   batch_size: int = 32, layer: str | None = None, class_index=None) -> np.ndarray:
    """One attention map (N, h, w) per image for preprocessed images.

    Soft-attention layers (both variants, each stage of ``multiscale``): the
    sum over heads, the map that multiplies the features (before gamma); it
    sums to K over the positions. ``layer`` picks the layer (default
    "soft_attention", the last stage). Class attention: the map of one class,
    which sums to 1; ``class_index`` None takes each image's **predicted
    class** (the map its winning logit was pooled under), an int one class
    for all images, a sequence one class per image.
    With ``upsample_to=(H, W)`` the maps are resized bilinearly to image size.
    Works on a reloaded model: the maps are read from the layer's second output.
    """
    images = np.asarray(images_preprocessed, dtype="float32")
    att = _attention_layer(model, layer)
    if isinstance(att, ClassAttention):
        if class_index is not None:
            try:
                chosen = np.broadcast_to(np.asarray(class_index, dtype=int), (len(images),))
            except ValueError:
                raise ParameterError(f"class_index: expected one class or one per image ({len(images)})") from None
            if np.any((chosen < 0) | (chosen >= att.classes)):
                raise ParameterError(f"class_index {class_index}: expected classes 0..{att.classes - 1}")
        heads, probs = _run(keras.Model(model.inputs[0], [att.output[1], model.outputs[0]]), images, batch_size)
        if class_index is None:
            chosen = probs.argmax(axis=-1)
        summed = heads[np.arange(len(images)), :, :, chosen]
    else:
        if class_index is not None:
            raise ParameterError(f"class_index applies to the class-attention model only, not {model.name!r}")
        summed = attention_heads(model, images, layer=att.name, batch_size=batch_size).sum(axis=-1)
    if upsample_to is not None:
        height, width = (int(v) for v in upsample_to)
        summed = np.asarray(ops.image.resize(summed[..., None], (height, width), interpolation="bilinear"))[..., 0]
    return summed.astype("float32")


def parameter_counts(image_size: int = 96, **options) -> pd.DataFrame:
    """Parameters of every kind, built once each with random weights ("none").

    Columns: kind, parameters (all weights, batch-normalisation statistics
    included), trainable (as built, before any phase freezes the backbone),
    beyond_baseline (parameters minus the baseline's). ``options`` go to
    :func:`build_model` (n_classes, attention_heads, ...); ``weights`` is
    ignored, since counts do not depend on it.
    """
    options.pop("weights", None)
    rows = []
    for kind in KINDS:
        model = build_model(kind, image_size=image_size, weights="none", **options)
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        rows.append({"kind": kind, "parameters": int(model.count_params()), "trainable": trainable})
        del model
        gc.collect()
    table = pd.DataFrame(rows, columns=["kind", "parameters", "trainable"])
    table["beyond_baseline"] = table["parameters"] - int(table.loc[table["kind"] == "baseline", "parameters"].iloc[0])
    return table


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a saved LesionScan model (.keras); anything else is a ParameterError."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"model file {path}: no such file")
    try:
        model = keras.models.load_model(path, custom_objects=dict(_CUSTOM_OBJECTS), compile=compile)
    except Exception as exc:
        raise ParameterError(f"model file {path}: could not load it as a Keras model ({exc})") from None
    if model.name not in KINDS:
        raise ParameterError(f"model file {path}: model {model.name!r} is not a LesionScan model "
                             f"(expected one of {', '.join(KINDS)})")
    return model
