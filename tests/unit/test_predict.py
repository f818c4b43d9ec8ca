"""`lesionscan predict`: probabilities, overlays and the disclaimer for good inputs; a clear exit 2 and no files
for bad ones."""

import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lesionscan import cli, predict
from lesionscan.core.classes import CLASS_NAMES, CLASSES
from lesionscan.core.parameters import ModelSection
from lesionscan.model import saving

SIZE = 32  # ResNet50's smallest input: the models are still 23 M parameters, so each is built once


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _jpeg(path, width, height, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def _images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return _jpeg(folder / "lesion_a.jpg", 50, 40, 0), _jpeg(folder / "lesion_b.jpg", 72, 96, 1)


def _written(folder):
    """Every output (or leftover temporary) file under ``folder``."""
    return sorted(p for p in folder.rglob("*") if p.name.endswith(predict.OUTPUT_SUFFIX) or ".tmp" in p.name)


def _bomb_png(path, width, height):
    """A tiny valid PNG whose IHDR declares width x height (CRC fixed), so nothing large is ever allocated."""
    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Saved models: the two LesionScan kinds the command is tested with, and two Keras models that are not ours."""
    import gc

    import keras

    from lesionscan.model import networks

    folder = tmp_path_factory.mktemp("models")
    files = {}
    for kind in ("soft_attention", "baseline"):
        model = networks.build_model(kind, SIZE, ModelSection(weights="none"))
        model.save(folder / f"{kind}.keras")
        files[kind] = folder / f"{kind}.keras"
        del model
        gc.collect()
    plain = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    plain.save(folder / "plain.keras")
    files["plain"] = folder / "plain.keras"
    # named like ours, with our layer names, but three classes: only the loaded model's shape gives it away
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv5_block3_out")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    impostor = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x),
                           name="baseline")
    impostor.save(folder / "impostor.keras")
    files["impostor"] = folder / "impostor.keras"
    (folder / "text.keras").write_text("not a model\n")
    files["not_zip"] = folder / "text.keras"
    files["missing"] = folder / "missing.keras"
    return files


@pytest.fixture(scope="module")
def json_run(model_files, tmp_path_factory):
    """The attention model on two images, JSON, overlays beside the images: run once, read by several tests."""
    import contextlib  # capsys is function-scoped: capture by hand here
    import io

    folder = tmp_path_factory.mktemp("json")
    images = _images(folder / "images")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["predict", "--model", str(model_files["soft_attention"]), *map(str, images), "--json"])
    return code, out.getvalue(), err.getvalue(), images


def test_json_is_the_only_stdout_and_has_sorted_probabilities(json_run):
    code, out, err, images = json_run
    assert code == 0, err
    report = json.loads(out)  # fails on any other text on stdout
    assert report["disclaimer"] == predict.DISCLAIMER and "not a diagnostic device" in report["disclaimer"]
    assert report["model"]["kind"] == "soft_attention" and report["model"]["input_size"] == SIZE
    assert [r["image"] for r in report["results"]] == [str(p) for p in images]
    for result in report["results"]:
        probs = result["probabilities"]
        assert sorted(probs) == sorted(CLASSES)
        values = list(probs.values())
        assert abs(sum(values) - 1.0) < 1e-5
        assert values == sorted(values, reverse=True)
        assert result["predicted"] == next(iter(probs)) and result["confidence"] == values[0]
        assert result["predicted_name"] == CLASS_NAMES[result["predicted"]]
    assert (report["results"][0]["width"], report["results"][0]["height"]) == (50, 40)
    assert (report["results"][1]["width"], report["results"][1]["height"]) == (72, 96)


def test_json_run_writes_overlays_beside_the_images(json_run):
    code, out, _, images = json_run
    assert code == 0
    report = json.loads(out)
    for image, result in zip(images, report["results"]):
        png = image.with_name(f"{image.stem}.lesionscan.png")
        assert result["explanation"] == str(png) and png.is_file()
        with Image.open(png) as img:
            img.load()
            assert img.format == "PNG" and img.width > img.height > 100
            assert img.text["Panels"] == " | ".join(result["panels"])
            assert "not a diagnostic device" in img.text["Disclaimer"]
        assert result["panels"] == ["image (as the model sees it)", "attention map",
                                    f"Grad-CAM ({result['predicted']})"]
    assert not [p for p in images[0].parent.iterdir() if ".tmp" in p.name]


def test_text_output_names_classes_and_disclaimer_and_writes_to_out(model_files, tmp_path, capsys):
    images = _images(tmp_path / "images")
    out_dir = tmp_path / "new" / "overlays"
    code, out, err = run_cli(capsys, "predict", "--model", model_files["soft_attention"], *images, "--out", out_dir)
    assert code == 0, err
    for dx in CLASSES:
        assert f"{CLASS_NAMES[dx]} ({dx})" in out
    assert "Research model, not a diagnostic device" in out
    assert str(images[0]) in out and str(images[1]) in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["lesion_a.lesionscan.png", "lesion_b.lesionscan.png"]
    assert not list((tmp_path / "images").glob("*.lesionscan.png"))
    with Image.open(out_dir / "lesion_a.lesionscan.png") as img:
        img.verify()
    # the probability lines come highest first
    block = out.split(str(images[0]))[1].split("\n\n")[0].splitlines()[1:8]
    values = [float(line.split()[-1]) for line in block]
    assert len(values) == 7 and values == sorted(values, reverse=True)


def test_baseline_has_grad_cam_but_no_attention_panel(model_files, tmp_path, capsys):
    images = _images(tmp_path)
    code, out, err = run_cli(capsys, "predict", "--model", model_files["baseline"], images[0], "--json")
    assert code == 0, err
    result = json.loads(out)["results"][0]
    assert result["panels"] == ["image (as the model sees it)", f"Grad-CAM ({result['predicted']})"]
    with Image.open(result["explanation"]) as img:
        assert "attention" not in img.text["Panels"] and "Grad-CAM" in img.text["Panels"]


def test_not_an_image_exits_2_naming_the_file(model_files, tmp_path, capsys):
    fake = tmp_path / "x.jpg"
    fake.write_text("this is text, not a JPEG\n")
    good = _jpeg(tmp_path / "good.jpg", 40, 40, 2)
    code, out, err = run_cli(capsys, "predict", "--model", model_files["soft_attention"], good, fake)
    assert code == 2 and out == ""
    assert err.startswith("lesionscan: error:") and str(fake) in err and "not a readable image" in err
    assert _written(tmp_path) == []  # the good image got no overlay either


@pytest.mark.parametrize("width, height", [(30000, 30000), (8000, 8000)])
def test_decompression_bomb_is_refused_from_its_header(model_files, tmp_path, capsys, width, height):
    # 30000 x 30000 trips Pillow's own DecompressionBombError; 8000 x 8000 (64 MP) only our limit
    bomb = _bomb_png(tmp_path / "bomb.png", width, height)
    with pytest.raises(Exception) as info:
        predict.check_image(bomb)
    assert "50,000,000 pixels" in str(info.value)
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "predict", "--model", model_files["soft_attention"], bomb, "--out", out_dir)
    assert code == 2 and out == ""
    assert str(bomb) in err and "too large to decode safely" in err and "limit is 50,000,000 pixels" in err
    assert not out_dir.exists() and _written(tmp_path) == []


@pytest.mark.parametrize("which, message", [
    ("missing", "no such file"),
    ("not_zip", "not a Keras archive"),
    ("plain", "not a LesionScan model"),
    ("impostor", "output shape (None, 3)"),
])
def test_bad_model_file_exits_2_naming_it(model_files, tmp_path, capsys, which, message):
    images = _images(tmp_path / "images")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "predict", "--model", model_files[which], *images, "--out", out_dir)
    assert code == 2 and out == ""
    assert err.startswith("lesionscan: error: model file") and str(model_files[which]) in err and message in err
    assert not out_dir.exists() and _written(tmp_path) == []


def test_two_images_writing_one_overlay_are_refused(model_files, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _jpeg(tmp_path / "a" / "same.jpg", 40, 40, 3)
    second = _jpeg(tmp_path / "b" / "same.jpg", 40, 40, 4)
    code, _, err = run_cli(capsys, "predict", "--model", model_files["baseline"], first, second,
                           "--out", tmp_path / "out")
    assert code == 2 and "would both write" in err
    assert _written(tmp_path) == []


def test_api_predict_and_write_explanation(model_files, tmp_path):
    from lesionscan.model import networks

    model = saving.load_model(model_files["soft_attention"])
    assert networks.attention_layers(model) == ["soft_attention"]
    image = _jpeg(tmp_path / "img.jpg", 60, 45, 5)
    assert predict.check_image(image) == (60, 45)
    [result] = predict.predict(model, [image])
    assert list(result["probabilities"].values()) == sorted(result["probabilities"].values(), reverse=True)
    path = predict.write_explanation(model, image, None, result["predicted_index"])
    assert path == tmp_path / "img.lesionscan.png" and path.is_file()
    text = predict.format_text([result])
    assert text.splitlines()[0].startswith(f"{image}: {CLASS_NAMES[result['predicted']]}")
    assert text.endswith(predict.DISCLAIMER)


# --- where the overlays go: never over an input or the model, all of them or none -------------------------------


def _png(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(path)
    return path


def _tree(folder):
    """Every path under ``folder`` (files, folders and links), relative, to compare before and after."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_an_overlay_that_would_replace_an_input_image_is_refused(tiny_model, tmp_path, capsys):
    first = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    second = _png(tmp_path / "a.lesionscan.png", 1)  # an input named like first's overlay
    before = second.read_bytes()
    code, out, err = run_cli(capsys, "predict", "--model", tiny_model, first, second)
    assert code == 2 and out == ""
    assert f"overlay of {first} would be written to {second}, which is the input image {second}" in err
    assert second.read_bytes() == before and _tree(tmp_path) == ["a.jpg", "a.lesionscan.png"]


@pytest.mark.parametrize("out", [None, "out"])
def test_two_images_side_by_side_writing_one_overlay_are_refused(tiny_model, tmp_path, capsys, out):
    first = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    second = _png(tmp_path / "a.png", 1)
    extra = ["--out", tmp_path / out] if out else []
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, first, second, *extra)
    assert code == 2 and f"images {first} and {second} would both write" in err
    assert _tree(tmp_path) == ["a.jpg", "a.png"]


