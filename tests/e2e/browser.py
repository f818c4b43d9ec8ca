"""Checks of a built book in a real (headless) Chromium: what a reader sees, not what the HTML says.

Static checks of the HTML miss images that fail to decode, scripts that throw, and links that
only break once the browser resolves them; so each page is opened from the file system (the book
must work without a server) and inspected there. The helpers take an html folder so that they
can be tried on any built book; tests/e2e/test_browser.py runs them.
"""

import base64
import html.parser
import time
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Sphinx's generated pages and asset folders: not pages of the book.
SKIPPED_PAGES = {"genindex.html", "search.html"}
SKIPPED_DIRS = {"_static", "_sources", "_images", "_downloads"}

# The figures each chapter shows at least (notebooks/<chapter>.html): chapter 5 has the report
# comparison, the reliability diagram and the ablation; chapter 6 one panel per class and the agreement chart.
CHAPTER_FIGURES = {"01_data": 3, "02_preprocessing": 2, "03_baseline": 3,
                   "04_soft_attention": 3, "05_ablation": 3, "06_interpretability": 8}
MIN_FIGURE_WIDTH = 100  # px as rendered; a smaller figure is unreadable

BROKEN_IMAGES_JS = ("return Array.from(document.images)"
                    ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);")
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"
FIGURE_WIDTHS_JS = ("return Array.from(document.querySelectorAll('article img'))"
                    ".filter(i => i.naturalWidth > 0)"
                    ".map(i => [i.getAttribute('src'), i.getBoundingClientRect().width]);")


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None when chromium and chromedriver are installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def open_browser():
    """Headless Chromium through the system chromedriver, so Selenium Manager downloads nothing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages for get_log
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def book_pages(html_dir: Path) -> list[Path]:
    """Every page of the book, relative to html_dir."""
    return sorted(p.relative_to(html_dir) for p in html_dir.rglob("*.html")
                  if p.name not in SKIPPED_PAGES
                  and not SKIPPED_DIRS & set(p.relative_to(html_dir).parts[:-1]))


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.names = set()

    def handle_starttag(self, tag, attrs):
        self.names.update(value for key, value in attrs if key in ("id", "name") and value)


@cache
def anchors(path: Path) -> frozenset[str]:
    """The ids and names a #fragment can point to in an html file (parsed once per file)."""
    parser = _Anchors()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.names)


def broken_link(url: str) -> str | None:
    """Why a file:// link the browser resolved is broken, or None when its target (and anchor) exist."""
    parts = urlsplit(url)
    target = Path(url2pathname(parts.path))
    if not target.is_file():
        return "no such file"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in anchors(target):
        return f"no #{fragment} in the page"
    return None


def check_page(driver, html_dir: Path, page: Path, screenshot: Path | None = None) -> list[str]:
    """Open one page and say what is wrong with it (an empty list when nothing is)."""
    driver.get((html_dir / page).resolve().as_uri())
    for _ in range(100):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    # Lazy images load only once scrolled to; then let them decode.
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
    time.sleep(0.2)
    problems = [f"missing image {src}" for src in driver.execute_script(BROKEN_IMAGES_JS)]

    for url in sorted(set(driver.execute_script(LINKS_JS))):
        if urlsplit(url).scheme == "file" and (why := broken_link(url)):
            problems.append(f"broken link {url} ({why})")

    chapter = page.stem if page.parent.name == "notebooks" else None
    if chapter in CHAPTER_FIGURES:
        figures = driver.execute_script(FIGURE_WIDTHS_JS)
        if len(figures) < CHAPTER_FIGURES[chapter]:
            problems.append(f"{len(figures)} figures shown, expected at least {CHAPTER_FIGURES[chapter]}")
        problems += [f"figure {src} is {width:.0f} px wide (< {MIN_FIGURE_WIDTH})"
                     for src, width in figures if width < MIN_FIGURE_WIDTH]

    problems += [f"console error: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    if screenshot is not None:
        save_full_page(driver, screenshot)
    return problems


def save_full_page(driver, path: Path) -> None:
    """A screenshot of the whole page, not only the 900 px window (Chrome DevTools protocol)."""
    driver.execute_script("window.scrollTo(0, 0);")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_book(driver, html_dir: Path, screenshots: Path | None = None) -> dict[str, list[str]]:
    """The problems of every page of a built book, by page; screenshots saved as <page>.png."""
    report = {}
    for page in book_pages(html_dir):
        shot = screenshots / page.with_suffix(".png") if screenshots else None
        report[str(page)] = check_page(driver, html_dir, page, shot)
    return report
