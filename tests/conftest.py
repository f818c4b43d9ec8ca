"""Shared test set-up: quiet TensorFlow, and a handle on the real data when a user points to it."""

import os
from pathlib import Path

import pytest

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"


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
def smoke_run(tmp_path_factory):
    """One smoke study with its built book, shared by every test that reads a run's outputs (minutes)."""
    from lesionscan.study import runner

    artifacts = tmp_path_factory.mktemp("study") / "artifacts"
    index = runner.run_study("smoke", artifacts=str(artifacts))
    return artifacts / "smoke", index
