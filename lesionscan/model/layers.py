"""The custom Keras layers of the study's models, and the names the models give their layers.

Each layer is registered with Keras under the package name "lesionscan", so
any model the study saved loads with plain ``keras.saving.load_model`` once
this module is imported (``import lesionscan`` imports it). The layer names
are shared by model building, training (which finds the backbone by name),
Grad-CAM and the saved-model checks, so they are defined here once.
"""

from __future__ import annotations

import re
import warnings

import keras
from keras import ops

from lesionscan.core.errors import ParameterError

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
BACKBONE_NAME_PATTERN = re.compile(r"^(conv[1-5]|pool1)_")



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


ATTENTION_CLASSES = (SoftAttention, SoftAttentionPublic, ClassAttention)
CUSTOM_OBJECTS = {cls.__name__: cls for cls in (SoftAttention, SoftAttentionPublic, ClassAttention, ClassWiseDense)}
