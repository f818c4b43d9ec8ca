"""Run the whole study: every chapter with papermill, then build the Jupyter Book.

The book is assembled in ``ARTIFACTS/PROFILE/book/`` (a copy of the
project's ``_config.yml``, ``_toc.yml`` and ``book/`` pages plus the chapters
executed in this run), so each profile gets its own book and nothing
generated lands in the source tree.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from lesionscan.core import atomic
from lesionscan.core.errors import ChapterError, LesionScanError, Terminated
from lesionscan.study import experiments, findings, interrupts, preflight, reproducibility, results, run_folder
from lesionscan.study.results import CHAPTERS

REPLACED_SUFFIX = ".replaced"  # the previous complete run, for the moment between two renames
_BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
_BOOK_DIRS = ("book", "_static")
_VERSIONED = ("lesionscan", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "tf-keras-vis",
              "papermill", "jupytext", "jupyter-book", "matplotlib", "seaborn", "pillow")


def project_root() -> Path:
    """The folder with ``notebooks/``, ``book/`` and the book config (a source checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "notebooks").is_dir() or not (root / "_toc.yml").is_file():
        raise LesionScanError(
            f"the chapter notebooks were not found beside the package in {root}: "
            "run the study from a source checkout (pip install -e .)")
    return root


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(root: Path) -> str:
    """The checkout's commit, with ``+dirty`` when it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stage_book(root: Path, stage: Path) -> None:
    """Copy the book's hand-written sources into the staging folder."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in _BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    for name in _BOOK_DIRS:
        if (stage / name).exists():
            shutil.rmtree(stage / name)
        shutil.copytree(root / name, stage / name)
    if (stage / "notebooks").exists():
        shutil.rmtree(stage / "notebooks")
    (stage / "notebooks").mkdir()


