"""The catalogue of declared results: everything a chapter writes, its kind and the chapter that writes it.

Chapters save results and other chapters and the generated pages read them
through these declarations (``run.save(results.REPORT_COMPARISON, table)``,
``run.read(results.REPORT_COMPARISON)``), never by a name typed where it is
used: renaming a result is one edit here, and reading a result that is not on
disk raises :class:`MissingResult` naming the chapter that should have
written it, instead of a page quietly saying "not run". What a profile skips
on purpose (no ablation variants, no leakage protocols, data without lesion
masks) the writing chapter still records, so a missing file always means a
chapter did not run or failed.

Each trained model (the two main models, the ablation variants, extra seeds,
other split protocols) has four results under its name: the saved model, its
training history, its test predictions and its metrics (:data:`TRAINED`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from lesionscan.core.errors import DataError

CHAPTERS = ("01_data", "02_preprocessing", "03_baseline", "04_soft_attention", "05_ablation",
            "06_interpretability", "07_external")
MAIN_MODELS = ("baseline", "soft_attention")

TABLE, STATEMENT, FIGURE, SPLIT = "table", "statement", "figure", "split"
# kind -> (folder under the run, file suffix); a split is a CSV at the run's top level
_LAYOUT = {TABLE: ("tables", ".csv"), STATEMENT: ("metrics", ".json"), FIGURE: ("figures", ".png"), SPLIT: ("", ".csv")}
# what is kept for every trained model: kind -> (folder, file name pattern)
TRAINED = {"model": ("models", "{name}.keras"), "history": ("models", "{name}_history.csv"),
           "predictions": ("predictions", "{name}.csv"), "metrics": ("metrics", "{name}.json")}


class MissingResult(DataError):
    """A declared result is not in the run folder: the chapter that writes it did not run, or failed."""


@dataclass(frozen=True)
class Result:
    """One declared result: ``name`` (may hold ``{model}`` or ``{dx}``), kind, writer, and what it holds.

    ``optional``: the chapter writes it only when the data allow (a table
    against the report's test set on the real data, mask scores where masks
    exist); whether it did is recorded in a result that is always written.
    """

    name: str
    kind: str
    chapter: str
    what: str
    optional: bool = False

    def of(self, **names: str) -> Result:
        """The result for one model or class: ``TRAINING_CURVES.of(model="baseline")``."""
        chapter = trained_by(names["model"]) if "model" in names else self.chapter
        return replace(self, name=self.name.format(**names), chapter=chapter)

    @property
    def relative_path(self) -> str:
        """Where it lives under the run folder, e.g. ``tables/report_comparison.csv``."""
        if "{" in self.name:
            raise ValueError(f"result {self.name!r} is a pattern: name its model or class with .of(...)")
        folder, suffix = _LAYOUT[self.kind]
        return f"{folder}/{self.name}{suffix}" if folder else f"{self.name}{suffix}"

    @property
    def is_pattern(self) -> bool:
        return "{" in self.name

    def missing(self, path) -> MissingResult:
        """The error for this result absent at ``path``."""
        return MissingResult(f"{path} not found: it is written by chapter {self.chapter} ({self.what}); "
                             f"run that chapter first (or the whole study)")


CATALOGUE: list[Result] = []


def _declare(name: str, kind: str, chapter: str, what: str, optional: bool = False) -> Result:
    result = Result(name, kind, chapter, what, optional)
    CATALOGUE.append(result)
    return result


def trained_by(model_name: str) -> str:
    """The chapter that trains model ``model_name``: 3 and 4 the main models, 5 every variant, seed and protocol."""
    return {"baseline": "03_baseline", "soft_attention": "04_soft_attention"}.get(model_name, "05_ablation")


def missing_trained(model_name: str, what: str, path) -> MissingResult:
    """The error for a trained model's file (``what`` in :data:`TRAINED`) absent at ``path``."""
    return MissingResult(f"{path} not found: the {what} of model {model_name!r} is written by chapter "
                         f"{trained_by(model_name)}; run that chapter first (or the whole study)")


