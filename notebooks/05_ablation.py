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

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from lesionscan import experiment, plots, report, stats
from lesionscan.run import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides)
p = run.params
models = ("baseline", "soft_attention")
metrics = {name: run.read_metrics(name) for name in models}
predictions = {name: run.read_predictions(name) for name in models}
intervals = {name: stats.bootstrap_metrics(predictions[name], n_resamples=p["bootstrap_resamples"], seed=p["seed"])
             for name in models}

# %% tags=["remove-input"]
display(Markdown(experiment.provenance_text(run)))

# %% [markdown]
# ## Our two models, with 95 % intervals

# %% tags=["remove-input"]
table = run.save_table("model_comparison_intervals", experiment.interval_table(intervals, metrics))
display(table.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% [markdown]
# ## Does soft attention beat the baseline?
#
# Both models predicted the same test images, so the comparison is paired:
# a bootstrap of the difference in balanced accuracy (the same resampled
# images for both models) and McNemar's test on the images exactly one of
# the two got right.

# %% tags=["remove-input"]
paired = stats.paired_bootstrap(predictions["baseline"], predictions["soft_attention"], "balanced_accuracy",
                                n_resamples=p["bootstrap_resamples"], seed=p["seed"])
mcnemar = stats.mcnemar(predictions["baseline"], predictions["soft_attention"])
run.save_json("sa_vs_baseline", {"paired_bootstrap": paired, "mcnemar": mcnemar})
display(Markdown("**" + stats.verdict(paired, mcnemar, "baseline", "soft-attention model") + "**"))

# %% [markdown]
# ## The report's numbers beside ours
#
# `report` is what the Deep-Lesion Scan report claims (section given);
# `ours` is this run, with its 95 % interval. The report gives some numbers
# twice with different values; each is listed.

# %% tags=["remove-input"]
claims = run.save_table("report_comparison", report.comparison_with_intervals(metrics, intervals))
display(claims.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% tags=["remove-input"]
run.save_figure("report_comparison", plots.interval_comparison(claims))

# %% [markdown]
# ## Calibration
#
# Label smoothing makes a model less confident; how far its confidence
# matches its accuracy is measured by the expected calibration error (ECE).

# %% tags=["remove-input"]
run.save_figure("reliability", plots.reliability_diagram(
    {name: stats.reliability_table(predictions[name]) for name in models}))
