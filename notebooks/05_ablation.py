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
# This chapter sets the two models of chapters 3 and 4 side by side on the
# same test images, with the score of a classifier that always predicts the
# most frequent class (every accuracy has to beat it to mean anything), and
# then puts the report's claimed numbers beside ours. The report's values are
# read from the package's claims file, never typed here.

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

from lesionscan import evaluate, experiment, plots, report
from lesionscan.run import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides)
metrics = {name: run.read_metrics(name) for name in ("baseline", "soft_attention")}

# %% tags=["remove-input"]
display(Markdown(experiment.provenance_text(run)))

# %% [markdown]
# ## Our two models on the same test images

# %% tags=["remove-input"]
comparison = run.save_table("model_comparison", experiment.comparison_table(metrics))
display(comparison.style.hide(axis="index").format(precision=3, na_rep="–"))

# %% tags=["remove-input"]
run.save_figure("model_comparison", plots.metric_comparison(comparison))

# %% tags=["remove-input"]
display(Markdown(experiment.verdict(metrics)))

# %% [markdown]
# ## The report's numbers beside ours
#
# `report` is what the Deep-Lesion Scan report claims (section given);
# `ours` is this run. The report gives some numbers twice with different
# values; each is listed. Intervals, several seeds and a paired test come
# with the evaluation chapter's next revision.

# %% tags=["remove-input"]
claims = run.save_table("report_comparison", report.comparison(metrics))
display(claims.style.hide(axis="index").format(precision=3, na_rep="–"))