def test_an_overlay_that_would_replace_the_model_file_is_refused(tiny_model, tmp_path, capsys):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    (tmp_path / "a.lesionscan.png").symlink_to(tiny_model)
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image)
    assert code == 2 and f"which is the model file {tiny_model}" in err
    assert (tmp_path / "a.lesionscan.png").is_symlink() and tiny_model.stat().st_size > 0


def test_a_later_overlay_that_cannot_be_written_leaves_no_earlier_one(tiny_model, tmp_path, capsys):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = _jpeg(tmp_path / "one" / "a.jpg", 40, 40, 0)
    second = _jpeg(tmp_path / "two" / "b.jpg", 40, 40, 1)
    (tmp_path / "two" / "b.lesionscan.png").mkdir()  # a folder where the second overlay goes
    code, out, err = run_cli(capsys, "predict", "--model", tiny_model, first, second)
    assert code == 2 and out == ""
    assert f"{tmp_path / 'two' / 'b.lesionscan.png'}: is a folder" in err and "Traceback" not in err
    assert _tree(tmp_path) == ["one", "one/a.jpg", "two", "two/b.jpg", "two/b.lesionscan.png"]


def _fail_on_call(monkeypatch, name, n):
    """Make atomic.<name> (predict's all-or-none writer) raise OSError on its n-th call (1-based), as a full disk
    or a vanished folder would."""
    from lesionscan.core import atomic

    original, calls = getattr(atomic, name), []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)
    monkeypatch.setattr(atomic, name, flaky)