def declared_by(chapter: str) -> list[Result]:
    """The results ``chapter`` declares, in catalogue order."""
    return [r for r in CATALOGUE if r.chapter == chapter]


def by_path(relative_path: str) -> Result | None:
    """The declared result stored at ``relative_path`` (e.g. ``tables/model_parameters.csv``), if any."""
    return next((r for r in CATALOGUE if not r.is_pattern and r.relative_path == relative_path), None)


def name_of(relative_path: str) -> str:
    """How the appendix names a file a chapter wrote: the declared result, a trained model's file, or the path."""
    result = by_path(relative_path)
    if result is not None:
        return f"{result.name} ({result.kind})"
    for pattern in (r for r in CATALOGUE if r.is_pattern):
        folder, suffix = _LAYOUT[pattern.kind]
        regex = re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(f"{folder}/{pattern.name}{suffix}"))
        if re.fullmatch(regex, relative_path):
            return f"{Path(relative_path).stem} ({pattern.kind})"
    for what, (folder, file_pattern) in TRAINED.items():
        prefix, _, suffix = file_pattern.partition("{name}")
        name = Path(relative_path).name
        if relative_path.startswith(folder + "/") and name.startswith(prefix) and name.endswith(suffix):
            return f"{name[len(prefix):len(name) - len(suffix)]} ({what})"
    return relative_path


# --- 01_data ---------------------------------------------------------------------------------------------------
CLASS_TABLE = _declare("class_table", TABLE, "01_data", "images per class beside the report's Table 4.1")
IMAGES_PER_LESION = _declare("lesion_image_counts", TABLE, "01_data", "how many lesions have 1, 2, 3... images")
IMAGE_SIZES = _declare("image_sizes", TABLE, "01_data", "image sizes on disk")
CLASS_DISTRIBUTION = _declare("class_distribution", FIGURE, "01_data", "images per class")
METADATA_BY_CLASS = _declare("metadata_by_class", FIGURE, "01_data", "age, sex and body site per class")
SAMPLE_GRID = _declare("sample_grid", FIGURE, "01_data", "example images per class")

# --- 02_preprocessing ------------------------------------------------------------------------------------------
SPLIT_TABLE = _declare("split", SPLIT, "02_preprocessing", "the run's train/validation/test assignment")
SPLIT_SUPPORT = _declare("split_support", TABLE, "02_preprocessing", "images per class and subset")
TEST_SUPPORT_VS_REPORT = _declare("test_support_vs_report", TABLE, "02_preprocessing",
                                  "our test set beside the report's (real data, seed protocol)", optional=True)
SPLIT_SUPPORT_FIGURE = _declare("split_support", FIGURE, "02_preprocessing", "support under each protocol")
SHARED_LESIONS = _declare("leakage", TABLE, "02_preprocessing", "lesions shared between subsets per protocol")
AUGMENTATION_GALLERY = _declare("augmentation_gallery", FIGURE, "02_preprocessing", "augmented copies of an image")
TRAINING_BALANCE = _declare("training_balance", TABLE, "02_preprocessing", "images per class and epoch, weights")

# --- 03_baseline and 04_soft_attention (one of each per main model) --------------------------------------------
MODEL_METRICS = _declare("{model}_metrics", TABLE, "03_baseline, 04_soft_attention", "test metrics of one model")
CLASSIFICATION_REPORT = _declare("{model}_classification_report", TABLE, "03_baseline, 04_soft_attention",
                                 "scikit-learn's classification report")
TRAINING_CURVES = _declare("{model}_training_curves", FIGURE, "03_baseline, 04_soft_attention",
                           "loss and accuracy per epoch")
CONFUSION = _declare("{model}_confusion", FIGURE, "03_baseline, 04_soft_attention", "confusion matrices")
ROC = _declare("{model}_roc", FIGURE, "03_baseline, 04_soft_attention", "one-against-rest ROC curves")