def execute_chapter(root: Path, chapter: str, stage: Path, run: run_folder.Run) -> None:
    """Execute one chapter with papermill into the staging folder; raise ChapterError on failure."""
    import jupytext
    import papermill

    source = root / "notebooks" / f"{chapter}.py"
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    unexecuted = stage / "notebooks" / f".{chapter}.input.ipynb"
    jupytext.write(notebook, unexecuted)
    output = stage / "notebooks" / f"{chapter}.ipynb"
    chapter_parameters = {"profile": run.params["profile"], "artifacts_dir": str(run.artifacts),
                          "run_dir": str(run.dir), "data_dir": None, "overrides": {}}
    log = run.log_path(chapter)
    log.parent.mkdir(exist_ok=True)
    try:
        # The kernel's own stderr (TensorFlow's C++ start-up lines, kernel warnings) goes to a
        # log file: the kernel process inherits file descriptor 2 when papermill starts it.
        with _stderr_to(log):
            papermill.execute_notebook(str(unexecuted), str(output), parameters=chapter_parameters,
                                       kernel_name="python3", cwd=str(stage / "notebooks"), progress_bar=False,
                                       stdout_file=sys.stdout, request_save_on_cell_execute=False,
                                       on_cell_start=interrupts.raise_if_pending)
    except papermill.PapermillExecutionError as err:
        raise ChapterError(f"chapter {chapter} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                           f"  the executed notebook with the traceback: {output}\n"
                           f"  the kernel's log: {log}") from None
    finally:
        unexecuted.unlink(missing_ok=True)
    _hide_injected_parameters(output)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Point file descriptor 2 at ``path`` for the duration (child processes inherit it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell so the book does not show it."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    with atomic.atomic_path(path) as tmp:
        nbformat.write(notebook, tmp)


def page_results(stage: Path) -> dict[str, results.Result]:
    """The run results the hand-written pages show (``:file: ../tables/NAME.csv``), each checked to be declared.

    A page may show a table only through the catalogue: a path that names no
    declared result is a :class:`ChapterError` here, before the build.
    """
    found = {}
    for page in sorted((stage / "book").glob("*.md")):
        for relative in re.findall(r":file:\s*\.\./(tables/[\w.-]+)", page.read_text()):
            result = results.by_path(relative)
            if result is None:
                raise ChapterError(f"{page.name} shows {relative}, which is no declared result of the study "
                                   "(lesionscan/study/results.py)")
            found[relative] = result
    return found


def build_book(stage: Path, output_dir: Path, warnings_as_errors: bool = True) -> Path:
    """Run ``jupyter-book build``; return the path of ``index.html``.

    The run's tables that hand-written pages show (the methods page shows the
    model parameters chapter 5 computes) are copied beside the pages first;
    each must be a declared result written by this run.
    """
    if (stage / "tables").exists():
        shutil.rmtree(stage / "tables")
    for relative, result in page_results(stage).items():
        source = output_dir / relative
        if not source.exists():
            raise result.missing(source)
        (stage / "tables").mkdir(exist_ok=True)
        shutil.copy2(source, stage / relative)
    executable = Path(sys.executable).parent / "jupyter-book"
    program = str(executable) if executable.exists() else (shutil.which("jupyter-book") or "jupyter-book")
    cmd = [program, "build", str(stage), "--path-output", str(output_dir)]
    if warnings_as_errors:
        cmd += ["-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ChapterError("jupyter-book build failed:\n" + (result.stdout[-4000:] + result.stderr[-4000:]))
    index = output_dir / "_build" / "html" / "index.html"  # jupyter-book's layout under --path-output
    if not index.exists():
        raise ChapterError(f"jupyter-book build finished but {index} is missing")
    return index


def run_study(profile: str = "smoke", data_dir: str | None = None, artifacts: str = "artifacts",
              overrides=(), chapters=CHAPTERS, build: bool = True) -> Path:
    """Run ``chapters`` for ``profile`` and build the book; return ``index.html``'s path.

    Nothing is written before every check that needs no training has passed
    (``preflight``). The run is written to ``ARTIFACTS/PROFILE.incomplete``
    and replaces ``ARTIFACTS/PROFILE`` only when it has finished: a run that
    fails or is interrupted (Ctrl-C, SIGTERM) leaves the last complete run and
    its book as they were, and its own folder marked ``failed`` or
    ``interrupted`` in its manifest, with the chapter and the reason. One
    study at a time per artifacts folder (``preflight.StudyLock``).
    """
    root = project_root()
    _, artifacts_dir = preflight.check_before_writing(profile, artifacts, data_dir, overrides)
    with preflight.StudyLock(artifacts_dir, profile), interrupts.guarded():
        _recover_interrupted_swap(artifacts_dir, profile)
        staging = run_folder.incomplete_dir(artifacts_dir, profile)
        if staging.exists():  # an earlier run that did not finish: never a complete one
            shutil.rmtree(staging)
        index = _run_chapters(root, profile, artifacts_dir, data_dir, overrides, chapters, build, staging)
        final = run_folder.complete_dir(artifacts_dir, profile)
        _replace_complete_run(staging, final)
        return final / index.relative_to(staging)


def _run_chapters(root: Path, profile: str, artifacts: Path, data_dir, overrides, chapters, build: bool,
                  staging: Path) -> Path:
    """Run the chapters (and build the book) in ``staging``; return index.html's path there, or the run folder.

    The manifest records, per chapter, its time, its status and the files it
    wrote; a chapter that ends without writing one of its declared results
    fails the study here, naming the result.
    """
    started, t0 = _now(), time.monotonic()
    run = run_folder.create(profile, artifacts, data_dir, overrides, run_dir=staging)
    manifest = {
        "profile": profile,
        "parameters": run.params,
        "seed": run.parameters.seed,
        "data_dir": run.params["data_dir"],
        "data_checksum": run.data_checksum,
        "versions": package_versions(),
        "commit": git_commit(root),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": reproducibility.machine(),
        "started": started,
        "finished": None,
        "status": "running",
        "chapters": {},
    }
    atomic.write_json(run.manifest_path, manifest)
    stage = run.stage_dir
    _stage_book(root, stage)
    print(f"LesionScan study: profile {profile!r}, written to {run.dir} until it has finished", flush=True)
    before = run.output_files()
    _print_plan(run, chapters)
    manifest["prepared"] = _written(run, before)  # the splits the plan needed, made before the first chapter
    current = "(before the first chapter)"
    try:
        for number, chapter in enumerate(chapters, start=1):
            current = chapter
            print(f"\n=== [{number}/{len(chapters)}] {chapter} ({time.monotonic() - t0:.0f} s so far) ===",
                  flush=True)
            t_chapter, before = time.monotonic(), run.output_files()
            try:
                execute_chapter(root, chapter, stage, run)
                interrupts.raise_if_pending()
                _check_declared(run, chapter)
            except BaseException:
                manifest["chapters"][chapter] = {"seconds": round(time.monotonic() - t_chapter, 1),
                                                 "status": "failed", "wrote": _written(run, before)}
                raise
            seconds = round(time.monotonic() - t_chapter, 1)
            manifest["chapters"][chapter] = {"seconds": seconds, "status": "ok", "wrote": _written(run, before)}
            atomic.write_json(run.manifest_path, manifest)
            print(f"=== {chapter} done in {seconds:.0f} s ===", flush=True)
        manifest["models"] = trained_models(run)
        index = None
        if build:
            current = "book build"
            print("\n=== building the book ===", flush=True)
            t_build = time.monotonic()
            _write_generated_pages(root, run, manifest)
            index = build_book(stage, run.dir)
            interrupts.raise_if_pending()
            manifest["chapters"]["book build"] = {"seconds": round(time.monotonic() - t_build, 1), "status": "ok"}
        manifest["status"] = "ok"
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        if interrupted:
            interrupts.handled()
        reason = ("SIGTERM" if isinstance(err, Terminated) else "Ctrl-C") if interrupted else \
            (str(err).strip().splitlines() or [type(err).__name__])[0]
        manifest["status"] = "interrupted" if interrupted else "failed"
        manifest["stopped"] = {"chapter": current, "reason": reason}
        raise
    finally:
        manifest["finished"] = _now()
        manifest["seconds"] = round(time.monotonic() - t0, 1)
        atomic.write_json(run.manifest_path, manifest)
        _print_summary(manifest)
        if manifest["status"] != "ok":
            _print_where_things_are(run, manifest)
    return index if index is not None else run.dir


def _print_where_things_are(run: run_folder.Run, manifest: dict) -> None:
    """After a failed or interrupted run: what stopped, and that the last complete run is untouched."""
    final = run_folder.complete_dir(run.artifacts, manifest["profile"])
    stopped = manifest.get("stopped", {})
    print(f"\nThis run {manifest['status']} in {stopped.get('chapter')} ({stopped.get('reason')}). Its outputs stay in "
          f"{run.dir}, marked {manifest['status']} in its manifest.json; the next study replaces them.", flush=True)
    if (final / run_folder.PARAMS_FILE).exists():
        print(f"The last complete run is untouched: {final}"
              + (f" (book: {final / '_build' / 'html' / 'index.html'})"
                 if (final / "_build" / "html" / "index.html").exists() else ""), flush=True)


def _replace_complete_run(staging: Path, final: Path) -> None:
    """Make the finished run in ``staging`` the complete run ``final``: two renames, then the old one goes."""
    old = final.with_name(final.name + REPLACED_SUFFIX)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    if old.exists():
        shutil.rmtree(old)


def _recover_interrupted_swap(artifacts: Path, profile: str) -> None:
    """A study stopped between :func:`_replace_complete_run`'s two renames: put the complete run back first."""
    final = run_folder.complete_dir(artifacts, profile)
    old = final.with_name(final.name + REPLACED_SUFFIX)
    if old.exists() and not final.exists():
        os.rename(old, final)


def _print_plan(run: run_folder.Run, chapters) -> None:
    """The chapters and the trainings this study will run, and which trainings the cache already holds."""
    plan = {name: recipe for name, recipe in experiments.planned_trainings(run).items()
            if results.trained_by(name) in chapters}
    print(f"Chapters ({len(chapters)}): {', '.join(chapters)}")
    if not plan:
        return
    lines = []
    for name, recipe in plan.items():
        entry = experiments.cached_entry(run, recipe)
        status = (f"cached: trained {entry.created} in {entry.seconds:.0f} s" if entry is not None
                  else "to train" + ("" if recipe.train.training_cache else " (cache off)"))
        lines.append(f"  {name:<34} {results.trained_by(name):<18} {status}")
    cached = sum("cached:" in line for line in lines)
    print(f"Trainings ({len(plan)}, {cached} in the training cache):", *lines, sep="\n", flush=True)


def trained_models(run: run_folder.Run) -> dict[str, dict]:
    """Per trained model of this run: kind, seed, protocol and whether it was trained here or reused (and when)."""
    return {name: {"model": m.get("model"), "seed": m.get("seed"), "split_protocol": m.get("split_protocol"),
                   **m["training"]} for name, m in run.trained_metrics().items()}


def _written(run: run_folder.Run, before: dict[str, tuple[int, int]]) -> list[str]:
    """Files under the run folder that are new or changed since ``before`` (relative paths, sorted)."""
    return sorted(path for path, stamp in run.output_files().items() if before.get(path) != stamp)


def _check_declared(run: run_folder.Run, chapter: str) -> None:
    """Fail when ``chapter`` ended without writing a result it declares (patterns and optional ones aside)."""
    for result in results.declared_by(chapter):
        if not result.is_pattern and not result.optional and not run.path(result).exists():
            raise ChapterError(f"chapter {chapter} finished without writing its declared result "
                               f"{result.relative_path} ({result.what})")


def repository_url(root: Path) -> str | None:
    """The repository URL named in the book's ``_config.yml`` (for the appendix's rerun recipe)."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    return (config.get("repository") or {}).get("url")


def _write_generated_pages(root: Path, run: run_folder.Run, manifest: dict) -> None:
    """Pages written from this run: the front page's findings, the checklist, the appendix and the manifest it links."""
    from lesionscan.study import checklist

    ran = [name for name, info in manifest["chapters"].items() if info["status"] == "ok"]
    findings.write_banner(run, run.generated_page("banner.md"), manifest["data_checksum"], chapters_run=ran)
    findings.write_findings(run, run.generated_page("findings.md"), chapters_run=ran)
    checklist.write_checklist(run, run.generated_page("checklist.md"), chapters_run=ran)
    atomic.write_json(run.generated_page("manifest.json"), manifest)
    reproducibility.write_appendix(manifest, run.generated_page("reproducibility.md"), repository=repository_url(root))


def _print_summary(manifest: dict) -> None:
    print("\nchapter               seconds  status")
    for name, info in manifest["chapters"].items():
        print(f"{name:<20} {info['seconds']:>8.0f}  {info['status']}")
    print(f"{'total':<20} {manifest.get('seconds', 0):>8.0f}  {manifest['status']}", flush=True)