def test_a_failure_while_staging_removes_the_temporaries_and_the_created_folder(tiny_model, tmp_path, capsys,
                                                                              monkeypatch):
    images = _images(tmp_path / "images")
    _fail_on_call(monkeypatch, "_stage", 2)
    code, out, err = run_cli(capsys, "predict", "--model", tiny_model, *images, "--out", tmp_path / "new" / "deep")
    assert code == 2 and out == "" and "No space left on device" in err and "nothing was written" in err
    assert _tree(tmp_path) == ["images", "images/lesion_a.jpg", "images/lesion_b.jpg"]


def test_a_failure_while_moving_into_place_puts_the_old_overlays_back(tiny_model, tmp_path, capsys, monkeypatch):
    images = _images(tmp_path)
    old = tmp_path / "lesion_a.lesionscan.png"
    old.write_bytes(b"an overlay from an earlier run")
    _fail_on_call(monkeypatch, "_move", 2)
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, *images)
    assert code == 2 and "nothing was written" in err
    assert old.read_bytes() == b"an overlay from an earlier run"
    assert _tree(tmp_path) == ["lesion_a.jpg", "lesion_a.lesionscan.png", "lesion_b.jpg"]


def test_out_that_is_a_file_or_under_a_file_is_a_clear_error(tiny_model, tmp_path, capsys):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image, "--out", image)
    assert code == 2 and f"--out {image}: is a file, not a folder" in err
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image, "--out", image / "sub")
    assert code == 2 and f"--out {image / 'sub'}: cannot create it, {image} is a file, not a folder" in err
    assert _tree(tmp_path) == ["a.jpg"]


