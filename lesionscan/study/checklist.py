"""The reporting checklist: a book page listing a published checklist's items and where this run's book answers each.

The checklist is TRIPOD+AI (Collins et al., BMJ 2024;385:e078378), the
reporting guideline for prediction models built with regression or machine
learning: 27 items in 52 parts, kept as package data in
``reference/tripod_ai.csv`` (item, domain, topic, text, answer), the texts
paraphrased from the statement. CLEAR Derm (Daneshjou et al., JAMA Dermatol
2022;158(1):90-96), the dermatology-specific checklist, would fit better, but
its item list could not be had in a form that could be checked item by item,
and a checklist page must not guess its items.

Each item's ``answer`` names a rule here (or, where the answer is the same
for every run, an entry of ``FIXED``), which reads the run and says, for
this run, whether the book answers the item (and where), answers it in part
(and what is missing), does not answer it (and why: a reproduction of a
research report on public or synthetic images, not a model for care), or
skipped it in this run (a chapter that did not run, no external test set).
The statuses come from the run's declared results (``study.results``) and
the chapters that ran, never from a list typed by hand; a result missing
although its chapter ran is an error (:class:`~lesionscan.study.results.MissingResult`),
as on the front page.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from lesionscan.core import atomic
from lesionscan.study import findings, results
from lesionscan.study.results import CHAPTERS, Result
from lesionscan.study.run_folder import Run

CHECKLIST_FILE = "reference/tripod_ai.csv"
NAME = "TRIPOD+AI"
BIB_KEY = "collins2024tripodai"  # references.bib
CITATION = ("Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting clinical "
            "prediction models that use regression or machine learning methods. BMJ 2024;385:e078378. "
            "doi:10.1136/bmj-2023-078378")
OFFICIAL_CHECKLIST = "https://www.tripod-statement.org"
# TRIPOD+AI's sections, in the statement's order (the CSV's ``domain``).
DOMAINS = ("Title", "Abstract", "Introduction", "Methods", "Open science", "Patient and public involvement",
           "Results", "Discussion")

ANSWERED, PARTLY, NOT_BY_STUDY, SKIPPED = ("answered", "partly answered", "not answered by this study",
                                           "skipped in this run")
STATUSES = (ANSWERED, PARTLY, NOT_BY_STUDY, SKIPPED)
# how the summary line counts each status
_COUNTED_AS = {ANSWERED: "answered", PARTLY: "partly", NOT_BY_STUDY: "not by this study",
               SKIPPED: "skipped in this run"}


@dataclass(frozen=True)
class Item:
    """One row of the checklist: ``item`` ("1", "3a", ...), its section, topic, what it asks, and its rule's key."""

    item: str
    domain: str
    topic: str
    text: str
    answer: str


class Answer(NamedTuple):
    """How this run's book stands on one item: one of :data:`STATUSES`, and where or why, in words."""

    status: str
    text: str


def items() -> list[Item]:
    """The checklist's items in order, read from the package's ``reference/tripod_ai.csv``."""
    text = resources.files("lesionscan").joinpath(CHECKLIST_FILE).read_text(encoding="utf-8")
    return [Item(**row) for row in csv.DictReader(io.StringIO(text))]


# --- what a rule can ask of the run ---------------------------------------------------------------------------
class Context:
    """The run and the chapters that ran, with the few facts the rules share (each read once)."""

    def __init__(self, run: Run, chapters_run: Collection[str]):
        self.run = run
        self.chapters_run = frozenset(chapters_run)

    def ran(self, chapter: str) -> bool:
        return chapter in self.chapters_run

    def link(self, chapter: str) -> str:
        """``chapter`` as a link when it ran; by name only when it did not (its page is not in this book)."""
        return chapter_link(chapter) if self.ran(chapter) else f"chapter {int(chapter[:2])}"

    def where(self, chapter: str) -> str:
        """``" (chapter N)"`` when ``chapter`` ran, else nothing: for a place that is one of several."""
        return f" ({chapter_link(chapter)})" if self.ran(chapter) else ""

    @property
    def synthetic(self) -> bool:
        return self.run.is_synthetic

    def require(self, result: Result) -> Path:
        """The path of ``result``, which its chapter (it ran) must have written."""
        path = self.run.path(result)
        if not path.exists():
            raise result.missing(path)
        return path

    @cached_property
    def external(self) -> dict | None:
        """Chapter 7's external-validation statement (``{"ran": bool, ...}``), or None when chapter 7 did not run."""
        if not self.ran("07_external"):
            return None
        status = self.run.read(results.EXTERNAL_STATUS)
        if status.get("ran"):
            self.require(results.EXTERNAL_COMPARISON)
        return status

    @property
    def external_ran(self) -> bool:
        return bool(self.external and self.external.get("ran"))

    def no_external(self) -> str:
        """Why this run has no external test set, in words."""
        if self.external is None:
            return "chapter 7 did not run, so no external test set was scored"
        reason = self.external.get("reason")
        return f"chapter 7 ran; {reason}" if reason else "chapter 7 ran without an external test set"

    @cached_property
    def subgroups(self) -> bool:
        """Whether chapter 7's subgroup table is in this run (it must be, when chapter 7 ran)."""
        if not self.ran(results.SUBGROUPS.chapter):
            return False
        self.require(results.SUBGROUPS)
        return True


