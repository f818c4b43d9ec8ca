# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Beyond the test set: subgroups and an external test
#
# Every number so far comes from one test subset that shares its source,
# its cameras and its preprocessing with the training images. Reporting
# guidelines for dermatology AI (CLEAR Derm; TRIPOD+AI) ask two more things
# of a study: does the model work as well for every group of patients and
# lesions, and does it hold on images from elsewhere? This chapter answers
# the first on the run's own test subset, by age, sex, body site and how the
# diagnosis was confirmed, and the second on an external test set when the
# run names one (the ISIC 2018 Task 3 test set is the field's standard: 1,512
# images held out from HAM10000, scored by balanced accuracy).

# %% tags=["parameters", "hide-cell"]
# Parameters (papermill replaces this cell in `lesionscan study`). To try another
# setting in class, put it in `overrides`, e.g. overrides = {"external_test_dir": "../data/isic2018-test"};
# every parameter is listed by `lesionscan profiles --show smoke`.
profile = "smoke"
artifacts_dir = "../artifacts"
data_dir = None
overrides = {}
run_dir = None  # set by `lesionscan study` (its run folder until it finishes); None: ARTIFACTS/PROFILE

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from lesionscan.analysis import reported, resampling, subgroups
from lesionscan.figures.performance import confusion_by_model, internal_against_external
from lesionscan.figures.subgroups import subgroup_forest
from lesionscan.study import experiments, external, results
from lesionscan.study.results import MAIN_MODELS
from lesionscan.study.run_folder import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)
p = run.parameters
predictions = {name: run.read_predictions(name) for name in MAIN_MODELS}
intervals = {name: resampling.bootstrap_metrics(predictions[name], **p.bootstrap) for name in MAIN_MODELS}

# %% tags=["remove-input"]
display(Markdown(experiments.provenance_text(run)))

# %% [markdown]
# ## Subgroups of the test subset
#
# Both models' balanced accuracy and macro ROC-AUC within each group of test
# images, with 95 % bootstrap intervals (images resampled within each true
# class of the group). The groups follow these rules:

# %% tags=["remove-input"]
table = run.save(results.SUBGROUPS, subgroups.subgroup_table(predictions, run.dataset, **p.bootstrap))
display(Markdown(subgroups.rules_text(table)))

# %% tags=["remove-input"]
display(subgroups.compact_table(table).style.hide(axis="index"))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Balanced accuracy of both models in each subgroup of the test subset, with 95 % intervals; the vertical line is the whole test subset, and flagged values are too uncertain to read.", "name": "fig-subgroups"}}
run.save(results.SUBGROUP_FIGURE, subgroup_forest(table))

# %% [markdown]
# ## An external test set

# %% tags=["hide-cell"]
if p.evaluation.external_test_dir:
    external_test = external.score_external(run)
    shared, external_predictions = external_test.shared, external_test.predictions
    external_intervals = external_test.intervals
    run.save(results.EXTERNAL_PREDICTIONS, external.predictions_table(external_predictions))
    status = run.save(results.EXTERNAL_STATUS, external_test.status)
else:
    status = run.save(results.EXTERNAL_STATUS, external.not_run())

# %% tags=["remove-input"]
if not status["ran"]:
    display(Markdown(external.HOW_TO_GET))
else:
    display(Markdown(f"Both models scored **{status['scored']:,} images** of `{status['data_dir']}` "
                     f"({status['layout']} layout, checksum `{status['checksum'][:19]}…`), preprocessed as the "
                     "test subset was. Internal is the run's own test subset; external, this folder."))
    if len(shared):
        display(Markdown(f"**{status['shared_with_run']:,} external image(s) are also in this run's own data** "
                         "(same id, or the same picture at 32 x 32 grey levels) and were left out, since a model "
                         "may have trained on them:"))
        display(external.shared_table(shared).style.hide(axis="index").format(precision=1))
    else:
        display(Markdown("No external image is also in the run's own data, by id or by content."))

# %% tags=["remove-input"]
if status["ran"]:
    comparison = run.save(results.EXTERNAL_COMPARISON, external.comparison_table(intervals, external_intervals))
    display(external.with_intervals(comparison, {"internal": "internal (95 % CI)", "external": "external (95 % CI)"})
            .style.hide(axis="index").format(precision=3))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Internal against external: each model's balanced accuracy and macro ROC-AUC with 95 % intervals; dashed lines are the ISIC 2018 Task 3 leaderboard's reference entries (the challenge's, not ours).", "name": "fig-external"}}
if status["ran"]:
    run.save(results.EXTERNAL_FIGURE, internal_against_external(comparison, reported.challenge_results()))

# %% tags=["remove-input"]
if status["ran"]:
    display(Markdown("The ISIC 2018 Task 3 leaderboard's reference entries, kept as data beside ours "
                     "(the challenge's numbers, on its 1,512 test images):"))
    display(reported.challenge_results().style.hide(axis="index").format(precision=3))
    per_class = run.save(results.EXTERNAL_PER_CLASS, external.per_class_table(
        predictions, external_predictions, intervals, external_intervals))
    display(Markdown("Recall of each class, internal against external:"))
    display(external.with_intervals(per_class, {"internal_recall": "internal recall (95 % CI)",
                                                "external_recall": "external recall (95 % CI)"})
            .style.hide(axis="index").format(precision=3))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Confusion matrices of both models on the external test set: rows the true class, each normalised to 1, with the image counts.", "name": "fig-external-confusion"}}
if status["ran"]:
    run.save(results.EXTERNAL_CONFUSION, confusion_by_model(external_predictions, "external"))
