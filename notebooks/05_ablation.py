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
# # 5. Baseline against soft attention, and against the report
#
# The report's numbers come from one run, with no intervals. This chapter
# sets our two models side by side on the same test images with 95 %
# bootstrap intervals (test images resampled within each class), tests the
# difference on paired predictions, and puts every number the report claims
# beside ours and our interval. The report's values are read from the
# package's claims file, never typed here. Every accuracy is read against
# the score of always predicting the most frequent class.

# %% tags=["parameters", "hide-cell"]
# Parameters (papermill replaces this cell in `lesionscan study`). To try another
# setting in class, put it in `overrides`, e.g. overrides = {"epochs": 3}; every
# parameter is listed by `lesionscan profiles --show smoke`.
profile = "smoke"
artifacts_dir = "../artifacts"
data_dir = None
overrides = {}
run_dir = None  # set by `lesionscan study` (its run folder until it finishes); None: ARTIFACTS/PROFILE

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from lesionscan.analysis import reported, resampling, wording
from lesionscan.figures.performance import interval_comparison, metric_comparison, reliability_diagram
from lesionscan.model import networks
from lesionscan.study import experiments, results
from lesionscan.study.results import MAIN_MODELS
from lesionscan.study.run_folder import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)
p = run.parameters
metrics = {name: run.read_metrics(name) for name in MAIN_MODELS}
predictions = {name: run.read_predictions(name) for name in MAIN_MODELS}
intervals = {name: resampling.bootstrap_metrics(predictions[name], **p.bootstrap) for name in MAIN_MODELS}

# %% tags=["remove-input"]
display(Markdown(experiments.provenance_text(run)))

# %% [markdown]
# ## Our two models, with 95 % intervals

