"""A study checks what it can before writing, runs in a folder of its own, and never destroys the last complete run."""

import json
import subprocess
import sys

import pytest

from lesionscan.core.errors import ChapterError, DataError, LesionScanError, ParameterError, Terminated
from lesionscan.study import interrupts, preflight, run_folder, runner

from factories import folder_state

TINY = ["synthetic_images=200", "synthetic_size=32"]


@pytest.fixture
def complete_run(tmp_path):
    """An artifacts folder whose smoke profile has a complete run: results, manifest and a built book."""
    artifacts = tmp_path / "artifacts"
    final = artifacts / "smoke"
    (final / "_build" / "html").mkdir(parents=True)
    (final / "_build" / "html" / "index.html").write_text("<p>the last complete book</p>")
    (final / "tables").mkdir()
    (final / "tables" / "leakage_audit.csv").write_text("protocol\nseed\n")
    (final / run_folder.PARAMS_FILE).write_text("{}")
    (final / "manifest.json").write_text(json.dumps({"status": "ok"}))
    return artifacts, final


def _fake_chapters(monkeypatch, fail_in=None, error=None):
    """Chapters that write one table each (or raise ``error`` in chapter ``fail_in``) without a kernel."""
    ran = []

    def execute(root, chapter, stage, run):
        ran.append(chapter)
        if chapter == fail_in:
            raise error
        (run.dir / "tables").mkdir(exist_ok=True)
        (run.dir / "tables" / f"{chapter}.csv").write_text("x\n1\n")

    monkeypatch.setattr(runner, "execute_chapter", execute)
    monkeypatch.setattr(runner, "_check_declared", lambda run, chapter: None)
    monkeypatch.setattr(runner, "_print_plan", lambda run, chapters: None)
    return ran


@pytest.mark.parametrize("error, status, reason", [
    (ChapterError("chapter 02_preprocessing failed in cell 3: ValueError: no images"), "failed",
     "chapter 02_preprocessing failed in cell 3: ValueError: no images"),
    (KeyboardInterrupt(), "interrupted", "Ctrl-C"),
    (Terminated(), "interrupted", "SIGTERM"),
])
def test_a_failed_or_interrupted_run_leaves_the_last_complete_run_untouched(monkeypatch, complete_run, capsys,
                                                                          error, status, reason):
    artifacts, final = complete_run
    before = folder_state(final)
    _fake_chapters(monkeypatch, fail_in="02_preprocessing", error=error)
    with pytest.raises(type(error)):
        runner.run_study("smoke", artifacts=str(artifacts), overrides=TINY, chapters=["01_data", "02_preprocessing"],
                         build=False)
    assert folder_state(final) == before
    partial = run_folder.incomplete_dir(artifacts, "smoke")
    manifest = json.loads((partial / "manifest.json").read_text())
    assert manifest["status"] == status and manifest["stopped"] == {"chapter": "02_preprocessing", "reason": reason}
    assert manifest["chapters"]["02_preprocessing"]["status"] == "failed"
    out = capsys.readouterr().out
    assert f"This run {status} in 02_preprocessing" in out and f"The last complete run is untouched: {final}" in out

    # the next run that finishes replaces both: the complete run is its, and no partial folder is left
    _fake_chapters(monkeypatch)
    result = runner.run_study("smoke", artifacts=str(artifacts), overrides=TINY, chapters=["01_data"], build=False)
    assert result == final and not partial.exists()
    assert json.loads((final / "manifest.json").read_text())["status"] == "ok"
    assert (final / "tables" / "01_data.csv").exists() and not (final / "_build").exists()
    assert not final.with_name("smoke" + runner.REPLACED_SUFFIX).exists()


def test_a_swap_stopped_between_its_renames_is_put_back(complete_run):
    artifacts, final = complete_run
    old = final.with_name("smoke" + runner.REPLACED_SUFFIX)
    final.rename(old)
    runner._recover_interrupted_swap(artifacts.resolve(), "smoke")
    assert (final / "_build" / "html" / "index.html").exists() and not old.exists()


