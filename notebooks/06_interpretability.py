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
# # 6. Where do the models look?
#
# The report's case for soft attention rests on pictures: the attention map
# should light up the lesion. Below, for test images the soft-attention model
# got right and wrong: the image, the soft-attention map (summed over heads,
# upsampled from the feature grid) and Grad-CAM of both models (for the
# attention model computed on the attention-weighted features).

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

from lesionscan import experiment, plots
from lesionscan.run import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides)

# %% tags=["remove-input"]
display(Markdown(experiment.provenance_text(run)))

# %% tags=["remove-input"]
rows = experiment.explanation_rows(run, n_images=run.params["explain_images"])
run.save_figure("explanations", plots.explanation_panel(rows))
