"""Grad-CAM heatmaps of a trained model, and heatmaps laid over the image.

Grad-CAM and Grad-CAM++ come from tf-keras-vis (``Gradcam``,
``GradcamPlusPlus``, with ``ReplaceToLinear`` so gradients flow from the
class score before the softmax, and ``CategoricalScore``). The feature map
explained is, by default:

* the output of the ``soft_attention`` layer (its attention-weighted
  features, output 0) for the soft-attention model, so the map shows what the
  head sees after attention;
* ``conv5_block3_out``, the last ResNet50 block, for the baseline.

tf-keras-vis reads the explained tensor from ``layer.output``, which for the
attention layer is a list ``[features, maps]``. It accepts any Keras layer
there, so we hand it a feature sub-model (inputs -> chosen tensor) of the
model it works on: the sub-model's ``output`` is exactly that tensor.
"""

from __future__ import annotations

import numpy as np

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError
from lesionscan.model.layers import ATTENTION_LAYER, BACKBONE_OUTPUT


def default_layer(model) -> str:
    """Name of the layer Grad-CAM explains by default: the attention layer if any, else ResNet50's last block."""
    names = {layer.name for layer in model.layers}
    for name in (ATTENTION_LAYER, BACKBONE_OUTPUT):
        if name in names:
            return name
    raise ParameterError(
        f"model {model.name!r} has neither a {ATTENTION_LAYER!r} nor a {BACKBONE_OUTPUT!r} layer, so Grad-CAM has no "
        "default layer; call gradcam(model, images, classes, layer=NAME) or GradcamExplainer(model, layer=NAME) "
        "naming a layer that outputs a feature map (batch, height, width, channels)")


