"""Shared test set-up: quiet TensorFlow, the shared builders on the path, synthetic data sets made once, and a
handle on the real data when a user points to it.

Unit tests live in unit/, end-to-end runs (all marked slow) in e2e/; this file serves both.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

# factories.py beside this file, for ``from factories import ...`` whatever pytest's import mode
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


# How pytest-xdist (pyproject.toml: -n auto) hands tests to its workers: a file at a time, so a file's module
# fixtures (trained models) are built once, except that every reader of the one smoke study shares a worker
# (the study runs once) and the exercises of the teaching page, six studies of their own, spread one by one.
SMOKE_RUN_FILES = ("tests/e2e/test_study.py", "tests/e2e/test_browser.py")
ONE_BY_ONE_FILES = ("tests/e2e/test_exercises.py",)
# Handed out before any other unit, each to a worker that then never gets the smoke study: xdist orders units by
# their number of tests, which would put the paper dry run (one test, half an hour on real data) last.
FIRST_FILES = ("tests/e2e/test_paper_dry_run.py",)


def file_of(nodeid: str) -> str:
    """The file part of a test's id (``tests/e2e/test_study.py``)."""
    return nodeid.split("::")[0]


def work_unit(nodeid: str) -> str:
    """The scheduling unit of a test: ``smoke_run``, the test itself, or its file."""
    path = file_of(nodeid)
    if path in SMOKE_RUN_FILES:
        return "smoke_run"
    return nodeid if path in ONE_BY_ONE_FILES else path


def pytest_xdist_make_scheduler(config, log):
    """xdist's file-by-file scheduling with the units of :func:`work_unit`.

    (Its ``xdist_group`` marks cannot do this under pytest 9: xdist 3.8 groups by rewriting ``item._nodeid``,
    which pytest 9 no longer reads, so marked tests are scheduled one by one.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class StudyScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            """The next unit for ``node`` (xdist pops the queue's first): FIRST_FILES first, and not the smoke
            study for a worker that holds one of them while another unit is left."""
            queue = self.workqueue
            order = [unit for unit in FIRST_FILES if unit in queue] + [u for u in queue if u not in FIRST_FILES]
            if set(self.assigned_work.get(node, {})) & set(FIRST_FILES):
                order = [unit for unit in order if unit != "smoke_run"] or order
            queue.move_to_end(order[0], last=False)
            super()._assign_work_unit(node)

    return StudyScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Refuse a reader of the smoke study outside SMOKE_RUN_FILES: another worker would run the study again."""
    stray = [item.nodeid for item in items if "smoke_run" in getattr(item, "fixturenames", ())
             and file_of(item.nodeid) not in SMOKE_RUN_FILES]
    if stray:
        raise pytest.UsageError(f"{', '.join(stray)} read(s) smoke_run: add the file to SMOKE_RUN_FILES in "
                                "tests/conftest.py")


@pytest.fixture
def real_data_dir() -> Path:
    """The real HAM10000 folder named by LESIONSCAN_REAL_DATA; tests using it skip where it is unset."""
    value = os.environ.get("LESIONSCAN_REAL_DATA")
    if not value:
        pytest.skip("set LESIONSCAN_REAL_DATA to a HAM10000 data directory to run real-data tests")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"LESIONSCAN_REAL_DATA={value} is not a directory")
    return path


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory):
    """``synthetic_set(n_images, size, seed)``: the folder of ``lesionscan.data.synthetic.generate`` with those
    arguments, written once per session and shared by every test that asks for the same ones.

    The folder is shared: read it, or copy it (``shutil.copytree``) before changing anything.
    """
    from lesionscan.data import synthetic

    made: dict[tuple[int, int, int], Path] = {}

    def make(n_images: int, size: int = 64, seed: int = 0) -> Path:
        key = (n_images, size, seed)
        if key not in made:
            folder = tmp_path_factory.mktemp(f"synthetic-{n_images}-{size}-{seed}")
            made[key] = synthetic.generate(folder / "data", n_images=n_images, size=size, seed=seed)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A few-kilobyte model at 32 px that passes every check of ``saving.load_model`` (a baseline by its names and
    shapes): fast to load and run, for the commands that read a model file."""
    import keras

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv5_block3_out")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="predictions")(x), name="baseline")
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One smoke study with its built book, shared by every test that reads a run's outputs (minutes).

    It names an external test set (``external_test_dir``): synthetic images in the ISIC 2018 Task 3 layout,
    drawn with another seed than the run's own, so chapter 7 scores both models on images the run never saw.
    """
    from lesionscan.data import synthetic
    from lesionscan.study import runner

    from factories import SMOKE_EXTERNAL_IMAGES

    folder = tmp_path_factory.mktemp("study")
    external = synthetic.generate_isic2018(folder / "isic2018", n_images=SMOKE_EXTERNAL_IMAGES, size=128, seed=7)
    artifacts = folder / "artifacts"
    index = runner.run_study("smoke", artifacts=str(artifacts), overrides=[f"external_test_dir={external}"])
    return artifacts / "smoke", index
