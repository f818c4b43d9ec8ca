"""Chapters 3 and 4: one model trained, then its curves, metrics, classification report, confusion and ROC.

The two chapters differ only in the model they train and in their prose, so
everything they compute and show lives here once; each chapter is a column
of one-line cells (one per figure, because a figure's caption is its cell's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lesionscan.analysis import evaluation
from lesionscan.figures.performance import confusion_matrix, roc_curves
from lesionscan.figures.training import training_curves
from lesionscan.study import experiments, results
from lesionscan.study.run_folder import Run, open_run


@dataclass
class ModelChapter:
    """One main model's chapter: train it (:meth:`train`), then each method saves and returns one output."""

    run: Run
    kind: str
    result: experiments.Result | None = field(default=None, repr=False)

    @classmethod
    def open(cls, kind: str, profile: str, artifacts_dir: str, data_dir: str | None, overrides: dict,
             run_dir: str | None = None) -> ModelChapter:
        """The chapter of model ``kind`` in the run a chapter's parameters cell names."""
        return cls(open_run(profile, artifacts_dir, data_dir, overrides, run_dir=run_dir), kind)

    def train(self) -> None:
        """Train and score the model under the run's recipe (the test subset is scored once, after training).

        Returns nothing, so the notebook cell shows only training's progress
        lines; the outcome is in :attr:`result`.
        """
        self.result = experiments.train_and_evaluate(self.run, self.run.parameters.recipe(self.kind))

    def _trained(self) -> experiments.Result:
        if self.result is None:
            raise RuntimeError(f"train the {self.kind} model first (ModelChapter.train)")
        return self.result

    def provenance(self) -> str:
        """Which data, initialisation, split and seed, and how long training ran (Markdown)."""
        return experiments.provenance(self.run, self._trained())

    def training_curves(self):
        return self.run.save(results.TRAINING_CURVES.of(model=self.kind), training_curves(self._trained().history))

    def metrics_table(self):
        """Test metrics beside always answering the majority class."""
        table = experiments.comparison_table({self.kind: self._trained().metrics})
        return self.run.save(results.MODEL_METRICS.of(model=self.kind), table).style.hide(axis="index")

    def classification_report(self):
        table = evaluation.classification_report_table(self._trained().predictions)
        return self.run.save(results.CLASSIFICATION_REPORT.of(model=self.kind), table).style.hide(axis="index")

    def confusion(self):
        """Counts and row-normalised shares, side by side."""
        predictions = self._trained().predictions
        figure = confusion_matrix(evaluation.confusion(predictions), evaluation.confusion(predictions, normalize=True))
        return self.run.save(results.CONFUSION.of(model=self.kind), figure)

    def roc(self):
        return self.run.save(results.ROC.of(model=self.kind), roc_curves(self._trained().predictions))
