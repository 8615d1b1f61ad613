"""Reports checked as a person sees them: headless Chromium (Debian's) loads them, follows links, renders images."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from flywheel_lib.cli import main
from flywheel_lib.runner import run_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def check_page(browser, path: Path) -> dict:
    """Load a page; every image must render and every relative link must resolve to a file."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    links = page.evaluate("Array.from(document.links).map(a => a.href)")
    title = page.title()
    page.close()
    assert not errors, f"{path}: script errors {errors}"
    for src, complete, width in images:
        assert complete and width > 0, f"{path}: image {src} did not render"
    local = [Path(unquote(urlparse(h).path)) for h in links if h.startswith("file:")]
    for target in local:
        assert target.exists(), f"{path}: link to {target} does not resolve"
    return {"title": title, "images": images, "links": local}


def test_run_index_and_stage_reports_render(runs, browser):
    res = run_recipe("tests/fixtures/recipe_ok.yaml", progress=False)
    assert res.ok
    index = check_page(browser, res.run_dir / "index.html")
    assert res.run_id in index["title"]
    assert len(index["images"]) == 1  # the figure the `use` stage saved
    html_links = [p for p in index["links"] if p.suffix == ".html"]
    assert {p.name for p in html_links} >= {"make.html", "use.html"}
    for p in html_links:
        check_page(browser, p)
    # stage reports hide code by default and show it on one click
    page = browser.new_page()
    page.goto((res.run_dir / "notebooks" / "make.html").as_uri())
    code = page.locator(".jp-CodeCell .jp-Cell-inputWrapper").first
    assert not code.is_visible()
    page.click("#fw-toggle")
    assert code.is_visible()
    page.close()


def test_multi_run_report(runs, browser, tmp_path, capsys):
    a = run_recipe("tests/fixtures/recipe_ok.yaml", progress=False)
    b = run_recipe("tests/fixtures/recipe_ok.yaml", sets=["make.n_rows=7"], progress=False)
    out = tmp_path / "report.html"
    assert main(["report", a.run_id, b.run_id, "-o", str(out)]) == 0
    seen = check_page(browser, out)
    assert len(seen["images"]) == 2
    names = {p.parent.name for p in seen["links"] if p.name == "index.html"}
    assert names == {a.run_id, b.run_id}
    text = out.read_text()
    assert ">4<" in text and ">7<" in text  # headline `rows` of each run, side by side
