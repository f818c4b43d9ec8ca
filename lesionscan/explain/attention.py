"""Attention maps of a trained model: what each attention layer multiplies into the features.

Works on a freshly built or a reloaded model alike: the maps are read from
each attention layer's second output through a throwaway probe model.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from lesionscan.core.errors import ParameterError
from lesionscan.model.layers import ATTENTION_LAYER, ClassAttention
from lesionscan.model.networks import KINDS, attention_layers


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
        outputs = out if isinstance(out, (list, tuple)) else [out]
        return [np.zeros((0, *o.shape[1:]), dtype="float32") for o in outputs]
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


