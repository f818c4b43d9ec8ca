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
# # 2. Splits, augmentation and class balance
#
# The report says it split the data 70/15/15, stratified, after "duplicate
# lesion elimination". Its test set (828 images) is exactly a stratified 15 %
# of the images whose lesion has only one image; all other images train. We
# call that protocol `seed` and take validation from the remaining
# single-image lesions, so that the test set chooses nothing: not the epoch,
# not the learning rate, not the checkpoint. Two more protocols let the
# ablation measure what the choice does: `lesion` (lesion-grouped,
# stratified 70/15/15) and `image` (image-level, which lets one lesion's
# images fall into training and test).

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

from lesionscan.analysis import reported
from lesionscan.core.classes import CLASSES
from lesionscan.data import split
from lesionscan.figures.dataset import augmentation_gallery, split_support
from lesionscan.model import pipeline
from lesionscan.study import results
from lesionscan.study.run_folder import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)
p = run.parameters
dataset = run.dataset
splits = {protocol: run.split_table(protocol) for protocol in split.PROTOCOLS}
chosen = splits[p.split.protocol]
split.write_split(chosen, run.path(results.SPLIT_TABLE))

# %% tags=["remove-input"]
display(Markdown(
    f"This run trains and tests on the **`{p.split.protocol}`** protocol (seed {p.seed}), "
    f"on {run.data_label}."))

# %% [markdown]
# ## Class support per subset

# %% tags=["remove-input"]
support = run.save(results.SPLIT_SUPPORT, split.support_table(chosen).reset_index())
display(support.style.hide(axis="index"))

# %% [markdown]
# The report's test set had 828 images (its classification report's support).
# The `seed` protocol reproduces it class by class on the real HAM10000:

# %% tags=["remove-input"]
if p.split.protocol == "seed" and p.data.source != "synthetic":
    display(run.save(results.TEST_SUPPORT_VS_REPORT, reported.test_support_beside_report(
        split.support_table(chosen))).style.hide(axis="index"))
else:
    display(Markdown(f"*Not shown for this run: it uses {run.data_label} and the "
                     f"`{p.split.protocol}` protocol, so its test set cannot match the report's.*"))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Images per class in the training, validation and test subsets under each split protocol.", "name": "fig-split-support"}}
run.save(results.SPLIT_SUPPORT_FIGURE, split_support({name: split.support_table(s) for name, s in splits.items()}))

# %% [markdown]
# ## Leakage: lesions shared between subsets
#
# A lesion with images in two subsets lets a model recognise rather than
# diagnose. The `seed` and `lesion` protocols must show zero here.

# %% tags=["remove-input"]
import pandas as pd

leakage = pd.concat([split.leakage_table(s).assign(protocol=name) for name, s in splits.items()], ignore_index=True)
leakage = run.save(results.SHARED_LESIONS, leakage[["protocol"] + [c for c in leakage.columns if c != "protocol"]])
display(leakage.style.hide(axis="index"))

# %% [markdown]
# ## Augmentation
#
# Training images are randomly rotated, flipped, zoomed, sheared and
# brightened (the report's list); validation and test images are not. Below:
# one training image and augmented copies of it, at the model's input size.

# %% tags=["remove-input"] mystnb={"figure": {"caption": "One training image and augmented copies of it, made by the training pipeline itself.", "name": "fig-augmentation-gallery"}}
train_paths = chosen.merge(dataset[["image_id", "image_path"]], on="image_id").query("subset == 'train'")
original = pipeline.load_image(train_paths["image_path"].iloc[0], p.pipeline.image_size)
copies = pipeline.augmented_copies(original, n=7, seed=p.seed)
run.save(results.AUGMENTATION_GALLERY, augmentation_gallery(original, copies))

# %% [markdown]
# ## Class balance during training
#
# Minority classes are oversampled (with fresh augmentation each time) and
# the majority class subsampled towards the same number of images per class
# and epoch (`balance_target`); class weights are computed from what an
# epoch then contains, so balancing and weighting never correct twice.

# %% tags=["remove-input"]
balance = run.save(results.TRAINING_BALANCE, pipeline.balance_table(
    train_paths["dx"].map(CLASSES.index).to_numpy(), p.pipeline.balance_target or None))
display(balance.style.hide(axis="index"))
