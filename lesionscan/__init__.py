"""LesionScan: a reproducible study of the Deep-Lesion Scan report on HAM10000.

The package reads like the study's data flow: ``core`` (errors, classes,
atomic writes, parameters) -> ``data`` (HAM10000, synthetic set, download,
splits) -> ``model`` (input pipeline, layers, networks, training, saved
models) -> ``analysis`` (metrics, resampling statistics, the report's claims,
mask agreement, wording) -> ``explain`` (attention maps, Grad-CAM) ->
``figures``, with ``study`` (run folder, declared results, experiments,
runner, generated pages) on top, and the ``cli`` and ``predict`` commands.

The names here are the few a user needs: run the study, load a model the
study saved, classify images with it, score predictions. Importing the
package registers the custom Keras layers, so any saved model also loads with
plain ``keras.saving.load_model``: ``run_study``, ``load_model``, ``predict_images``
(class probabilities of image files) and ``compute_metrics`` (every test
metric of a predictions table).
"""

import os as _os

__version__ = "0.1.0"

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines; a user's setting wins

from lesionscan.analysis.evaluation import compute_metrics  # noqa: E402
from lesionscan.model import layers as _layers  # noqa: E402, F401  (registers the custom layers with Keras)
from lesionscan.model.saving import load_model  # noqa: E402
from lesionscan.predict import predict as predict_images  # noqa: E402
from lesionscan.study.runner import run_study  # noqa: E402