def chapter_link(chapter: str) -> str:
    """A Markdown link from a generated page (the book's ``book/`` folder) to a chapter."""
    return f"[chapter {int(chapter[:2])}](../notebooks/{chapter})"


def _page(name: str, label: str) -> str:
    return f"[{label}]({name})"


METHODS, FRONT, APPENDIX, TEACHING = (_page("methods", "methods"), _page("intro", "front page"),
                                      _page("reproducibility", "appendix"), _page("teaching", "teaching page"))


def _skipped(c: Context, chapter: str, what: str) -> Answer:
    return Answer(SKIPPED, f"{what} is in {c.link(chapter)}, which did not run")


# The answers that do not depend on the run (what this study is, whatever the run), by answer key.
FIXED: dict[str, Answer] = {
    "intended_use": Answer(NOT_BY_STUDY, "the study tests a research report's claims; its models are not meant for "
                                         "care, so the book names no target population, place in a care pathway or "
                                         "intended users"),
    "inequalities": Answer(NOT_BY_STUDY, "the book does not discuss known health inequalities; HAM10000 records age, "
                                         "sex and body site but no skin type or ethnicity"),
    "treatments": Answer(NOT_BY_STUDY, "the data record no treatments, and none bears on classifying an image"),
    "outcome_blinding": Answer(NOT_BY_STUDY, "the labels were fixed with the data, before any model of this study "
                                             "existed; the book says nothing more about blinding"),
    "clusters": Answer(NOT_BY_STUDY, "performance is not broken down by the centre or country the images came from"),
    "updating_methods": Answer(NOT_BY_STUDY, "no model is updated or recalibrated after its evaluation"),
    "funding": Answer(NOT_BY_STUDY, "the book does not state funding"),
    "conflicts": Answer(NOT_BY_STUDY, "the book declares no conflicts of interest"),
    "registration": Answer(NOT_BY_STUDY, "the study was not registered, and the book does not say so"),
    "ppi": Answer(NOT_BY_STUDY, "there was no patient or public involvement, and the book does not say so"),
    "cluster_results": Answer(NOT_BY_STUDY, "heterogeneity across centres was not examined"),
    "updating_results": Answer(NOT_BY_STUDY, "no model was updated"),
    "input_quality": Answer(NOT_BY_STUDY, "the models are not meant to be implemented in care"),
    "user_expertise": Answer(NOT_BY_STUDY, "the models are not meant for users in care"),
}

# --- the rules: one per answer key whose answer depends on the run ---------------------------------------------
RULES: dict[str, Callable[[Context], Answer]] = {}


def _rule(key: str):
    def register(function: Callable[[Context], Answer]) -> Callable[[Context], Answer]:
        RULES[key] = function
        return function
    return register


@_rule("title")
def _title(c: Context) -> Answer:
    return Answer(PARTLY, "the book's title and the " + FRONT + " name the models, the data (HAM10000) and the "
                  "seven classes; they do not call the study the development and evaluation of a diagnostic "
                  "prediction model, nor name a target population")


@_rule("abstract")
def _abstract(c: Context) -> Answer:
    return Answer(PARTLY, f"the {FRONT}'s *What this run found* summarises this run's results, written from them; "
                  "there is no abstract in the TRIPOD+AI for Abstracts form")


@_rule("context")
def _context(c: Context) -> Answer:
    return Answer(PARTLY, f"the {FRONT} gives the rationale (testing the Deep-Lesion Scan report's claims) and the "
                  "existing models (the report's, and Datta et al.'s soft attention); it does not describe the "
                  "clinical context of diagnosing skin lesions from dermoscopy")


