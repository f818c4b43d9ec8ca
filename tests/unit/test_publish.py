"""Publishing the book: --html-dir copies a built book into place in one rename, and refuses to
replace a folder it did not write. No study runs here: a small fake ``_build/html`` stands in."""

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from lesionscan import cli
from lesionscan.core.errors import LesionScanError
from lesionscan.study import book_ext, publish, runner

from factories import ROOT


def fake_html(folder: Path, text: str = "book v1") -> Path:
    (folder / "_static").mkdir(parents=True)
    (folder / "index.html").write_text(f"<html>{text}</html>")
    (folder / "_static" / "style.css").write_text("body {}")
    (folder / "notebooks").mkdir()
    (folder / "notebooks" / "01_data.html").write_text("<html>chapter</html>")
    return folder


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_publish_into_a_new_folder(tmp_path):
    html = fake_html(tmp_path / "build" / "html")
    target = tmp_path / "site" / "public"
    index = publish.publish_html(html, target)
    assert index == target.absolute() / "index.html" and index.read_text() == "<html>book v1</html>"
    assert (target / "_static" / "style.css").is_file() and (target / "notebooks" / "01_data.html").is_file()
    assert (target / ".nojekyll").is_file()
    marker = json.loads((target / publish.HTML_MARKER).read_text())
    assert marker["source"] == str(html.absolute())
    assert siblings(target) == []  # no temporary folder left beside it


def test_publish_replaces_its_own_previous_output(tmp_path):
    target = tmp_path / "public"
    publish.publish_html(fake_html(tmp_path / "v1", "book v1"), target)
    (target / "stale.html").write_text("from an older build")
    html2 = fake_html(tmp_path / "v2", "book v2")
    publish.publish_html(html2, target)
    assert (target / "index.html").read_text() == "<html>book v2</html>"
    assert not (target / "stale.html").exists()  # replaced, not merged
    assert siblings(target) == ["v1", "v2"]


def test_publish_accepts_an_empty_folder(tmp_path):
    target = tmp_path / "public"
    target.mkdir()
    publish.publish_html(fake_html(tmp_path / "html"), target)
    assert (target / "index.html").is_file()


def test_publish_refuses_a_folder_it_did_not_write(tmp_path):
    target = tmp_path / "docs"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(LesionScanError, match=re.escape(str(target.absolute()))) as err:
        publish.publish_html(fake_html(tmp_path / "html"), target)
    assert "not a LesionScan HTML output" in str(err.value)
    assert sorted(p.name for p in target.iterdir()) == ["thesis.tex"]
    assert siblings(target) == ["html"]


def test_publish_refuses_a_file(tmp_path):
    target = tmp_path / "public"
    target.write_text("a file")
    with pytest.raises(LesionScanError, match="not a folder"):
        publish.publish_html(fake_html(tmp_path / "html"), target)
    assert target.read_text() == "a file"


@pytest.mark.parametrize("points_to", ["folder", "nothing"])
def test_publish_refuses_a_link_saying_it_is_one(tmp_path, points_to):
    real = tmp_path / "real"
    if points_to == "folder":
        real.mkdir()
    target = tmp_path / "public"
    target.symlink_to(real)
    with pytest.raises(LesionScanError) as err:
        publish.check_html_target(target)
    message = str(err.value)
    assert f"--html-dir {target} is a symbolic link (to {real})" in message
    assert "is not a folder" not in message and "choose a folder that is not a link" in message


def test_publish_refusing_a_file_says_what_it_is(tmp_path):
    target = tmp_path / "public"
    target.write_text("a file")
    with pytest.raises(LesionScanError) as err:
        publish.check_html_target(target)
    assert f"--html-dir {target} is a file, not a folder" in str(err.value)


# --- the synthetic generator's advice (lesionscan/data/synthetic.py: its messages point the right way) ----------


def test_synthetic_refusing_an_empty_folder_does_not_advise_an_empty_path(tmp_path):
    from lesionscan.core.errors import ParameterError
    from lesionscan.data import synthetic

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParameterError) as err:
        synthetic.generate(empty, n_images=200, size=64)
    message = str(err.value)
    assert f"{empty} is an empty folder" in message and "choose an empty path" not in message
    assert "remove the folder or choose a path that does not exist yet" in message
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="is a file, not a folder") as err:
        synthetic.generate(tmp_path / "file", n_images=200, size=64)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(ParameterError) as err:
        synthetic.generate(tmp_path / "mine", n_images=200, size=64)
    assert "not a LesionScan synthetic dataset" in str(err.value) and "empty path" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine"]


def test_synthetic_messages_name_the_parameters_of_the_function_called(tmp_path):
    """The CLI checks --images and --size, the study synthetic_images and synthetic_size, before calling
    generate: what reaches its own checks was typed as n_images= or size= in Python."""
    from lesionscan.core.errors import ParameterError
    from lesionscan.data import synthetic

    with pytest.raises(ParameterError, match=r"^n_images=50 is too small: need at least 168"):
        synthetic.generate(tmp_path / "a", n_images=50, size=64)
    with pytest.raises(ParameterError, match=r"^size=20 is too small: need at least 32 px"):
        synthetic.generate(tmp_path / "b", n_images=200, size=20)
    assert not list(tmp_path.iterdir())


