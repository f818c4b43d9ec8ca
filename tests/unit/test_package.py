"""The package face: ``import lesionscan`` is enough to load any model the study saves."""

import subprocess
import sys

import pytest

from lesionscan.core.parameters import ModelSection
from lesionscan.model import networks


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """One saved model of every kind, at ResNet50's smallest input (32 px)."""
    import gc

    folder = tmp_path_factory.mktemp("kinds")
    paths = []
    for kind in networks.KINDS:
        model = networks.build_model(kind, 32, ModelSection(attention_heads=2))
        model.save(folder / f"{kind}.keras")
        paths.append(folder / f"{kind}.keras")
        del model
        gc.collect()
    return paths


def test_plain_keras_loads_every_kind_after_import_lesionscan(saved_models):
    """In a fresh interpreter, as a user's own script would: no lesionscan submodule imported by hand."""
    script = ("import sys, keras, lesionscan\n"
              "for path in sys.argv[1:]:\n"
              "    model = keras.saving.load_model(path)\n"
              "    print(model.name, model.count_params())\n")
    out = subprocess.run([sys.executable, "-c", script, *map(str, saved_models)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(networks.KINDS)


def test_the_face_names_the_entry_points_only():
    import lesionscan

    public = {name for name in vars(lesionscan) if not name.startswith("_")}
    assert {"run_study", "load_model", "predict_images", "compute_metrics"} <= public
    assert public - {"run_study", "load_model", "predict_images", "compute_metrics"} <= {
        "analysis", "core", "data", "model", "explain", "figures", "study", "predict", "evaluate", "cli"}  # modules