@pytest.mark.parametrize("setup, kwargs, error, message", [
    ("file", {"artifacts": "{tmp}/afile"}, ParameterError, r"--artifacts .*afile is a file; expected a folder"),
    ("file", {"artifacts": "{tmp}/afile/sub"}, ParameterError, r"its parent .*afile is a file"),
    (None, {"profile": "cpu"}, ParameterError, "runs on real data: pass --data-dir DIR"),
    (None, {"profile": "cpu", "data_dir": "{tmp}/nowhere"}, DataError, r"--data-dir .*nowhere: not found"),
    ("empty_data", {"profile": "cpu", "data_dir": "{tmp}/data"}, DataError, r"metadata file not found in .*data"),
    (None, {"overrides": ["weights={tmp}/none.h5"]}, ParameterError, r"weights=.*none.h5: no such file"),
    (None, {"overrides": ["epochs=-1"]}, ParameterError, "epochs=-1: expected an integer from 1 to 1000"),
])
def test_every_check_runs_before_anything_is_written(tmp_path, complete_run, setup, kwargs, error, message):
    artifacts, final = complete_run
    before = folder_state(artifacts)
    if setup == "file":
        (tmp_path / "afile").write_text("x")
    if setup == "empty_data":
        (tmp_path / "data").mkdir()
    kwargs = {k: (v.format(tmp=tmp_path) if isinstance(v, str) else [o.format(tmp=tmp_path) for o in v])
              for k, v in kwargs.items()}
    kwargs.setdefault("artifacts", str(artifacts))
    with pytest.raises(error, match=message):
        runner.run_study(**kwargs)
    assert folder_state(artifacts) == before
    assert not run_folder.incomplete_dir(artifacts, kwargs.get("profile", "smoke")).exists()


def test_too_little_disk_space_is_refused_with_the_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1e9})())
    with pytest.raises(LesionScanError, match=r"1.0 GB free, and this run may write 2.\d GB"):
        preflight.check_disk(tmp_path, dict(run_folder.parameters.resolve("smoke"), data_dir=str(tmp_path)))


def test_a_second_study_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    with preflight.StudyLock(tmp_path, "smoke"):
        with pytest.raises(preflight.StudyRunning, match=r"another study is running on .*profile 'smoke', process "
                                                           r"\d+, started"):
            with preflight.StudyLock(tmp_path, "cpu"):
                pass
    with preflight.StudyLock(tmp_path, "cpu"):  # released at the end of the first
        pass


def test_a_crashed_study_does_not_leave_its_lock_behind(tmp_path):
    """A process killed with SIGKILL (no clean-up runs) holds the lock no longer."""
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path; from lesionscan.study import preflight; "
                               "lock = preflight.StudyLock(Path(sys.argv[1]), 'smoke').__enter__(); "
                               "print('locked', flush=True); time.sleep(600)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(preflight.StudyRunning):
            with preflight.StudyLock(tmp_path, "smoke"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with preflight.StudyLock(tmp_path, "smoke"):
        pass


def test_sigterm_during_a_study_raises_terminated_and_the_handlers_are_put_back():
    import os
    import signal
    import time

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Terminated):
        with interrupts.guarded():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode, well before this ends
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    interrupts.raise_if_pending()  # leaving the guard forgets the interrupt: nothing is raised here


class _DroppedWhileInterrupted:
    """An object whose finaliser is where the Ctrl-C lands: Python prints the KeyboardInterrupt and goes on."""

    def __del__(self):
        import signal

        signal.raise_signal(signal.SIGINT)


def test_a_ctrl_c_that_a_finaliser_swallowed_is_raised_at_the_next_check(monkeypatch):
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: ignored.append(report.exc_type))
    with interrupts.guarded():
        _DroppedWhileInterrupted()  # dropped at once; the interrupt is raised inside __del__ and lost there
        assert ignored == [KeyboardInterrupt]  # Python's "Exception ignored in ...": swallowed
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_pending()
        interrupts.handled()
        interrupts.raise_if_pending()  # handled: not raised twice


def test_a_swallowed_ctrl_c_stops_a_chapter_before_its_next_cell(tmp_path, monkeypatch):
    """The hook the runner gives papermill: the kernel runs no further cell and is shut down."""
    import nbformat
    import papermill

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; os.getpid()"),
                                               nbformat.v4.new_code_cell(f"open({str(tmp_path / 'ran')!r}, 'w')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, source)
    started = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: None)

    def first_cell_then_interrupted(cell, cell_index):
        started.append(cell_index)
        if cell_index == 0:
            _DroppedWhileInterrupted()  # the Ctrl-C is swallowed while cell 0 starts
        else:
            interrupts.raise_if_pending()

    with interrupts.guarded(), pytest.raises(KeyboardInterrupt):
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   progress_bar=False, on_cell_start=first_cell_then_interrupted)
    assert started == [0, 1] and not (tmp_path / "ran").exists()  # the second cell never ran
