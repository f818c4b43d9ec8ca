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
# # 1. The data
#
# The report trains on HAM10000: 10,015 dermoscopy images of 7,470 skin
# lesions in seven diagnostic classes. This chapter loads the dataset the run
# was given, validates it (every image listed in the metadata must exist and
# decode) and describes it: the class table in the report's Table 4.1 form,
# how many images each lesion has (the reason lesion-level splits matter) and
# a few examples of each class.

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
import pandas as pd
from IPython.display import Markdown, display

from lesionscan.analysis import reported
from lesionscan.data import ham10000
from lesionscan.figures.dataset import class_distribution, metadata_by_class, sample_grid
from lesionscan.study import results
from lesionscan.study.run_folder import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)
check = ham10000.check_report(run.data_dir)
check.raise_for_problems()
dataset = check.frame

# %% tags=["remove-input"]
display(Markdown(
    f"This run uses **{run.data_label}**: {len(dataset):,} images of "
    f"{dataset['lesion_id'].nunique():,} lesions in the {check.layout} layout "
    f"(metadata `{check.metadata.name}`), {check.masks_found:,} of them with a lesion mask "
    f"(profile `{run.parameters.profile}`). Every image listed in the metadata was found and decodes."
    + ("" if not check.warnings else "\n\nThe data check's warnings (none stops the run):\n\n"
       + "\n".join(f"- {warning}" for warning in check.warnings))))

# %% [markdown]
# ## Classes (Table 4.1)
#
# HAM10000 is dominated by melanocytic nevi; every accuracy in this book has to be
# read against that imbalance. The `report` column is the report's Table 4.1
# (the full HAM10000 release), read from the package's claims file.

# %% tags=["remove-input"]
class_table = run.save(results.CLASS_TABLE, reported.class_counts_beside_report(ham10000.class_table(dataset)))
display(class_table.style.hide(axis="index").format({"percent": "{:.1f}"}, na_rep="–"))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Images per class in this run's data (the report's Table 4.1 as a figure).", "name": "fig-class-distribution"}}
run.save(results.CLASS_DISTRIBUTION, class_distribution(class_table))

# %% [markdown]
# ## Images per lesion
#
# Several images often show the same lesion. If two images of one lesion land
# in training and test, the test measures recognition of a lesion already
# seen, not diagnosis of a new one.

# %% tags=["remove-input"]
lesions = run.save(results.IMAGES_PER_LESION, ham10000.lesion_table(dataset))
display(lesions.style.hide(axis="index"))

# %% [markdown]
# ## Image sizes
#
# The pipeline resizes every image to the profile's square input; the sizes
# on disk say how much detail there was to begin with.

# %% tags=["remove-input"]
sizes = pd.DataFrame({"size on disk (W x H px)": list(check.image_sizes), "images": list(check.image_sizes.values())})
display(run.save(results.IMAGE_SIZES, sizes).style.hide(axis="index"))

# %% [markdown]
# ## Who the images come from
#
# Age, sex and body site differ between classes; a model can pick up such
# correlates (a lesion on the face is more likely a keratosis than a
# dermatofibroma) as well as the lesion itself.

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Age, sex and body site per class.", "name": "fig-metadata-by-class"}}
run.save(results.METADATA_BY_CLASS, metadata_by_class(dataset))

# %% [markdown]
# ## Examples per class

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Five images of each class, drawn reproducibly with the run's seed.", "name": "fig-sample-grid"}}
run.save(results.SAMPLE_GRID, sample_grid(ham10000.sample_images(dataset, per_class=5, seed=run.parameters.seed)))