def test_publish_refuses_a_folder_without_a_book(tmp_path):
    (tmp_path / "html").mkdir()
    with pytest.raises(LesionScanError, match="no index.html"):
        publish.publish_html(tmp_path / "html", tmp_path / "public")
    assert not (tmp_path / "public").exists()


def test_publish_refuses_a_target_inside_the_book(tmp_path):
    html = fake_html(tmp_path / "html")
    with pytest.raises(LesionScanError, match="overlaps"):
        publish.publish_html(html, html / "public")


def test_a_failed_copy_leaves_the_previous_output_alone(tmp_path, monkeypatch):
    target = tmp_path / "public"
    publish.publish_html(fake_html(tmp_path / "v1", "book v1"), target)
    html2 = fake_html(tmp_path / "v2", "book v2")

    def broken_copy(src, dst, **kwargs):
        Path(dst).mkdir()
        (Path(dst) / "index.html").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(publish.shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        publish.publish_html(html2, target)
    assert (target / "index.html").read_text() == "<html>book v1</html>"
    assert siblings(target) == ["v1", "v2"]


# --- the command line --------------------------------------------------------------------------


def test_cli_publishes_after_the_study(tmp_path, monkeypatch, capsys):
    html = fake_html(tmp_path / "artifacts" / "smoke" / "_build" / "html")
    monkeypatch.setattr(runner, "run_study", lambda **kwargs: html / "index.html")
    target = tmp_path / "public"
    assert cli.main(["study", "--html-dir", str(target)]) == 0
    assert (target / "index.html").is_file()
    assert f"Published: {target.absolute() / 'index.html'}" in capsys.readouterr().out


def test_cli_refuses_a_foreign_folder_before_running_the_study(tmp_path, monkeypatch, capsys):
    def must_not_run(**kwargs):
        raise AssertionError("the study ran although --html-dir was refused")

    monkeypatch.setattr(runner, "run_study", must_not_run)
    target = tmp_path / "docs"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    assert cli.main(["study", "--html-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target.absolute()) in err and "not a LesionScan HTML output" in err


def test_cli_refuses_html_dir_with_no_book(tmp_path, capsys):
    assert cli.main(["study", "--no-book", "--html-dir", str(tmp_path / "public")]) == 2
    assert "--no-book" in capsys.readouterr().err


# --- the book's sources: bibliography, staging, launch buttons, Colab notebooks ----------------


def test_every_citation_in_the_pages_is_in_the_bibliography():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    bib = "\n".join((ROOT / name).read_text() for name in config["bibtex_bibfiles"])
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.M))
    cited = set()
    for page in (ROOT / "book").glob("*.md"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited.update(key.strip() for key in group.split(","))
    assert cited, "no page cites anything"
    assert cited <= keys, f"cited but not in the bibliography: {sorted(cited - keys)}"


def test_the_staged_book_gets_the_bibliography(tmp_path):
    runner._stage_book(ROOT, tmp_path / "stage")
    assert (tmp_path / "stage" / "references.bib").read_text() == (ROOT / "references.bib").read_text()


def test_launch_buttons_point_at_the_repository_sources():
    buttons = [
        {"text": "Binder", "url": "https://mybinder.org/v2/gh/org/repo/main?urlpath=tree/notebooks/01_data.ipynb"},
        {"text": "Colab", "url": "https://colab.research.google.com/github/org/repo/blob/main/notebooks/01_data.ipynb"},
    ]
    book_ext.rewrite_launch_urls("notebooks/01_data", buttons, binder_url="https://mybinder.org",
                                 colab_url="https://colab.research.google.com", branch="main", colab_branch="colab")
    assert buttons[0]["url"] == "https://mybinder.org/v2/gh/org/repo/main?urlpath=tree/notebooks/01_data.py"
    assert buttons[1]["url"] == "https://colab.research.google.com/github/org/repo/blob/colab/notebooks/01_data.ipynb"


def test_colab_notebooks_start_by_installing_the_package(tmp_path):
    install = "lesionscan @ git+https://github.com/org/repo@main"
    written = publish.export_colab_notebooks(ROOT, tmp_path, install)
    assert [p.stem for p in written] == list(runner.CHAPTERS)
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        first = notebook.cells[0]
        assert first.cell_type == "code" and f'%pip install --quiet "{install}"' in first.source
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)


def test_repeated_inline_scripts_are_dropped():
    from sphinx.builders.html._assets import _JavaScript

    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript(None, body=thebe), _JavaScript("_static/a.js"), _JavaScript("", body=thebe),
               _JavaScript("_static/a.js"), _JavaScript("", body="other")]
    kept = book_ext.unique_scripts(scripts)
    assert [(s.filename, s.attributes) for s in kept] == [
        (None, {"body": thebe}), ("_static/a.js", {}), ("", {"body": "other"})]


def test_the_workflows_colab_export_command_runs(tmp_path):
    """The book workflow's one-line Python (module paths drift when the package moves) runs as written."""
    import re
    import subprocess
    import sys

    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    [run] = [step["run"] for step in steps if "Colab" in step.get("name", "")]
    code = re.search(r'python -c "(.*)"', run, flags=re.S).group(1)
    code = code.replace("${{ github.repository }}", "org/repo").replace("${{ github.sha }}", "0" * 40)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "colab" / "notebooks" / "01_data.ipynb").is_file()