def _feature_tensor(model, layer_name: str):
    """The symbolic tensor Grad-CAM explains: the layer's output, or output 0 when it returns several."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError as error:
        raise ParameterError(f"model {model.name!r} has no layer named {layer_name!r}") from error
    output = layer.output
    if isinstance(output, (list, tuple)):
        output = output[0]
    if len(output.shape) != 4:
        raise ParameterError(f"layer {layer_name!r} outputs shape {tuple(output.shape)}; Grad-CAM needs a "
                             "feature map (batch, height, width, channels)")
    return output


class GradcamExplainer:
    """Grad-CAM (or Grad-CAM++ with ``plus=True``) of one model, set up once for any number of batches.

    Setting up copies the model (tf-keras-vis makes its output linear on a
    copy, never on the caller's model) and builds the feature sub-model: about
    a second for a ResNet50, which chapter 6 would otherwise pay for every
    batch of every method. ``layer``: a layer name or layer of ``model``; None
    picks ``default_layer(model)``.
    """

    def __init__(self, model, plus: bool = False, layer=None):
        import keras
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        layer_name = default_layer(model) if layer is None else (layer if isinstance(layer, str) else layer.name)
        _feature_tensor(model, layer_name)  # fail early, with our message, on a bad layer
        self.n_classes = int(model.outputs[0].shape[-1])
        self.visualizer = (GradcamPlusPlus if plus else Gradcam)(model, model_modifier=ReplaceToLinear(), clone=True)
        work = self.visualizer.model
        # a sub-model of the copy whose single output is the explained tensor: tf-keras-vis
        # reads ``penultimate_layer.output``, which for the attention layer itself is a list
        self.features = keras.Model(work.inputs, _feature_tensor(work, layer_name), name="gradcam_features")

    def __call__(self, images_preprocessed, class_indices, batch_size: int = 16) -> np.ndarray:
        """The (N, H, W) maps of ``images_preprocessed`` for ``class_indices`` (see :func:`gradcam`)."""
        return self._maps(*_checked(images_preprocessed, class_indices, self.n_classes, batch_size), batch_size)

    def _maps(self, images: np.ndarray, indices: np.ndarray, batch_size: int) -> np.ndarray:
        """The maps of checked images and class indices (:func:`_checked`)."""
        from tf_keras_vis.utils.scores import CategoricalScore

        n = len(images)
        if n == 0:
            return np.zeros((0, *images.shape[1:3]), dtype=np.float32)
        maps = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            cam = self.visualizer(CategoricalScore(indices[start:stop].tolist()), images[start:stop],
                                  penultimate_layer=self.features, seek_penultimate_conv_layer=False)
            maps.append(np.asarray(cam, dtype=np.float32).reshape(stop - start, *images.shape[1:3]))
        out = np.concatenate(maps)
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def _checked(images_preprocessed, class_indices, n_classes: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images as a float32 batch and one class index per image, or a ParameterError saying what is wrong."""
    images = np.asarray(images_preprocessed, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ParameterError(f"images have shape {images.shape}; expected (n_images, height, width, channels)")
    n = len(images)
    indices = list(np.atleast_1d(np.asarray(class_indices, dtype=object)))
    unknown = [v for v in indices if isinstance(v, str) and v not in CLASSES]
    if unknown:
        raise ParameterError(f"unknown class code(s) {unknown}; expected indices or one of {', '.join(CLASSES)}")
    indices = np.array([CLASSES.index(v) if isinstance(v, str) else int(v) for v in indices], dtype=int)
    if indices.size == 1 and n != 1:
        indices = np.repeat(indices, n)
    if indices.shape != (n,):
        raise ParameterError(f"got {indices.size} class indices for {n} images; give one per image or one for all")
    if np.any((indices < 0) | (indices >= n_classes)):
        raise ParameterError(f"class indices {indices.tolist()} out of range 0..{n_classes - 1}")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
    return images, indices


def gradcam(model, images_preprocessed, class_indices, plus: bool = False, layer=None,
            batch_size: int = 16) -> np.ndarray:
    """Grad-CAM (or Grad-CAM++ with ``plus=True``) of each image for its given class.

    ``images_preprocessed``: (N, H, W, 3) model inputs (already through
    ``pipeline.preprocess``). ``class_indices``: one class index (or class
    code such as "mel") per image, or one for all. ``layer``: a layer name or
    layer of ``model``; None picks ``default_layer(model)``. Returns float32
    (N, H, W) maps, upsampled bilinearly from the feature grid and each scaled
    to [0, 1] (an all-zero map stays 0). The model itself is not changed:
    tf-keras-vis works on a copy whose output activation is made linear.
    Many batches of one model: build one :class:`GradcamExplainer` instead.
    """
    images, indices = _checked(images_preprocessed, class_indices, int(model.outputs[0].shape[-1]), batch_size)
    if len(images) == 0:  # nothing to explain: no model copy
        return np.zeros((0, *images.shape[1:3]), dtype=np.float32)
    return GradcamExplainer(model, plus=plus, layer=layer)._maps(images, indices, batch_size)


def _resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width)."""
    from PIL import Image

    if heatmap.shape == size:
        return heatmap
    image = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)


def scaled(heatmap) -> np.ndarray:
    """A map scaled to [0, 1] by its own range (a constant map becomes 0; NaN counts as 0).

    Maps of different methods live on different scales (attention sums to K,
    Grad-CAM is already 0..1); each is shown on its own range.
    """
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)
    low, high = float(heat.min()), float(heat.max())
    return (heat - low) / (high - low) if high > low else np.zeros_like(heat)


def overlay(image_uint8, heatmap, alpha: float = 0.4, cmap: str = "viridis") -> np.ndarray:
    """The heatmap coloured with ``cmap`` and blended over the image: uint8 RGB of the image's size.

    ``heatmap`` is a 2-D map in [0, 1] (values outside are clipped, NaN is 0);
    it is resized bilinearly to the image when their sizes differ.
    ``alpha`` is the heatmap's weight (0 = image only, 1 = heatmap only).
    """
    import matplotlib

    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ParameterError(f"image has shape {image.shape}; expected (height, width, 3)")
    image = image[..., :3].astype(np.float32)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim == 3 and heat.shape[-1] == 1:
        heat = heat[..., 0]
    if heat.ndim != 2:
        raise ParameterError(f"heatmap has shape {heat.shape}; expected (height, width)")
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"alpha must be between 0 and 1, got {alpha}")
    heat = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)
    heat = np.clip(_resize(heat, image.shape[:2]), 0.0, 1.0)
    colour = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * image + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
