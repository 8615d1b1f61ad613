"""environment.yml (conda users) and pyproject.toml (pip users) describe the same environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for items in data["project"]["optional-dependencies"].values():
        reqs += [r for r in items if not r.startswith("flywheel-workbench")]
    return dict(_norm(r) for r in reqs)


def _conda() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(_norm(r) for r in pip if not r.startswith("-e"))


def test_conda_and_pip_name_the_same_dependencies():
    py, conda = _pyproject(), _conda()
    assert set(py) == set(conda), f"only in pyproject: {set(py) - set(conda)}; only in environment.yml: {set(conda) - set(py)}"
    assert py == conda, {k: (py[k], conda[k]) for k in py if py[k] != conda[k]}


def test_python_version_matches():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = data["project"]["requires-python"].lstrip(">=")
    assert conda_py.split("=")[1].startswith(minimum)


def test_torch_is_pinned_everywhere():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
    assert _pyproject()["torch"] == "==2.13.0" and _conda()["torch"] == "==2.13.0"
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
