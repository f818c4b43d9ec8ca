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


def _is_cli() -> bool:
    """Whether this process is the ``lesionscan`` console script, without ``--debug`` / ``LESIONSCAN_DEBUG``."""
    import sys

    from lesionscan.core.errors import debug_requested

    return _os.path.basename(sys.argv[0] if sys.argv else "") == "lesionscan" and not debug_requested()


def _interrupt_is_one_line_in_the_cli() -> None:
    """Ctrl-C while the ``lesionscan`` command is still importing TensorFlow (about 5 s): one line, status 130.

    ``cli.main`` handles Ctrl-C once it runs; before that (these imports)
    only ``sys.excepthook`` can. Installed for the console script only, not
    when the package is imported as a library.
    """
    import sys

    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            sys.stderr.write("lesionscan: interrupted\n")
            sys.stderr.flush()
            _os._exit(130)
        previous(kind, value, traceback)

    sys.excepthook = hook


class _NativeStartupLines:
    """Hold back what TensorFlow's C++ libraries print on file descriptor 2 while they load (CLI only).

    TensorFlow 2.21 prints its oneDNN and CUDA start-up lines before any log
    level applies (``TF_CPP_MIN_LOG_LEVEL`` cannot stop them), so a one-line
    error of the CLI would come with six lines of noise. The lines are kept
    in a temporary file and shown only if the imports fail.
    """

    def __enter__(self):
        import signal
        import sys
        import tempfile

        sys.stderr.flush()
        self.saved, self.held = _os.dup(2), tempfile.TemporaryFile()
        _os.dup2(self.held.fileno(), 2)
        # Ctrl-C while the libraries load ends the command at once: a KeyboardInterrupt raised inside a library's
        # import can be swallowed by its own ``except:``, and the command would go on as if nothing was pressed.
        self.previous = signal.signal(signal.SIGINT, self._interrupted)

    def _interrupted(self, signum, frame):
        _os.write(self.saved, b"lesionscan: interrupted\n")
        _os._exit(130)

    def __exit__(self, kind, value, traceback):
        import signal

        signal.signal(signal.SIGINT, self.previous)
        _os.dup2(self.saved, 2)
        _os.close(self.saved)
        if kind is not None and not issubclass(kind, KeyboardInterrupt):
            self.held.seek(0)
            _os.write(2, self.held.read())
        self.held.close()
        return False


if _is_cli():
    _interrupt_is_one_line_in_the_cli()
    _startup = _NativeStartupLines()
else:
    import contextlib as _contextlib

    _startup = _contextlib.nullcontext()

with _startup:
    from lesionscan.analysis.evaluation import compute_metrics
    from lesionscan.model import layers as _layers  # noqa: F401  (registers the custom layers with Keras)
    from lesionscan.model.saving import load_model
    from lesionscan.predict import predict as predict_images
    from lesionscan.study.runner import run_study