@_rule("objectives")
def _objectives(c: Context) -> Answer:
    return Answer(ANSWERED, f"the {FRONT}: develop (train) the report's two models and evaluate them on held-out "
                  "test images, beside the report's numbers")


@_rule("data_sources")
def _data_sources(c: Context) -> Answer:
    if c.synthetic:
        text = (f"this run used **synthetic images** generated by `lesionscan` ({METHODS}, *Data*), for development "
                "and evaluation alike; they come from no patients, so they represent no population")
        status = PARTLY
    else:
        text = (f"HAM10000{c.where('01_data')} and the {METHODS} (*Data*); the test set is a split of the same data; "
                "why these data, and how representative they are, is not discussed")
        status = PARTLY
    if c.external_ran:
        text += f"; the external test set is described in {c.link('07_external')}"
    return Answer(status, text)


@_rule("data_dates")
def _data_dates(c: Context) -> Answer:
    if c.synthetic:
        return Answer(NOT_BY_STUDY, "this run used **synthetic images**, which have no collection dates")
    return Answer(NOT_BY_STUDY, "HAM10000's metadata has no dates, and the book gives none")


@_rule("setting")
def _setting(c: Context) -> Answer:
    if c.synthetic:
        return Answer(NOT_BY_STUDY, "this run used **synthetic images**: there is no setting and no centre")
    return Answer(NOT_BY_STUDY, "the book does not describe where and in which care settings HAM10000's images "
                  "were taken")


@_rule("eligibility")
def _eligibility(c: Context) -> Answer:
    if c.synthetic:
        return Answer(PARTLY, f"this run used **synthetic images**: every generated image is used ({METHODS}, "
                      "*Data*); there are no participants to select")
    return Answer(PARTLY, f"every image the metadata lists is used, in the seven classes ({METHODS}, *Data*); the "
                  "data's own inclusion criteria are not restated")


@_rule("preprocessing")
def _preprocessing(c: Context) -> Answer:
    places = f"{METHODS} (*Data*, *Input pipeline*)" + (f", {c.link('01_data')} (validation, image sizes)"
                                                       if c.ran("01_data") else "")
    return Answer(PARTLY, f"{places}; whether pre-processing and checks were alike across sociodemographic groups "
                  "is not examined")


@_rule("outcome")
def _outcome(c: Context) -> Answer:
    if c.synthetic:
        return Answer(PARTLY, f"the seven diagnostic classes{c.where('01_data')}; in this run the labels are the "
                      "classes the **synthetic images** were drawn as, so there is no assessment to describe")
    if c.subgroups:
        return Answer(PARTLY, f"the seven diagnostic classes{c.where('01_data')}, each label established as "
                      f"HAM10000's ground-truth type says (histopathology, follow-up, consensus, confocal "
                      f"microscopy), with performance by ground-truth type in {c.link('07_external')}; whether labels "
                      "were established alike across sociodemographic groups is not examined")
    return Answer(PARTLY, f"the seven diagnostic classes{c.where('01_data')}; how each label was established "
                  f"(HAM10000's ground-truth type) is shown by {c.link('07_external')}, which did not run")


@_rule("outcome_assessors")
def _outcome_assessors(c: Context) -> Answer:
    if c.synthetic:
        return Answer(NOT_BY_STUDY, "the labels of **synthetic images** need no assessors")
    return Answer(NOT_BY_STUDY, "the labels come with HAM10000; the book does not describe who assessed them")


@_rule("predictor_choice")
def _predictor_choice(c: Context) -> Answer:
    return Answer(ANSWERED, f"the model's only input is the image ({METHODS}, *Input pipeline*); age, sex and body "
                  "site are not inputs")


@_rule("predictor_definition")
def _predictor_definition(c: Context) -> Answer:
    size = c.run.parameters.pipeline.image_size
    if c.synthetic:
        return Answer(ANSWERED, f"**synthetic images** drawn by the package ({METHODS}, *Data*), resized to "
                      f"{size} px (*Input pipeline*)")
    return Answer(PARTLY, f"the dermoscopic images, resized to {size} px ({METHODS}, *Input pipeline*"
                  + (f"; their sizes on disk in {c.link('01_data')}" if c.ran("01_data") else "")
                  + "); how they were acquired (dermatoscope, camera, lighting) is not described")


@_rule("predictor_assessors")
def _predictor_assessors(c: Context) -> Answer:
    return Answer(ANSWERED, f"no input needs interpretation: the model reads the image itself ({METHODS}, "
                  "*Input pipeline*)")


