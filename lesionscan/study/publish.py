"""Publishing a built book: copy ``_build/html`` to a folder a static host serves, and Colab notebooks.

``lesionscan study --html-dir DIR`` and the book workflow (``.github/workflows/book.yml``)
use these; the study itself never writes outside its run folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from lesionscan.core import atomic
from lesionscan.core.errors import LesionScanError


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


HTML_MARKER = ".lesionscan-html"
"""The file that marks a folder as written by :func:`publish_html` (so a rerun may replace it)."""


def check_html_target(target: str | os.PathLike) -> Path:
    """Refuse a publishing target that exists and is not a previous LesionScan HTML output.

    An empty folder is accepted (there is nothing in it to lose). Returns the target as an
    absolute path; raises :class:`LesionScanError` naming the path otherwise.
    """
    path = Path(target).absolute()
    choose = "choose a new folder, an empty one, or one a previous --html-dir wrote"
    if path.is_symlink():  # replacing it would replace the link, not the folder it points to
        raise LesionScanError(f"--html-dir {path} is a symbolic link (to {os.readlink(path)}): refusing to publish "
                              f"through it; choose a folder that is not a link ({choose.removeprefix('choose ')})")
    if path.exists() and not path.is_dir():
        raise LesionScanError(f"--html-dir {path} is a file, not a folder: {choose}")
    if path.is_dir() and any(path.iterdir()) and not (path / HTML_MARKER).is_file():
        raise LesionScanError(
            f"--html-dir {path} exists and is not a LesionScan HTML output (it has no {HTML_MARKER} file): "
            "refusing to replace it; choose a new or empty folder, or one a previous --html-dir wrote")
    return path


def publish_html(html_dir: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy a built book (``_build/html``) to ``target``, replacing a previous copy in one rename.

    The copy is made in a temporary sibling of ``target`` and renamed into place, so
    ``target`` is never half written: a reader sees the old book or the new one. The copy
    gets a marker file (:data:`HTML_MARKER`), by which a later call recognises a folder it
    may replace, and ``.nojekyll``, so static hosts that run Jekyll serve ``_static/``.
    Returns ``target``'s ``index.html``.
    """
    source = Path(html_dir).absolute()
    if not (source / "index.html").is_file():
        raise LesionScanError(f"{source} is not a built book (no index.html): build it first")
    path = check_html_target(target)
    if path.resolve() == source.resolve() or path.resolve() in source.resolve().parents \
            or source.resolve() in path.resolve().parents:
        raise LesionScanError(f"--html-dir {path} overlaps the built book {source}: choose a folder outside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        tmp.rmdir()
        shutil.copytree(source, tmp)
        (tmp / ".nojekyll").touch()
        atomic.write_json(tmp / HTML_MARKER, {"written_by": "lesionscan study --html-dir", "source": str(source),
                                              "published": _now()})
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            if old is not None:
                os.rename(old, path)
                old = None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return path / "index.html"


def export_colab_notebooks(root: Path, out_dir: str | os.PathLike, install: str) -> list[Path]:
    """Write each chapter as ``notebooks/NAME.ipynb`` under ``out_dir``, for Google Colab.

    Colab opens ``.ipynb`` files only, and a fresh Colab machine lacks the package, so each
    notebook starts with a cell that runs ``%pip install INSTALL`` (e.g.
    ``lesionscan @ git+https://github.com/ORG/REPO@BRANCH``). The jupytext sources in
    ``notebooks/`` stay the only copy in the repository; the book workflow publishes these
    to the branch that the Colab launch buttons open.
    """
    import jupytext
    import nbformat

    out = Path(out_dir) / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted((root / "notebooks").glob("*.py")):
        notebook = jupytext.read(source)
        notebook.metadata.pop("jupytext", None)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        install_cell = nbformat.v4.new_code_cell(
            "# Google Colab: install LesionScan (a few minutes the first time).\n"
            f"%pip install --quiet \"{install}\"",
            metadata={"tags": ["colab-install"]})
        notebook.cells.insert(0, install_cell)
        target = out / f"{source.stem}.ipynb"
        with atomic.atomic_path(target) as tmp:
            nbformat.write(notebook, tmp)
        written.append(target)
    atomic.write_text(Path(out_dir) / "README.md",
                      "# LesionScan chapters for Google Colab\n\n"
                      "Generated from the jupytext sources `notebooks/*.py` by the book workflow; do not edit here.\n"
                      f"Each notebook first installs `{install}`.\n")
    return written
