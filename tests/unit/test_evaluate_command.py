"""``lesionscan evaluate``: a saved model scored on a labelled folder, with intervals, as training scored its test
set."""

import json

import numpy as np
import pandas as pd
import pytest

from lesionscan import cli, evaluate
from lesionscan.analysis import evaluation
from lesionscan.core.classes import CLASSES

from factories import folder_state, isic2018_folder

LABELS = {f"ISIC_{34000 + i:07d}": dx for i, dx in enumerate(CLASSES * 6)}  # 42 images, 6 per class


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    return isic2018_folder(tmp_path_factory.mktemp("isic") / "ISIC2018", LABELS, size=(40, 30))


def test_text_report_has_every_metric_with_an_interval_and_writes_the_predictions(tiny_model, isic, tmp_path,
                                                                                  capsys):
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", isic, "--out", out_csv,
                             "--resamples", 50)
    assert code == 0, err
    for needle in ("ISIC 2018 Task 3, 42 images", "balanced accuracy", "ROC-AUC (macro)", "ROC-AUC (weighted)",
                   "accuracy", "recall per class", "Melanoma", "checksum sha256:", "50 resamples"):
        assert needle in out, needle
    assert out.count(" to ") >= 4 + 7  # an interval on each headline metric and each class's recall
    pred = pd.read_csv(out_csv)
    assert list(pred.columns) == list(evaluation.PREDICTION_COLUMNS) and len(pred) == len(LABELS)
    assert dict(zip(pred["image_id"], pred["dx"])) == LABELS


def test_json_is_the_only_stdout_and_its_numbers_follow_from_the_csv(tiny_model, isic, tmp_path, capsys):
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", isic, "--out", out_csv, "--json",
                             "--resamples", 50)
    assert code == 0, err
    report = json.loads(out)
    assert "scored 42 of 42 images" in err  # progress on stderr
    assert report["images"] == 42 and report["images_per_class"] == {dx: 6 for dx in CLASSES}
    recomputed = evaluation.compute_metrics(pd.read_csv(out_csv))
    ba = report["metrics"]["balanced_accuracy"]
    assert ba["value"] == pytest.approx(recomputed["balanced_accuracy"])
    assert ba["low"] <= ba["value"] <= ba["high"]
    assert report["metrics"]["roc_auc_macro"]["value"] == pytest.approx(recomputed["roc_auc"]["macro"])
    for dx in CLASSES:
        assert report["recall"][dx]["value"] == pytest.approx(recomputed["per_class"][dx]["recall"])
    assert report["data"]["layout"] == "ISIC 2018 Task 3" and report["data"]["checksum"].startswith("sha256:")


def test_images_are_scored_as_training_scored_its_test_set(tiny_model, isic):
    """The same probabilities as the training chapters' test path (make_dataset without augmentation + predict)."""
    from lesionscan.model import pipeline, saving

    model = saving.load_model(tiny_model)
    folder = evaluate.read_labelled_folder(isic)
    ours = evaluate.predictions(model, folder.frame, progress=False)
    dataset = pipeline.make_dataset(folder.frame["image_path"].tolist(), folder.frame["dx"].map(CLASSES.index),
                                    image_size=32, batch_size=32, training=False, augment=False)
    theirs = model.predict(dataset, verbose=0)
    np.testing.assert_allclose(ours[list(evaluation.PROB_COLUMNS)].to_numpy(), theirs, atol=1e-5)


def test_a_ham10000_folder_is_scored_too(tiny_model, synthetic_set, tmp_path, capsys):
    data = synthetic_set(168, size=32)
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", data, "--out",
                             tmp_path / "p.csv", "--resamples", 20)
    assert code == 0, err
    assert "HAM10000, 168 images" in out


def test_an_unknown_layout_is_refused_naming_the_folder(tiny_model, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", tmp_path / "photos")
    assert code == 2
    assert "photos: not a layout lesionscan knows" in err and "ISIC 2018 Task 3" in err and "HAM10000" in err


def test_malformed_ground_truth_is_refused_naming_file_and_line(tiny_model, tmp_path, capsys):
    folder = isic2018_folder(tmp_path / "isic", {"ISIC_0000001": "mel"}, images=["ISIC_0000001", "ISIC_0000002"],
                             rows=["ISIC_0000002,1,0,0,1,0,0,0"])
    before = folder_state(tmp_path)
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", folder, "--out", tmp_path / "p.csv")
    assert code == 2
    assert "ISIC2018_Task3_Test_GroundTruth.csv line 3: ISIC_0000002 is not exactly one-hot" in err
    assert folder_state(tmp_path) == before  # nothing written


def test_an_image_that_is_not_one_is_refused_by_name_and_nothing_is_written(tiny_model, tmp_path, capsys):
    folder = isic2018_folder(tmp_path / "isic", {"ISIC_0000001": "mel", "ISIC_0000002": "nv"})
    bad = folder / "ISIC2018_Task3_Test_Input" / "ISIC_0000002.jpg"
    bad.write_text("not a jpeg")
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", folder, "--out", tmp_path / "p.csv")
    assert code == 2
    assert "ISIC_0000002.jpg: not a readable image" in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("which, message", [("missing", "no such file"), ("text", "not a Keras archive")])
def test_a_bad_model_file_is_refused_by_name(isic, tmp_path, capsys, which, message):
    model = tmp_path / "m.keras"
    if which == "text":
        model.write_text("not a model\n")
    code, _, err = run_cli(capsys, "evaluate", "--model", model, "--data", isic)
    assert code == 2 and f"model file {model}: {message}" in err


def test_predictions_are_never_written_into_the_data_folder(tiny_model, isic, capsys):
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_model, "--data", isic, "--out", isic / "p.csv")
    assert code == 2 and "inside the data folder" in err


def test_the_default_output_is_named_after_model_and_folder(tmp_path):
    data = tmp_path / "ISIC2018"
    data.mkdir()
    assert evaluate.default_out(tmp_path / "soft_attention.keras", data).name == \
        "soft_attention.ISIC2018.predictions.csv"