@_rule("sample_size")
def _sample_size(c: Context) -> Answer:
    if not c.ran("02_preprocessing"):
        return _skipped(c, "02_preprocessing", "the size of each subset")
    return Answer(PARTLY, f"the data fix the size; images per class and subset in {c.link('02_preprocessing')}"
                  + (f", and the precision they allow as 95 % intervals in {c.link('05_ablation')}"
                     if c.ran("05_ablation") else "")
                  + "; there is no sample-size calculation")


@_rule("missing_data")
def _missing_data(c: Context) -> Answer:
    return Answer(PARTLY, f"an image the metadata lists but that is missing or does not decode stops the run "
                  f"({METHODS}, *Data*); missing ages or sexes reach no model, and how they are treated is not "
                  "discussed")


@_rule("partitioning")
def _partitioning(c: Context) -> Answer:
    places = f"{METHODS} (*Splits*)" + (f" and {c.link('02_preprocessing')} (subsets, lesions shared between "
                                        "them)" if c.ran("02_preprocessing") else "")
    return Answer(ANSWERED, f"{places}: training, validation and test subsets under the run's split protocol "
                  f"(`{c.run.parameters.split.protocol}`); the test subset chooses nothing")


@_rule("predictor_handling")
def _predictor_handling(c: Context) -> Answer:
    return Answer(ANSWERED, f"{METHODS} (*Input pipeline*: resizing, ResNet50 preprocessing, augmentation)"
                  + (f"; augmented examples in {c.link('02_preprocessing')}" if c.ran("02_preprocessing")
                     else ""))


@_rule("model_building")
def _model_building(c: Context) -> Answer:
    chapters = [c.link(ch) for ch in ("03_baseline", "04_soft_attention") if c.ran(ch)]
    return Answer(ANSWERED, f"{METHODS} (*Models*, *Training*)" + (f", {' and '.join(chapters)}" if chapters else "")
                  + f"; this run: {c.run.weights_label}; no hyperparameter search: the profile sets every value "
                  f"(listed in the {APPENDIX}); internal validation on the held-out test subset, scored once after "
                  "training (the validation subset only stops training)")


@_rule("measures")
def _measures(c: Context) -> Answer:
    if not c.ran("05_ablation"):
        return Answer(SKIPPED, f"the measures are defined in the {METHODS} (*Evaluation*); the comparisons, "
                      f"calibration and melanoma sensitivity are in {c.link('05_ablation')}, which did not run "
                      "in this run")
    c.require(results.RELIABILITY)
    return Answer(ANSWERED, f"{METHODS} (*Evaluation*) and {c.link('05_ablation')}: discrimination (balanced "
                  "accuracy, ROC-AUC and more), calibration (expected calibration error, reliability diagram), "
                  "melanoma sensitivity at fixed specificity, and paired comparisons (bootstrap, McNemar's test)")


@_rule("prediction_method")
def _prediction_method(c: Context) -> Answer:
    return Answer(ANSWERED, f"each trained model is saved as a Keras file and predicts with `lesionscan predict` "
                  f"({METHODS}, *What a run records*; the models of this run in the {APPENDIX})")


@_rule("class_imbalance")
def _class_imbalance(c: Context) -> Answer:
    return Answer(ANSWERED, f"{METHODS} (*Input pipeline*)"
                  + (f" and {c.link('02_preprocessing')} (*Class balance during training*)"
                     if c.ran("02_preprocessing") else "")
                  + ": class-balanced sampling and class weights, never both correcting at once; no recalibration "
                  "afterwards" + (f" (calibration is measured in {c.link('05_ablation')})"
                                  if c.ran("05_ablation") else ""))


@_rule("fairness")
def _fairness(c: Context) -> Answer:
    measured = (f"; {c.link('07_external')} measures performance by age, sex and body site"
                if c.subgroups else "")
    return Answer(NOT_BY_STUDY, "no method addresses fairness" + measured)


@_rule("model_output")
def _model_output(c: Context) -> Answer:
    return Answer(ANSWERED, f"probabilities of the seven classes, the most probable class the prediction ({METHODS}, "
                  "*Models*, *Evaluation*)" + (f"; melanoma thresholds at fixed specificity in "
                                               f"{c.link('05_ablation')}" if c.ran("05_ablation") else ""))


