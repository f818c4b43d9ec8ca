"""The command line: good inputs work, bad inputs exit non-zero with a message and leave nothing behind."""

import pandas as pd
import pytest

from lesionscan import cli, synthetic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("cli") / "data", n_images=300, size=64, seed=1)


def _copy(dataset, tmp_path):
    import shutil

    return shutil.copytree(dataset, tmp_path / "copy")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_the_class_table(dataset, capsys):
    code, out, _ = run_cli(capsys, "data", "check", dataset)
    assert code == 0
    assert "300 images" in out and "Melanoma" in out and "percent" in out


def test_split_writes_the_table_and_prints_support(dataset, tmp_path, capsys):
    out_file = tmp_path / "split.csv"
    code, out, _ = run_cli(capsys, "data", "split", dataset, "--protocol", "lesion", "--seed", 2, "--out", out_file)
    assert code == 0 and "train" in out and "test" in out
    table = pd.read_csv(out_file)
    assert list(table.columns) == ["image_id", "lesion_id", "dx", "subset"] and len(table) == 300


def _break_metadata(folder, change):
    meta_path = folder / "HAM10000_metadata.csv"
    meta = pd.read_csv(meta_path)
    change(meta)
    meta.to_csv(meta_path, index=False)


def _set_dx(meta):
    meta.loc[4, "dx"] = "melanoma"


def _drop_dx(meta):
    del meta["dx"]


@pytest.mark.parametrize("breakage, message", [
    (lambda d: _break_metadata(d, _drop_dx), "dx"),
    (lambda d: _break_metadata(d, _set_dx), "melanoma"),
    (lambda d: next((d / "HAM10000_images_part_1").glob("*.jpg")).unlink(), "ISIC_"),
    (lambda d: next((d / "HAM10000_images_part_1").glob("*.jpg")).write_text("not an image"), "ISIC_"),
])
def test_bad_data_exits_non_zero_naming_the_problem(dataset, tmp_path, capsys, breakage, message):
    broken = _copy(dataset, tmp_path)
    breakage(broken)
    code, _, err = run_cli(capsys, "data", "check", broken)
    assert code == 2 and "error" in err and message in err
    out_file = tmp_path / "split.csv"
    code, _, err = run_cli(capsys, "data", "split", broken, "--out", out_file)
    assert code == 2 and message in err
    assert not out_file.exists()


def test_missing_data_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "check", tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err


@pytest.mark.parametrize("argv, message", [
    (["study", "--profile", "fast"], "unknown profile 'fast'"),
    (["study", "--set", "epoch=3"], "unknown parameter 'epoch'"),
    (["study", "--set", "epochs=many"], "epochs=many"),
])
def test_study_rejects_bad_parameters_before_doing_anything(tmp_path, capsys, argv, message):
    artifacts = tmp_path / "artifacts"
    code, _, err = run_cli(capsys, *argv, "--artifacts", artifacts)
    assert code == 2 and message in err
    assert not artifacts.exists()


def test_study_with_missing_data_dir(tmp_path, capsys):
    code, _, err = run_cli(capsys, "study", "--data-dir", tmp_path / "nowhere", "--artifacts", tmp_path / "a")
    assert code == 2 and "nowhere" in err
