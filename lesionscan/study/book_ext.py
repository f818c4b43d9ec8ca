"""A Sphinx extension for the book: launch buttons that open the repository's chapter sources,
and pages without repeated inline scripts.

The chapters live in the repository as jupytext percent-format ``notebooks/NAME.py``; the
book shows ``notebooks/NAME.ipynb`` files that exist only in a run's staging folder. The
theme's launch buttons point at ``notebooks/NAME.ipynb`` in the repository, which is not
there. This extension rewrites them on the chapter pages:

* Binder opens ``notebooks/NAME.py``: Binder installs ``environment.yml``, which has
  jupytext, and jupytext's contents manager opens a percent-format ``.py`` as a notebook.
* Colab opens only ``.ipynb`` files, so its button points at ``notebooks/NAME.ipynb`` on
  the branch ``lesionscan_colab_branch`` (default ``colab``), which the book workflow
  writes with :func:`lesionscan.publish.export_colab_notebooks`.

Configuration (``sphinx: config:`` in ``_config.yml``): ``lesionscan_jupytext_dirs``
(folders whose notebooks are jupytext sources; default ``["notebooks"]``),
``lesionscan_jupytext_suffix`` (default ``.py``), ``lesionscan_colab_branch``.
"""

from __future__ import annotations

from typing import Any

_LAUNCH_GROUP = "launch-buttons"


def rewrite_launch_urls(pagename: str, buttons: list[dict], *, binder_url: str, colab_url: str,
                        branch: str, colab_branch: str, suffix: str = ".py") -> None:
    """Point the Binder and Colab buttons of one chapter page at the files that exist."""
    notebook = f"{pagename}.ipynb"
    for button in buttons:
        url = button.get("url", "")
        if binder_url and url.startswith(binder_url.rstrip("/") + "/") and url.endswith("/" + notebook):
            button["url"] = url[: -len(notebook)] + pagename + suffix
        elif colab_url and url.startswith(colab_url.rstrip("/") + "/") and colab_branch:
            button["url"] = url.replace(f"/blob/{branch}/{notebook}", f"/blob/{colab_branch}/{notebook}")


def unique_scripts(scripts: list) -> list:
    """The page's scripts without repeats (first one kept).

    Inline scripts (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's
    selector) reach every page twice with this Sphinx and jupyter-book; the second
    ``const`` declaration throws a SyntaxError in the browser console.
    """
    seen, kept = set(), []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""),  # an inline script's is None or ""
               tuple(sorted((getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _on_page(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])
    if not any(pagename.startswith(folder.rstrip("/") + "/") for folder in app.config.lesionscan_jupytext_dirs):
        return
    options = app.config.html_theme_options
    launch = options.get("launch_buttons", {}) or {}
    for group in context.get("header_buttons", []):
        if group.get("label") == _LAUNCH_GROUP:
            rewrite_launch_urls(pagename, group.get("buttons", []),
                                binder_url=launch.get("binderhub_url", ""), colab_url=launch.get("colab_url", ""),
                                branch=options.get("repository_branch") or "master",
                                colab_branch=app.config.lesionscan_colab_branch,
                                suffix=app.config.lesionscan_jupytext_suffix)


def setup(app):
    app.add_config_value("lesionscan_jupytext_dirs", ["notebooks"], "html")
    app.add_config_value("lesionscan_jupytext_suffix", ".py", "html")
    app.add_config_value("lesionscan_colab_branch", "colab", "html")
    # sphinx-book-theme adds the launch buttons at priority 501; rewrite them after.
    app.connect("html-page-context", _on_page, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