@pytest.mark.parametrize("with_out", [False, True])
def test_no_permission_advice_fits_what_was_typed(tiny_model, tmp_path, capsys, monkeypatch, with_out):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    monkeypatch.setattr(predict, "_writable", lambda folder: False)  # as a read-only folder is, for a non-root user
    extra = ["--out", tmp_path / "out"] if with_out else []
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image, *extra)
    assert code == 2 and "no permission" in err
    if with_out:
        assert "pass --out" not in err and "choose another --out folder" in err
    else:
        assert "pass --out DIR to write the overlays elsewhere" in err
    assert _tree(tmp_path) == ["a.jpg"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_clear_error(tiny_model, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    image = _jpeg(folder / "a.jpg", 40, 40, 0)
    folder.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image)
    finally:
        folder.chmod(0o755)
    assert code == 2 and f"{folder}: cannot write the overlays there (no permission)" in err
    assert _tree(tmp_path) == ["ro", "ro/a.jpg"]


def test_an_empty_out_or_image_path_is_refused(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image, "--out", "")
    assert code == 2 and "--out '': an empty path; expected a folder" in err
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, "")
    assert code == 2 and "image '': an empty path; expected an image file" in err
    assert _tree(tmp_path) == ["a.jpg"]


def test_links_that_do_not_resolve_say_so(tiny_model, tmp_path, capsys):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    (tmp_path / "loop1.jpg").symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(tmp_path / "loop1.jpg")
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, tmp_path / "loop1.jpg")
    assert code == 2 and "a symbolic link that does not resolve (broken, or a loop)" in err
    (tmp_path / "outloop").symlink_to(tmp_path / "outloop")
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image, "--out", tmp_path / "outloop")
    assert code == 2 and f"--out {tmp_path / 'outloop'}: a symbolic link that does not resolve" in err
    assert not list(tmp_path.glob("*.lesionscan.png"))


def test_a_link_loop_where_the_overlay_goes_is_replaced_not_a_traceback(tiny_model, tmp_path, capsys):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    target = tmp_path / "a.lesionscan.png"
    target.symlink_to(target)
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, image)
    assert code == 0, err
    assert not target.is_symlink() and target.is_file()


def test_a_folder_given_as_an_image_says_so(tiny_model, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, tmp_path)
    assert code == 2 and f"image {tmp_path}: a folder, not an image file" in err


def test_the_same_image_twice_is_reported_twice_and_written_once(tiny_model, tmp_path, capsys):
    image = _jpeg(tmp_path / "a.jpg", 40, 40, 0)
    code, out, err = run_cli(capsys, "predict", "--model", tiny_model, image, tmp_path / "." / "a.jpg", "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 2 and results[0]["probabilities"] == results[1]["probabilities"]
    assert _tree(tmp_path) == ["a.jpg", "a.lesionscan.png"]


def test_spaces_and_unicode_in_image_names(tiny_model, tmp_path, capsys):
    (tmp_path / "with space").mkdir()
    image = _jpeg(tmp_path / "with space" / "naïve 😀.jpg", 40, 40, 0)
    code, out, err = run_cli(capsys, "predict", "--model", tiny_model, image, "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["explanation"] == str(tmp_path / "with space" / "naïve 😀.lesionscan.png")


def test_an_overlay_name_too_long_for_the_file_system_is_refused_before_anything_is_written(tiny_model, tmp_path,
                                                                                           capsys):
    good = _jpeg(tmp_path / "good.jpg", 40, 40, 0)
    long = _jpeg(tmp_path / ("x" * 245 + ".jpg"), 40, 40, 1)  # 249 bytes; its overlay's name would be 260
    code, _, err = run_cli(capsys, "predict", "--model", tiny_model, good, long)
    assert code == 2 and "longer than the file system allows" in err and str(long.with_suffix("")) in err
    assert _tree(tmp_path) == sorted(["good.jpg", long.name])
