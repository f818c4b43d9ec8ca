"""Every exercise command on the teaching page runs (shortened) on the smoke profile, so none goes stale.

The commands are read from ``book/teaching.md`` itself. Each runs every
chapter with extra settings that make it quick (tiny images and data, one
epoch, few bootstrap resamples, no ablation extras) and without the book
build; the test then checks that the exercise's own setting reached the run. The exercises spread over the
pytest-xdist workers one by one (tests/conftest.py).
"""

import json
import re
import shlex

import pytest

from lesionscan import cli
from lesionscan.core import parameters

from factories import ROOT

pytestmark = pytest.mark.slow

TEACHING = ROOT / "book" / "teaching.md"
QUICK = ["--set", "synthetic_images=200", "--set", "synthetic_size=64", "--set", "image_size=32",
         "--set", "epochs=1", "--set", "balance_target=8", "--set", "bootstrap_resamples=20",
         "--set", "ablation_models=", "--set", "ablation_seeds=1", "--set", "leakage_protocols=",
         "--set", "explain_per_class=1", "--no-book"]


def exercise_commands() -> list[str]:
    """The ``lesionscan study`` lines of the page's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", TEACHING.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("lesionscan study --set")]


def test_the_page_has_exercises():
    assert len(exercise_commands()) >= 4


@pytest.mark.parametrize("command", exercise_commands())
def test_exercise_runs(command, tmp_path):
    words = shlex.split(command)[1:]  # drop the program name
    code = cli.main(words + QUICK + ["--artifacts", str(tmp_path)])
    assert code == 0, command
    manifest = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    exercise = dict(parameters.split_assignment(words[i + 1]) for i, w in enumerate(words) if w == "--set")
    expected = parameters.resolve("smoke", exercise)
    for name in exercise:
        assert manifest["parameters"][name] == expected[name], name
