"""The networks of the study: ResNet50 alone and with four kinds of attention.

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
from dataclasses import replace

import keras
import numpy as np
import pandas as pd

from lesionscan.core.classes import CLASSES
from lesionscan.core.errors import ParameterError
from lesionscan.core.parameters import MODEL_KINDS, ModelSection, weights_file
from lesionscan.model import backbone_weights
from lesionscan.model.layers import (
    ATTENDED_FEATURES_LAYER,
    ATTENTION_CLASSES,
    ATTENTION_LAYER,
    BACKBONE_NAME_PATTERN,
    BACKBONE_OUTPUT,
    CLASS_ATTENTION_LAYER,
    STAGE4_ATTENTION_LAYER,
    STAGE4_OUTPUT,
    ClassAttention,
    ClassWiseDense,
    SoftAttention,
    SoftAttentionPublic,
)

KINDS = MODEL_KINDS  # declared with the parameters, which check ablation_models against it


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
                                 f"({exc}); {hint}") from exc
    path = weights_file(weights)
    if not path.is_file():
        raise ParameterError(f"weights={weights}: no such file; {hint}")
    # What ResNet50(weights=PATH) does (build, then model.load_weights), with the file checked first.
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    backbone_weights.load(backbone, path, label=f"weights={weights}", hint=hint)
    return backbone


def check_weights(weights: str) -> None:
    """Fail before a long run starts when the backbone's weights cannot be had.

    Building the backbone once fetches ImageNet weights into Keras' cache (or
    loads the file), so the chapters later find them; offline, the user
    learns it in seconds rather than after the data chapters have run.
    """
    if str(weights).lower() != "none":
        _backbone(keras.Input(shape=(64, 64, 3)), weights)


def build_model(kind: str, image_size: int, options: ModelSection = ModelSection(),
                n_classes: int = len(CLASSES)) -> keras.Model:
    """Build the model ``kind`` (one of :data:`KINDS`) for square inputs of ``image_size`` (at least 32) px.

    ``options`` is the run's model section (its defaults are the smoke
    profile's): ``weights`` ("none", "imagenet" or a ResNet50 no-top weights
    file), ``dropout`` before the classifier, ``l2`` on the classifier's
    kernel (0 for none), ``bn_momentum``; ``attention_heads`` (K) applies to
    the soft-attention layers (``soft_attention``, ``soft_attention_public``,
    both stages of ``multiscale``), ``gamma_init`` to the equation's layers
    (``soft_attention``, ``multiscale``); the class-attention model has one
    head per class and ignores both. The model's name is ``kind``.

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
    backbone = _backbone(inputs, options.weights)
    if options.bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(options.bn_momentum)
    regularizer = keras.regularizers.L2(options.l2) if options.l2 else None
    dropout, attention_heads, gamma_init = options.dropout, options.attention_heads, options.gamma_init
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
            if BACKBONE_NAME_PATTERN.match(layer.name) and not isinstance(layer, keras.layers.InputLayer)]


def copy_backbone(source: keras.Model, target: keras.Model) -> None:
    """Give ``target`` the backbone weights (batch-norm statistics included) of ``source``, layer by layer."""
    for layer in backbone_layers(target):
        layer.set_weights(source.get_layer(layer.name).get_weights())


def attention_layers(model: keras.Model) -> list[str]:
    """Names of the attention layers of ``model`` (empty for the baseline)."""
    return [layer.name for layer in model.layers if isinstance(layer, ATTENTION_CLASSES)]


def parameter_counts(image_size: int = 96, options: ModelSection = ModelSection()) -> pd.DataFrame:
    """Parameters of every kind, built once each with random weights (counts do not depend on them).

    Columns: kind, parameters (all weights, batch-normalisation statistics
    included), trainable (as built, before any phase freezes the backbone),
    beyond_baseline (parameters minus the baseline's).
    """
    options = replace(options, weights="none")
    rows = []
    for kind in KINDS:
        model = build_model(kind, image_size, options)
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        rows.append({"kind": kind, "parameters": int(model.count_params()), "trainable": trainable})
        del model
        gc.collect()
    table = pd.DataFrame(rows, columns=["kind", "parameters", "trainable"])
    table["beyond_baseline"] = table["parameters"] - int(table.loc[table["kind"] == "baseline", "parameters"].iloc[0])
    return table


