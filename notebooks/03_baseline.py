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
# # 3. Baseline: ResNet50
#
# The report's baseline is ResNet50 with global average pooling, dropout and a dense softmax layer with L2 regularisation. It is trained as the soft-attention model is, so the only difference between chapters 3 and 4 is the attention module.
#
# Training follows the report: label smoothing 0.1, class weights, Adam,
# early stopping and learning-rate reduction on the validation loss. With
# ImageNet weights it runs in two phases (backbone frozen, then the last 40 %
# of the backbone unfrozen at a lower rate, batch normalisation kept in
# inference mode); without them (as offline) the whole network trains from
# the start, because a frozen random backbone teaches the head little. The
# test subset is scored once, after training.

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

from lesionscan.study.model_chapter import ModelChapter

chapter = ModelChapter.open("baseline", profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)

# %% tags=["hide-cell"]
chapter.train()

# %% tags=["remove-input"]
display(Markdown(chapter.provenance()))

# %% [markdown]
# ## Training curves

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Baseline: loss and accuracy per epoch on the training and validation subsets.", "name": "fig-baseline-training-curves"}}
chapter.training_curves()

# %% [markdown]
# ## Test metrics

# %% tags=["remove-input"]
display(chapter.metrics_table())

# %% tags=["remove-input"]
display(chapter.classification_report())

# %% [markdown]
# ## Confusion matrix
#
# Rows are the true class, columns the predicted one; counts on the left,
# each row normalised to 1 on the right.

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Baseline: confusion matrix on the test subset, in counts and row-normalised.", "name": "fig-baseline-confusion"}}
chapter.confusion()

# %% [markdown]
# ## ROC curves (one class against the rest)

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Baseline: one-against-rest ROC curve of each class on the test subset, with its AUC.", "name": "fig-baseline-roc"}}
chapter.roc()