# %% tags=["remove-input"]
table = run.save(results.MODEL_COMPARISON, experiments.interval_table(intervals, metrics))
display(table.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% [markdown]
# ## Does soft attention beat the baseline?
#
# Both models predicted the same test images, so the comparison is paired:
# a bootstrap of the difference in balanced accuracy (the same resampled
# images for both models) and McNemar's test on the images exactly one of
# the two got right.

# %% tags=["remove-input"]
paired = resampling.paired_bootstrap(predictions["baseline"], predictions["soft_attention"], "balanced_accuracy",
                                     **p.bootstrap)
mcnemar = resampling.mcnemar(predictions["baseline"], predictions["soft_attention"])
sa_verdict = wording.model_comparison_verdict(paired, mcnemar, "baseline", "soft-attention model")
run.save(results.SA_VS_BASELINE, {"paired_bootstrap": paired, "mcnemar": mcnemar, "verdict": sa_verdict})
display(Markdown(f"**{sa_verdict}**"))

# %% [markdown]
# ## The report's numbers beside ours
#
# `report` is what the Deep-Lesion Scan report claims (section given);
# `ours` is this run, with its 95 % interval. The report gives some numbers
# twice with different values; each is listed.

# %% tags=["remove-input"]
claims = run.save(results.REPORT_COMPARISON, reported.comparison_with_intervals(metrics, intervals))
display(claims.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Each number the report claims (marker) against our value and its 95 % interval.", "name": "fig-report-comparison"}}
run.save(results.REPORT_COMPARISON_FIGURE, interval_comparison(claims))

# %% [markdown]
# ## Finding melanoma
#
# A screening tool is judged by how many melanomas it finds at a tolerable
# rate of false alarms. For each model: the highest melanoma sensitivity at a
# threshold on the melanoma probability that keeps specificity (melanoma
# against every other class) at 80 % and at 90 %, with 95 % intervals. The
# thresholds are chosen on the test set itself, so these are best cases.

# %% tags=["remove-input"]
display(run.save(results.MELANOMA_SENSITIVITY, resampling.melanoma_table(predictions, intervals))
        .style.hide(axis="index").format(precision=3, na_rep="–"))

# %% [markdown]
# ## Calibration
#
# Label smoothing makes a model less confident; how far its confidence
# matches its accuracy is measured by the expected calibration error (ECE).

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Reliability diagram: accuracy against confidence per bin for both models; the diagonal is perfect calibration.", "name": "fig-reliability"}}
run.save(results.RELIABILITY, reliability_diagram(
    {name: resampling.reliability_table(predictions[name]) for name in MAIN_MODELS}))

# %% [markdown]
# ## Ablation: what each part of the model does
#
# The report's ablation names multi-scale feature fusion and class-specific
# attention refinement without defining them; the methods page defines our
# versions, and the attention layer of the public code this study descends
# from is trained too. All are tested on the same test images as the two
# main models; how they are trained depends on the run's ablation mode. The
# parameter counts are computed for this run's input size.

# %% tags=["remove-input"]
display(Markdown(experiments.ablation_mode_text(run)))

# %% tags=["remove-input"]
display(run.save(results.MODEL_PARAMETERS, networks.parameter_counts(p.pipeline.image_size, p.model))
        .style.hide(axis="index").format(thousands=","))

# %% tags=["hide-cell"]
variant_results = experiments.variants(run)

# %% tags=["remove-input"]
variant_intervals = {name: resampling.bootstrap_metrics(pred, **p.bootstrap)
                     for name, (_, pred) in variant_results.items()}
variant_table = run.save(results.ABLATION, experiments.interval_table(
    variant_intervals, {name: m for name, (m, _) in variant_results.items()}))
display(variant_table.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "The model variants side by side, trained and tested under the same protocol and seed.", "name": "fig-ablation"}}
run.save(results.ABLATION_FIGURE, metric_comparison(
    experiments.comparison_table({name: m for name, (m, _) in variant_results.items()})))

# %% [markdown]
# Each variant's spread across the seeds its mode trains (the run's seed
# alone in the full mode):

# %% tags=["hide-cell"]
variant_seed_results = experiments.variant_seeds(run)

# %% tags=["remove-input"]
display(run.save(results.ABLATION_SEEDS, experiments.seed_table(variant_seed_results)).style.hide(axis="index")
        .format(precision=3, na_rep="–"))

# %% [markdown]
# ## Training seeds
#
# One run says little about a difference between two models: training
# itself is random (initialisation, sampling, augmentation). Each main model
# is trained once per seed in `extra_seeds` besides the run's own.

# %% tags=["hide-cell"]
seed_results = experiments.seeds(run)

# %% tags=["remove-input"]
display(run.save(results.SEEDS, experiments.seed_table(seed_results)).style.hide(axis="index")
        .format(precision=3, na_rep="–"))

# %% [markdown]
# ## Leakage audit
#
# The soft-attention model trained and tested under each split protocol.
# Under `image`, images of one lesion can sit in training and test, so the
# test partly measures recognising a lesion already seen; the difference to
# the run's own protocol is how much that inflates each metric. Two things
# besides leakage differ between the rows: the test sets (see `test images`),
# and training, which stops early on each protocol's own validation subset
# (`epochs` gives how long each model trained).

# %% tags=["hide-cell"]
leakage_results = experiments.leakage(run)

# %% tags=["remove-input"]
display(run.save(results.LEAKAGE_AUDIT, experiments.leakage_table(leakage_results, reference=p.split.protocol,
                                                                   **p.bootstrap))
        .style.hide(axis="index").format(precision=3, na_rep="–"))

# %% [markdown]
# ## Where each model came from
#
# Every model of this book was either trained in this run or reused from the
# training cache, which keeps a model trained before under the same recipe,
# data, split and code (`lesionscan study --no-cache` trains them all anew).

# %% tags=["remove-input"]
display(run.save(results.TRAINING_SOURCES, experiments.training_table(run)).style.hide(axis="index")
        .format(precision=0, na_rep="–"))
