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
# should light up the lesion. This chapter shows those pictures for every
# class, and then measures them: HAM10000 ships a lesion mask for every
# image, so we can score how well each map points at the lesion, over the
# whole test subset, against two maps that know nothing about the image.
#
# Maps: the **soft-attention map** of the attention model (summed over its
# heads; shown on its own feature grid, as an upsampled heatmap and laid over
# the image), and **Grad-CAM** and **Grad-CAM++** (tf-keras-vis) of both
# models, for the attention model computed on its attention-weighted
# features. Every map explains the class the model predicted.

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

from lesionscan.analysis import agreement, wording
from lesionscan.core.classes import CLASSES, label
from lesionscan.figures.explanations import agreement_chart, explanation_panel
from lesionscan.study import experiments, interpretability, results
from lesionscan.study.run_folder import open_run

run = open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir)
p = run.parameters
trained = interpretability.load_models(run)

# %% tags=["remove-input"]
display(Markdown(experiments.provenance_text(run)))

# %% [markdown]
# ## Examples, class by class
#
# For each true class, the attention model's most confident correct
# prediction and its most confident mistake (for actinic keratosis, a
# confusion with melanoma, then with benign keratosis or a naevus, the ones
# the report discusses, when they occur). The image column outlines the
# lesion mask. Each map is scaled to its own range.

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Test images of one true class (named above the figure) with the attention map and Grad-CAM of both models; the dashed line outlines the lesion mask."}}
rows = interpretability.example_rows(run, trained, per_class=p.interpretability.explain_per_class)
for dx in CLASSES:
    class_rows = [row for row in rows if row["true"] == dx]
    if class_rows:
        display(run.save(results.EXPLANATIONS.of(dx=dx), explanation_panel(
            class_rows, styles=interpretability.PANEL_STYLES, title=f"True class: {label(dx)}")))

# %% [markdown]
# ## Do the maps point at the lesion?
#
# Three scores per image, each between 0 and 1: the **pointing game** (does
# the map's maximum fall inside the lesion mask?), the **energy inside the
# mask** (the share of the map's positive mass that lies on the lesion) and
# the **IoU of the top-k pixels** (the map's k highest pixels, k being the
# lesion's area, against the mask). Two reference maps are scored on the same
# images: a **centred Gaussian** (HAM10000 images are taken with the lesion in
# the middle, so a map that ignores the image and looks at the centre already
# scores well) and a **uniform** map (chance). A map that looks at the lesion
# should beat the centre prior, not just chance. Means over the test images
# with a mask, with 95 % bootstrap intervals (images resampled within each
# class).

# %% tags=["hide-cell"]
scores, likeness = interpretability.cached_scores(run, trained)

# %% tags=["remove-input"]
if scores is None:
    no_masks = (f"this dataset has no lesion masks (`{run.data_dir}` has no "
                "`HAM10000_segmentations_lesion_tschandl/`), so the maps cannot be scored")
    run.save(results.MASK_AGREEMENT_VERDICT, {"scored": False, "reason": no_masks, "verdict": None})
    display(Markdown(f"**{wording.capital(no_masks)}.**"))
else:
    run.save(results.MASK_AGREEMENT_SCORES, scores)
    table = run.save(results.MASK_AGREEMENT, agreement.agreement_table(scores, **p.bootstrap))
    display(agreement.summary(table))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Agreement of each map with the lesion masks over the test subset, with 95 % intervals; hatched grey bars are the two reference maps.", "name": "fig-mask-agreement"}}
if scores is not None:
    display(run.save(results.MASK_AGREEMENT_FIGURE, agreement_chart(table)))

# %% [markdown]
# ### Soft attention against the centre prior
#
# The difference in mean score between the attention map and each reference
# map on the same images, with a paired bootstrap interval.

# %% tags=["remove-input"]
if scores is not None:
    differences = [agreement.paired_difference(scores, interpretability.ATTENTION, reference, metric,
                                               **p.bootstrap)
                   for reference in agreement.REFERENCE_METHODS for metric in agreement.METRICS]
    run.save(results.MASK_AGREEMENT_DIFFERENCES, pd.DataFrame(differences))
    display(agreement.differences_summary(differences).style.hide(axis="index"))
    centre = [d for d in differences if d["reference"] == agreement.REFERENCE_METHODS[0]]
    text = wording.map_agreement_verdict(centre, "The soft-attention map")
    run.save(results.MASK_AGREEMENT_VERDICT, {"scored": True, "reason": None, "verdict": text,
                                             "differences": differences})
    display(Markdown(f"**{text}**"))

# %% [markdown]
# ### Does the map depend on the image?
#
# A map can score well or badly without looking at the image at all: a
# fixed pattern, the same for every image, scores whatever that pattern's
# overlap with the typical lesion is. For each method, the correlation of
# each image's map with the average map over all test images: a median near
# 1 means a fixed pattern, lower values a map that moves with the image.

# %% tags=["remove-input"]
if likeness:
    display(run.save(results.MAP_LIKENESS, agreement.likeness_table(likeness))
            .style.hide(axis="index").format(precision=2))

# %% [markdown]
# ### By class
#
# Mean energy inside the mask per true class (the other two scores are in
# the run's `tables/mask_agreement.csv`). Classes with few test images have
# wide intervals.

# %% tags=["remove-input"]
if scores is not None:
    by_class = table[(table["metric"] == "energy_inside") & (table["class"] != "all")]
    display(by_class.pivot(index="method", columns="class", values="mean")
            .reindex(index=list(dict.fromkeys(by_class["method"])),
                     columns=[dx for dx in CLASSES if dx in set(by_class["class"])])
            .rename_axis(index=None, columns=None).style.format(precision=3, na_rep="–"))
