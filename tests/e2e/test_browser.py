"""The built book checked in a real browser: every page opened from the file system in headless Chromium.

A page fails on a missing image, a broken internal link (file or #anchor), a console error, or, for a
chapter, fewer figures than it should show or a figure under 100 px wide. A full-page screenshot of each
page of the smoke book is kept under the run's artifacts, RUN_DIR/screenshots/<page>.png.

Needs Debian's ``chromium`` and ``chromium-driver`` (apt-get install chromium chromium-driver).
Without them the tests skip, except under CI (the environment variable CI is set), where they fail:
CI must run them.
"""

import os

import pytest
from PIL import Image

import browser

pytestmark = pytest.mark.slow  # end-to-end: a real browser; the smoke book takes minutes to build


@pytest.fixture(scope="module")
def driver():
    """One headless Chromium for the module; skipped without one, except under CI."""
    why = browser.browser_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser checks, but {why}")
        pytest.skip(why)
    chrome = browser.open_browser()
    yield chrome
    chrome.quit()


def test_checks_fail_on_a_broken_book(driver, tmp_path):
    """Each check catches what it is for, on a hand-made two-page book; a sound link and Sphinx's pages pass."""
    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "theme.html").write_text("<p>not a page</p>")
    (html / "genindex.html").write_text("<p>generated</p>")
    Image.new("RGB", (50, 20), "red").save(html / "small.png")
    (html / "index.html").write_text(
        '<main><img src="missing.png"><a href="notebooks/01_data.html#figs">sound</a>'
        '<a href="notebooks/01_data.html#nope">bad anchor</a><a href="gone.html">gone</a>'
        '<a href="https://example.org/">external, not checked</a></main>')
    (html / "notebooks" / "01_data.html").write_text(
        '<main id="figs"><article><img src="../small.png"></article></main><script>console.error("x")</script>')

    report = browser.check_book(driver, html, tmp_path / "shots")

    assert list(report) == ["index.html", "notebooks/01_data.html"]
    index, chapter = report["index.html"], report["notebooks/01_data.html"]
    assert any(p.startswith("missing image") and p.endswith("/missing.png") for p in index), index
    broken = [p for p in index if p.startswith("broken link")]
    assert len(broken) == 2, index
    assert any(p.endswith("gone.html (no such file)") for p in broken), broken
    assert any(p.endswith("#nope (no #nope in the page)") for p in broken), broken
    assert any(p.startswith("console error") and "missing.png" in p for p in index), index
    assert f"1 figures shown, expected at least {browser.CHAPTER_FIGURES['01_data']}" in chapter, chapter
    assert any(p.endswith("is 50 px wide (< 100)") for p in chapter), chapter
    assert any(p.startswith("console error") and '"x"' in p for p in chapter), chapter
    assert (tmp_path / "shots" / "notebooks" / "01_data.png").exists()


def test_smoke_book_in_the_browser(driver, smoke_run):
    """Every page of the smoke book, as a reader opens it from disk; all problems listed by page."""
    run_dir, index = smoke_run
    report = browser.check_book(driver, index.parent, run_dir / "screenshots")
    assert {f"notebooks/{chapter}.html" for chapter in browser.CHAPTER_FIGURES} <= set(report)
    problems = [f"{page}: {problem}" for page, found in report.items() for problem in found]
    assert not problems, "\n".join(problems)
    assert all((run_dir / "screenshots" / page).with_suffix(".png").exists() for page in report)
