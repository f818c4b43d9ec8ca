"""The command line: good inputs work, bad inputs exit non-zero with a message and leave nothing behind."""

import re

import pandas as pd
import pytest

from lesionscan import cli


@pytest.fixture(scope="module")
def dataset(synthetic_set):
    return synthetic_set(n_images=300, size=64, seed=1)


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


def test_check_prints_layout_sizes_and_masks(dataset, capsys):
    code, out, _ = run_cli(capsys, "data", "check", dataset)
    assert code == 0
    assert "layout:   official" in out and "metadata: HAM10000_metadata.csv" in out
    assert "64x48 (300)" in out and "300 found, 0 missing" in out and "problems: none" in out
    assert "images_per_lesion" in out


def test_check_prints_the_checksum_a_manifest_records(dataset, capsys):
    from lesionscan.data import ham10000

    code, out, _ = run_cli(capsys, "data", "check", dataset)
    assert code == 0
    assert f"checksum: {ham10000.data_checksum(dataset)}" in out


def test_check_lists_every_problem_at_once(dataset, tmp_path, capsys):
    from PIL import Image

    broken = _copy(dataset, tmp_path)
    jpgs = sorted((broken / "HAM10000_images_part_1").glob("*.jpg"))
    jpgs[0].unlink()
    jpgs[1].write_bytes(jpgs[1].read_bytes()[:200])
    Image.new("L", (5, 5)).save(broken / "HAM10000_segmentations_lesion_tschandl" / f"{jpgs[2].stem}_segmentation.png")
    code, out, err = run_cli(capsys, "data", "check", broken)
    assert code == 2 and "layout:   official" in out and "problems: 3" in out
    assert "3 problem(s)" in err and f"image {jpgs[0].stem} not found" in err
    assert str(jpgs[1]) in err and "is 5x5" in err


def test_check_real_data(real_data_dir, capsys):
    code, out, _ = run_cli(capsys, "data", "check", real_data_dir)
    assert code == 0
    assert "10,015 images, 7,470 lesions" in out and "200x150 (10,015)" in out
    assert "10,015 found, 0 missing" in out and "problems: none" in out
    for dx, count in {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}.items():
        assert re.search(rf"^\s*{dx} .* {count} ", out, re.M), dx


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


def test_study_without_imagenet_weights_fails_before_any_chapter(dataset, tmp_path, capsys, monkeypatch):
    """Offline, the paper profile's ImageNet weights cannot be fetched: say so, and how to go on."""
    from keras.src.applications import resnet

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(resnet.file_utils, "get_file", offline)
    code, out, err = run_cli(capsys, "study", "--profile", "paper", "--data-dir", dataset,
                             "--artifacts", tmp_path / "artifacts")
    assert code == 2 and "--set weights=PATH" in err and "--set weights=none" in err
    assert "01_data" not in out


# --- one error path (issue 13) ------------------------------------------------------------------------------

def _console_script():
    import sys
    from pathlib import Path

    return str(Path(sys.executable).parent / "lesionscan")


def test_an_os_error_is_one_line_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "data", "synth", blocker / "out", "--images", 200, "--size", 32)
    assert code == 2 and "Traceback" not in err
    assert err == f"lesionscan: error: {blocker}: is a file, where a folder was expected (File exists)\n"


def test_a_bug_is_one_line_and_debug_shows_it_whole(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug in a command")

    monkeypatch.setattr(cli, "_cmd_profiles", broken)
    code, _, err = run_cli(capsys, "profiles")
    assert code == 1 and err.count("\n") == 2 and "Traceback" not in err
    assert "internal error: RuntimeError: a bug in a command" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="a bug in a command"):
        cli.main(["profiles", "--debug"])
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    with pytest.raises(RuntimeError, match="a bug in a command"):
        cli.main(["--debug", "profiles"])


def test_ctrl_c_inside_a_command_is_status_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_profiles", interrupted)
    code, _, err = run_cli(capsys, "profiles")
    assert code == 130 and err == "lesionscan: interrupted\n"


@pytest.mark.parametrize("argv, message", [
    (["data", "synth", "D", "--size", "40000"], "argument --size: 40000: expected an integer from 32 to 1024"),
    (["data", "synth", "D", "--seed", "-1"], "argument --seed: -1: expected an integer from 0 to 4294967295"),
    (["data", "synth", "D", "--images", "1000000"], "argument --images: 1000000: expected an integer from 168 to"),
    (["data", "split", "D", "--out", "x", "--seed", "x"], "argument --seed: x: expected an integer from 0 to"),
    (["data", "split", "D", "--out", "x", "--protocol", "random"], "argument --protocol: invalid choice"),
    (["study", "--sett", "epochs=1"], "unrecognized arguments: --sett"),
])
def test_every_cli_option_is_checked_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1 and "usage:" not in err


def test_a_closed_pipe_is_one_line_and_status_2():
    """``lesionscan profiles --show smoke | head -1``, the reader gone before the output is written."""
    import subprocess

    process = subprocess.Popen([_console_script(), "profiles", "--show", "smoke"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the command writes
    err = process.stderr.read().decode()
    assert process.wait() == 2, err
    assert err == "lesionscan: error: the output was closed before it ended (broken pipe)\n"


def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130(tmp_path):
    """SIGINT during the seconds the console script spends importing TensorFlow: no traceback, no start-up noise."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen([_console_script(), "study", "--artifacts", str(tmp_path / "a")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)  # the import alone takes seconds; a signal later than that is handled by main, same result
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    assert err.decode() == "lesionscan: interrupted\n"
