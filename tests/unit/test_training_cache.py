"""The training cache: same key reuses, every class of change retrains, a damaged entry is never loaded."""

import json
import shutil
from dataclasses import fields, replace

import pandas as pd
import pytest

from lesionscan.core import parameters
from lesionscan.core.parameters import ModelSection
from lesionscan.data import ham10000
from lesionscan.model import networks
from lesionscan.study import experiments, run_folder, training_cache

from factories import make_predictions

TINY = {"image_size": 32, "epochs": 1, "balance_target": 4, "batch_size": 16, "seed": 3}


@pytest.fixture
def run(tmp_path, synthetic_set):
    return run_folder.create("smoke", tmp_path / "artifacts", synthetic_set(200, 48, seed=2), TINY)


def _key(recipe, checksum, split_bytes):
    return training_cache.key_of(training_cache.key_inputs(recipe, checksum, split_bytes))


def test_the_key_changes_with_everything_that_determines_a_model(run, tmp_path, monkeypatch):
    p = run.parameters
    split_bytes = run.split_file().read_bytes()
    base = _key(p.recipe("baseline"), run.data_checksum, split_bytes)
    assert _key(p.recipe("baseline"), run.data_checksum, split_bytes) == base

    def changed(**flat):
        return parameters.sections(parameters.resolve("smoke", {**TINY, **flat})).recipe("baseline")

    assert _key(changed(epochs=2), run.data_checksum, split_bytes) != base  # a training parameter
    assert _key(changed(dropout=0.3), run.data_checksum, split_bytes) != base  # a model parameter
    assert _key(p.recipe("baseline", seed=4), run.data_checksum, split_bytes) != base
    assert _key(p.recipe("soft_attention"), run.data_checksum, split_bytes) != base
    assert _key(p.recipe("baseline"), run.data_checksum, split_bytes + b"\n") != base  # the split's content

    data = shutil.copytree(run.data_dir, tmp_path / "edited")
    image = sorted((data / "HAM10000_images_part_1").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")  # one byte more in one image
    assert _key(p.recipe("baseline"), ham10000.data_checksum(data), split_bytes) != base

    # presentation, the cache switch, and options that do not reach the baseline: the same key
    for flat in ({"explain_per_class": 5}, {"bootstrap_resamples": 10}, {"training_cache": False},
                 {"attention_heads": 2}, {"gamma_init": 0.5}, {"ablation_models": ""}):
        assert _key(changed(**flat), run.data_checksum, split_bytes) == base, flat
    heads = parameters.sections(parameters.resolve("smoke", {**TINY, "attention_heads": 2}))
    assert _key(heads.recipe("soft_attention"), run.data_checksum, split_bytes) != _key(
        p.recipe("soft_attention"), run.data_checksum, split_bytes)

    monkeypatch.setattr(training_cache, "code_hash", lambda: "another version of the training code")
    assert _key(p.recipe("baseline"), run.data_checksum, split_bytes) != base


def test_a_weights_file_enters_the_key_by_its_content(run, tmp_path, monkeypatch):
    """weights=PATH rewritten with other values at the same path must train again, not reuse the old model."""
    split_bytes = run.split_file().read_bytes()
    first = tmp_path / "resnet50_notop.h5"
    first.write_bytes(b"weights, first version")

    def key(path):
        recipe = run.parameters.recipe("baseline")
        return _key(replace(recipe, model=replace(recipe.model, weights=str(path))), run.data_checksum, split_bytes)

    base = key(first)
    first.write_bytes(b"weights, second version")  # the same path, other values
    assert key(first) != base
    first.write_bytes(b"weights, first version")
    assert key(first) == base
    monkeypatch.setenv("HOME", str(tmp_path))
    assert key("~/resnet50_notop.h5") != base  # read where networks reads it (~ expanded); the path differs


def test_options_left_out_of_a_kinds_key_do_not_change_that_kinds_network():
    """The ``kinds`` declared on model options agree with what build_model uses."""
    for f in fields(ModelSection):
        reaches = f.metadata.get("kinds")
        if not reaches:
            continue
        other = {"attention_heads": 2, "gamma_init": 0.5}[f.name]
        for kind in (k for k in networks.KINDS if k not in reaches):
            a = networks.build_model(kind, 32, ModelSection())
            b = networks.build_model(kind, 32, replace(ModelSection(), **{f.name: other}))
            assert json.dumps(a.get_config(), default=str) == json.dumps(b.get_config(), default=str), (f.name, kind)


@pytest.fixture
def fake_training(monkeypatch):
    """Training replaced by writing the four files at once: the cache's logic without minutes of training."""
    calls = []

    def fake(run, recipe, name):
        calls.append(name)
        predictions = make_predictions(["nv", "mel", "bkl"], ["nv", "nv", "bkl"], ids=["a", "b", "c"])
        history = pd.DataFrame({"epoch": [1], "phase": ["full"], "loss": [1.0]})
        metrics = {"model": recipe.kind, "name": name, "seed": recipe.seed, "n": 3, "epochs_trained": 1}
        for what, write in (("model", lambda path: path.write_bytes(b"weights %d" % recipe.seed)),
                            ("history", lambda path: history.to_csv(path, index=False)),
                            ("predictions", lambda path: predictions.to_csv(path, index=False)),
                            ("metrics", lambda path: path.write_text(json.dumps(metrics)))):
            path = run.trained_path(name, what)
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        return experiments.Result(model=None, history=history, predictions=predictions, metrics=metrics)

    monkeypatch.setattr(experiments, "_train", fake)
    return calls


def test_the_same_key_reuses_and_a_damaged_entry_is_trained_again(run, fake_training, capsys):
    recipe = run.parameters.recipe("baseline")
    first = experiments.train_and_evaluate(run, recipe)
    assert first.metrics["training"]["source"] == "trained in this run"
    [entry] = list(run.training_cache_dir.iterdir())

    again = experiments.train_and_evaluate(run, recipe, name="baseline_again")
    assert fake_training == ["baseline"]  # not trained twice
    assert again.metrics["training"]["source"] == "reused from the training cache"
    assert again.metrics["training"]["cache_entry"] == entry.name[:16]
    assert run.read_metrics("baseline_again")["name"] == "baseline_again"
    assert run.model_path("baseline_again").read_bytes() == run.model_path("baseline").read_bytes()
    assert experiments.training_sentence(again.metrics).startswith("Reused from the training cache: trained ")
    capsys.readouterr()

    model = entry / "model.keras"
    model.write_bytes(model.read_bytes()[:3])  # a truncated entry
    third = experiments.train_and_evaluate(run, recipe, name="baseline_third")
    out = capsys.readouterr().out
    assert f"training cache: entry {entry.name[:16]} is damaged (model.keras differs" in out
    assert fake_training == ["baseline", "baseline_third"]
    assert third.metrics["training"]["source"] == "trained in this run"
    assert training_cache.TrainingCache(run.training_cache_dir).lookup(entry.name) is not None  # stored anew

    (entry / "entry.json").write_text("{")  # a partial entry
    experiments.train_and_evaluate(run, recipe, name="baseline_fourth")
    assert "is damaged (no readable entry.json" in capsys.readouterr().out and len(fake_training) == 3


def test_without_the_cache_nothing_is_read_or_written(run, fake_training):
    recipe = parameters.sections(dict(run.params, training_cache=False)).recipe("baseline")
    experiments.train_and_evaluate(run, recipe)
    result = experiments.train_and_evaluate(run, recipe, name="again")
    assert fake_training == ["baseline", "again"]
    assert result.metrics["training"]["source"] == "trained in this run"
    assert result.metrics["training"]["cache_entry"] is None and not run.training_cache_dir.exists()


def test_a_real_model_comes_back_from_the_cache_as_it_was_trained(run):
    """One real (tiny) training: the reused model loads and the run's files are the trained ones."""
    from lesionscan.model import saving

    recipe = run.parameters.recipe("baseline")
    first = experiments.train_and_evaluate(run, recipe)
    again = experiments.train_and_evaluate(run, recipe, name="reused")
    assert again.metrics["training"]["source"] == "reused from the training cache"
    pd.testing.assert_frame_equal(again.predictions, first.predictions)
    assert saving.load_model(run.model_path("reused")).name == "baseline"
    for what in ("history", "predictions"):
        assert run.trained_path("reused", what).read_bytes() == run.trained_path("baseline", what).read_bytes()