# --- 05_ablation -----------------------------------------------------------------------------------------------
MODEL_COMPARISON = _declare("model_comparison_intervals", TABLE, "05_ablation", "both models with 95 % intervals")
SA_VS_BASELINE = _declare("sa_vs_baseline", STATEMENT, "05_ablation",
                          "paired bootstrap, McNemar's test and the verdict in words")
REPORT_COMPARISON = _declare("report_comparison", TABLE, "05_ablation", "every claim of the report beside ours")
REPORT_COMPARISON_FIGURE = _declare("report_comparison", FIGURE, "05_ablation", "the claims against our intervals")
MELANOMA_SENSITIVITY = _declare("melanoma_sensitivity", TABLE, "05_ablation", "melanoma sensitivity at 80/90 % spec.")
RELIABILITY = _declare("reliability", FIGURE, "05_ablation", "reliability diagram of both models")
MODEL_PARAMETERS = _declare("model_parameters", TABLE, "05_ablation", "parameters of every model kind")
ABLATION = _declare("ablation", TABLE, "05_ablation", "every model variant with intervals")
ABLATION_FIGURE = _declare("ablation", FIGURE, "05_ablation", "the model variants side by side")
ABLATION_SEEDS = _declare("ablation_seed_spread", TABLE, "05_ablation", "each variant's spread across seeds")
SEEDS = _declare("seeds", TABLE, "05_ablation", "spread of each metric across training seeds")
LEAKAGE_AUDIT = _declare("leakage_audit", TABLE, "05_ablation", "the SA model under each split protocol")
TRAINING_SOURCES = _declare("training_sources", TABLE, "05_ablation", "each model trained here or reused, and when")

# --- 06_interpretability ---------------------------------------------------------------------------------------
EXPLANATIONS = _declare("explanations_{dx}", FIGURE, "06_interpretability", "example maps of one true class")
MASK_AGREEMENT_VERDICT = _declare("mask_agreement_verdict", STATEMENT, "06_interpretability",
                                  "whether the maps were scored, and the verdict in words")
MASK_AGREEMENT_SCORES = _declare("mask_agreement_scores", TABLE, "06_interpretability", "every map's scores",
                                 optional=True)
MASK_AGREEMENT = _declare("mask_agreement", TABLE, "06_interpretability", "mean scores with intervals",
                          optional=True)
MASK_AGREEMENT_FIGURE = _declare("mask_agreement", FIGURE, "06_interpretability", "the mean scores",
                                 optional=True)
MASK_AGREEMENT_DIFFERENCES = _declare("mask_agreement_differences", TABLE, "06_interpretability",
                                      "attention against each reference map", optional=True)
MAP_LIKENESS = _declare("map_likeness_to_average", TABLE, "06_interpretability",
                        "how far each method's map is the same for every image", optional=True)

# --- 07_external -----------------------------------------------------------------------------------------------
SUBGROUPS = _declare("subgroups", TABLE, "07_external",
                     "both models by age band, sex, body site and ground-truth type, with intervals")
SUBGROUP_FIGURE = _declare("subgroups", FIGURE, "07_external", "balanced accuracy per subgroup with intervals")
EXTERNAL_STATUS = _declare("external_validation", STATEMENT, "07_external",
                           "whether an external test set was scored, which, and the images it shares with the run")
EXTERNAL_COMPARISON = _declare("external_comparison", TABLE, "07_external",
                               "internal against external test metrics of both models, with intervals",
                               optional=True)
EXTERNAL_PER_CLASS = _declare("external_per_class", TABLE, "07_external",
                              "per-class recall, internal against external", optional=True)
EXTERNAL_PREDICTIONS = _declare("external_predictions", TABLE, "07_external",
                                "both models' predictions on the external images", optional=True)
EXTERNAL_CONFUSION = _declare("external_confusion", FIGURE, "07_external",
                              "confusion matrices on the external test set", optional=True)
EXTERNAL_FIGURE = _declare("external_comparison", FIGURE, "07_external",
                           "internal against external balanced accuracy, with the challenge's best", optional=True)
