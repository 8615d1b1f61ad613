"""JupyterLab as a user opens it: the server starts (as root too, the way `make lab` starts it), serves the stage
notebooks, and a notebook opened in headless Chromium runs on the project's `flywheel` kernel."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_command() -> list[str]:
    """The command `make lab` runs, read from the Makefile (so the test breaks if the two drift apart)."""
    text = (ROOT / "Makefile").read_text()
    line = next(x.strip() for x in text.split("\nlab:", 1)[1].splitlines()[1:] if x.strip())
    assert "jupyter lab" in line and "--allow-root" in line, line
    allow_root = ["--allow-root"] if os.geteuid() == 0 else []
    return [str(Path(sys.executable).parent / "jupyter"), "lab", "--notebook-dir=.", *allow_root]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "HOME": str(home), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config")}
    proc = subprocess.Popen(
        [*_lab_command(), "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         "--ServerApp.open_browser=False"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited: {proc.stdout.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("jupyter lab did not answer within 60 s")
    yield base, token
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _get(base: str, token: str, path: str):
    with urllib.request.urlopen(f"{base}{path}?token={token}", timeout=10) as r:
        return json.loads(r.read())


def test_lab_serves_the_notebooks_with_the_project_kernel(lab):
    base, token = lab
    specs = _get(base, token, "/api/kernelspecs")
    assert "flywheel" in specs["kernelspecs"], sorted(specs["kernelspecs"])
    listing = {x["name"] for x in _get(base, token, "/api/contents/notebooks")["content"]}
    assert {"00_data.ipynb", "01_calibrate.ipynb", "taxonomy_lab.ipynb"} <= listing
    nb = _get(base, token, "/api/contents/notebooks/taxonomy_lab.ipynb")
    assert nb["content"]["metadata"]["kernelspec"]["name"] == "flywheel"


def test_a_notebook_opened_in_the_browser_runs_on_the_flywheel_kernel(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token = lab
    scratch = ROOT / "outputs" / f"lab_probe_{secrets.token_hex(4)}.ipynb"
    scratch.parent.mkdir(exist_ok=True)
    scratch.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {}, "outputs": [],
                   "source": "import sys, flywheel_lib\nprint('KERNEL', sys.prefix, flywheel_lib.__name__)"}],
        "metadata": {"kernelspec": {"display_name": "Python (flywheel)", "language": "python", "name": "flywheel"}},
        "nbformat": 4, "nbformat_minor": 5}))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/outputs/{scratch.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
            # the status bar reads "Python (flywheel) | Idle" once the notebook's kernel has started
            page.wait_for_selector(".jp-StatusBar-Widget:has-text('Python (flywheel) | Idle')", timeout=90_000)
            page.click(".jp-Notebook .jp-CodeCell .jp-InputArea-editor")
            page.keyboard.press("Shift+Enter")
            out = page.wait_for_selector(".jp-OutputArea-output:has-text('KERNEL')", timeout=90_000)
            text = out.inner_text()
            kernel_name = page.locator(".jp-Toolbar-kernelName").first.inner_text()
            browser.close()
    finally:
        scratch.unlink(missing_ok=True)
    assert "flywheel_lib" in text and str(Path(sys.prefix)) in text, text
    assert "flywheel" in kernel_name.lower(), kernel_name
    assert not [e for e in errors if "token" not in e.lower()], errors