@_rule("dev_vs_eval")
def _dev_vs_eval(c: Context) -> Answer:
    internal = (f"the internal test set differs from training only by the split ({METHODS}, *Splits*"
                + (f"; classes per subset in {c.link('02_preprocessing')}" if c.ran("02_preprocessing") else "")
                + ")")
    if c.external_ran:
        return Answer(PARTLY, f"{internal}; the external test set's results beside the internal ones, and the "
                      f"images the two share, in {c.link('07_external')}; how the external set's setting and "
                      "eligibility differ is not described")
    return Answer(PARTLY, f"{internal}; no external test set in this run: {c.no_external()}")


@_rule("ethics")
def _ethics(c: Context) -> Answer:
    data = "**synthetic images**" if c.synthetic else "the public, de-identified HAM10000 release"
    return Answer(NOT_BY_STUDY, f"the book names no ethics committee; this run used {data}")


@_rule("protocol")
def _protocol(c: Context) -> Answer:
    return Answer(PARTLY, f"no protocol was published before the study; the {APPENDIX} gives this run's complete "
                  "protocol (every parameter) and how to rerun it")


@_rule("data_sharing")
def _data_sharing(c: Context) -> Answer:
    if c.synthetic:
        return Answer(ANSWERED, f"this run's **synthetic images** are regenerated from its parameters and seed "
                      f"({APPENDIX}: data, checksum, rerun command)")
    return Answer(ANSWERED, f"HAM10000 is public (`lesionscan data download`); the {APPENDIX} gives the checksum of "
                  "the data this run read")


@_rule("code_sharing")
def _code_sharing(c: Context) -> Answer:
    return Answer(ANSWERED, f"the {APPENDIX}: the commit, the package versions and the commands that rerun this run")


@_rule("flow")
def _flow(c: Context) -> Answer:
    ran = [ch for ch in ("01_data", "02_preprocessing") if c.ran(ch)]
    if not ran:
        return Answer(SKIPPED, "the flow of images is in chapters 1 and 2, neither of which ran in this run")
    places = " and ".join(c.link(ch) for ch in ran)
    status = ANSWERED if len(ran) == 2 else PARTLY
    missing = "" if status == ANSWERED else f" ({'chapter 1' if '01_data' not in ran else 'chapter 2'} did not run)"
    return Answer(status, f"{places}: images per class, images per lesion, images per class in each subset{missing}")


@_rule("characteristics")
def _characteristics(c: Context) -> Answer:
    if not c.ran("01_data"):
        return _skipped(c, "01_data", "the data's characteristics")
    who = ("of the **synthetic images** (generated, not people's)" if c.synthetic else "per class")
    return Answer(PARTLY, f"{c.link('01_data')}: classes, images per lesion, image sizes, and age, sex and body "
                  f"site {who}; no table of missing values and no breakdown by data source"
                  + (f"; the external set in {c.link('07_external')}" if c.external_ran else ""))


@_rule("external_distribution")
def _external_distribution(c: Context) -> Answer:
    if c.external_ran:
        return Answer(PARTLY, f"{c.link('07_external')}: the external test set's metrics beside the internal test "
                      "set's, and the images the two share; a comparison of the two sets' demographics is not among "
                      "the run's results")
    return Answer(SKIPPED, c.no_external())


@_rule("analysis_counts")
def _analysis_counts(c: Context) -> Answer:
    if not c.ran("02_preprocessing"):
        return _skipped(c, "02_preprocessing", "the images per class in each subset")
    return Answer(ANSWERED, f"{c.link('02_preprocessing')}: images per class in training, validation and test, "
                  "and per class and epoch in training"
                  + (f"; test images per protocol in {c.link('05_ablation')} (*Leakage audit*)"
                     if c.ran("05_ablation") else ""))


@_rule("model_specification")
def _model_specification(c: Context) -> Answer:
    return Answer(ANSWERED, f"{METHODS} (*Models*, with equations); every trained model is saved and listed in the "
                  f"{APPENDIX}, and `lesionscan predict` applies it to new images")


@_rule("performance")
def _performance(c: Context) -> Answer:
    if not c.ran("05_ablation"):
        return _skipped(c, "05_ablation", "performance with 95 % intervals")
    c.require(results.MODEL_COMPARISON)
    text = f"95 % bootstrap intervals for both models in {c.link('05_ablation')}"
    if c.external_ran:
        text += f"; on the external test set in {c.link('07_external')}"
    if c.subgroups:
        return Answer(ANSWERED, f"{text}; by age band, sex, body site and ground-truth type, with intervals, in "
                      f"{c.link('07_external')}")
    return Answer(PARTLY, f"{text}; subgroup results skipped in this run ({c.link('07_external')} did not run)")


@_rule("interpretation")
def _interpretation(c: Context) -> Answer:
    if not c.ran("05_ablation"):
        return _skipped(c, "05_ablation", "the comparison of the two models")
    c.run.read(results.SA_VS_BASELINE)
    text = f"the {FRONT} and {c.link('05_ablation')} set the result against the report's claims"
    if c.ran("06_interpretability"):
        maps = c.run.read(results.MASK_AGREEMENT_VERDICT)
        text += (f"; {c.link('06_interpretability')} scores the attention maps against the lesion masks"
                 if maps["scored"] else f"; the attention maps were not scored against masks: {maps['reason']}")
    return Answer(PARTLY, text + "; fairness is not discussed")


@_rule("limitations")
def _limitations(c: Context) -> Answer:
    if c.synthetic:
        return Answer(PARTLY, f"every chapter names the data and initialisation behind its numbers; this run used "
                      f"**synthetic images**, so its numbers show that the software works and say nothing about the "
                      f"report's claims ({FRONT}); there is no discussion of limitations")
    return Answer(PARTLY, f"every chapter and the {FRONT} name the data, initialisation and resolution behind the "
                  "numbers and what they limit; there is no discussion of limitations")


@_rule("next_steps")
def _next_steps(c: Context) -> Answer:
    text = f"the {TEACHING}'s exercises are next experiments within this setup"
    if c.external_ran:
        text += f"; {c.link('07_external')} tests the models on an external test set"
    return Answer(PARTLY, text + "; applicability to care is not discussed")


# --- the page ------------------------------------------------------------------------------------------------------
def answers(run: Run, chapters_run: Collection[str] = CHAPTERS) -> list[tuple[Item, Answer]]:
    """Every item of the checklist with this run's answer."""
    context = Context(run, chapters_run)
    return [(item, FIXED[item.answer] if item.answer in FIXED else RULES[item.answer](context))
            for item in items()]


def summary(answered: list[tuple[Item, Answer]]) -> str:
    """One line: how many items are answered, partly, not by this study, skipped in this run."""
    counts = {status: sum(answer.status == status for _, answer in answered) for status in STATUSES}
    first, *rest = STATUSES
    return (f"{counts[first]} of {len(answered)} {_COUNTED_AS[first]}, "
            + ", ".join(f"{counts[status]} {_COUNTED_AS[status]}" for status in rest))


def _cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def checklist_markdown(run: Run, chapters_run: Collection[str] = CHAPTERS) -> str:
    """The page (MyST Markdown) for one run; ``chapters_run`` are the chapters this run executed."""
    answered = answers(run, chapters_run)
    lines = [
        f"# Reporting checklist: {NAME}",
        "",
        f"Written by `lesionscan study` from this run's results. For each item of the {NAME} reporting guideline "
        f"{{cite:p}}`{BIB_KEY}` it says where this book answers it, what is missing where it answers only part, why "
        "this study does not answer it, or that this run skipped it (a chapter that did not run, no external test "
        "set).",
        "",
        f"*{findings.data_description(run)}*",
        "",
        f"*Items paraphrased from {NAME}: {CITATION}. The exact wording is in the official checklist "
        f"({OFFICIAL_CHECKLIST}); its 27 items have 52 parts, one row each.* CLEAR Derm (Daneshjou et al., JAMA "
        "Dermatology 2022;158(1):90-96), the checklist for image-based AI in dermatology, would fit this study "
        f"better, but its item list could not be had in a form we could check item by item, so this page uses "
        f"{NAME}, which covers any diagnostic model built with machine learning, rather than guess.",
        "",
        f"**{summary(answered)}.**",
        "",
        "| item | domain | what the checklist asks | where this book answers it |",
        "| --- | --- | --- | --- |",
    ]
    for item, answer in answered:
        lines.append(f"| {item.item} | {_cell(item.domain)} | **{_cell(item.topic)}**: {_cell(item.text)} | "
                     f"**{answer.status}**: {_cell(answer.text)}. |")
    return "\n".join(lines + [""])


def write_checklist(run: Run, path: str | os.PathLike, chapters_run: Collection[str] = CHAPTERS) -> Path:
    """Write the page to ``path`` (atomically: built in full first, so a failure leaves the old page as it was)."""
    return atomic.write_text(Path(path), checklist_markdown(run, chapters_run))
