"""The run context a stage notebook works in.

A notebook opens its stage once, after the parameters cell::

    st = open_stage(run_dir, "02_judge")
    items = st.read("items", contract="items")
    ...
    st.write("verdicts", verdicts, contract="verdicts")
    st.metric("spend_usd", 0.42, headline=True)
    st.figure(fig, "label_distribution")

Artifacts live in ``<run>/artifacts/``, figures in ``<run>/figures/``, and what a stage records (metrics,
notes, hashes of the input files it read) in ``<run>/metrics/<stage>.json``; the runner folds those into
``manifest.json``. The same calls work when a researcher runs a notebook by hand against an existing run folder.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .io import file_sha256, read_json, read_table, write_json, write_table
from .records import check_table

__all__ = ["Stage", "open_stage", "project_root", "runs_dir", "resolve_path", "latest_run"]


def project_root() -> Path:
    """The workbench checkout: ``$FLYWHEEL_ROOT``, else the nearest parent of the cwd holding ``flywheel_lib/``."""
    env = os.environ.get("FLYWHEEL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "flywheel_lib").is_dir() and (p / "params").is_dir():
            return p
    return Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """Where run folders live: ``$FLYWHEEL_RUNS_DIR``, else ``<root>/outputs/runs``."""
    env = os.environ.get("FLYWHEEL_RUNS_DIR")
    return Path(env).resolve() if env else project_root() / "outputs" / "runs"


def resolve_path(p: str | os.PathLike) -> Path:
    """Resolve a path from a params file: absolute as is, else relative to the project root."""
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else project_root() / p


def latest_run() -> Path | None:
    d = runs_dir()
    runs = sorted(x for x in d.iterdir() if x.is_dir() and (x / "manifest.json").exists()) if d.exists() else []
    return runs[-1] if runs else None


class Stage:
    """One stage's view of a run folder."""

    def __init__(self, run_dir: str | os.PathLike, name: str):
        self.run_dir = Path(run_dir).resolve()
        self.name = name
        self.artifacts = self.run_dir / "artifacts"
        self.figures = self.run_dir / "figures"
        self._record_path = self.run_dir / "metrics" / f"{name}.json"
        self.started = time.time()
        for d in (self.artifacts, self.figures):
            d.mkdir(parents=True, exist_ok=True)
        self._record = read_json(self._record_path, default={})
        self._record.setdefault("metrics", {})
        self._record.setdefault("headline", [])
        self._record.setdefault("notes", {})
        self._record.setdefault("inputs", {})
        self._record["opened_at"] = datetime.now(timezone.utc).isoformat()
        self._save()

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, run={self.run_dir.name!r})"

    # --- artifacts -------------------------------------------------------------------------------
    def path(self, name: str, ext: str = "parquet") -> Path:
        """Path of an artifact in the run folder (``name`` may already carry a suffix or a subfolder)."""
        p = self.artifacts / name
        return p if p.suffix or not ext else p.with_name(f"{p.name}.{ext}")

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def read(self, name: str, contract: str | None = None) -> pd.DataFrame:
        """Read a table artifact written by this or an earlier stage, checked against ``contract``."""
        p = self.path(name)
        if not p.exists():
            raise FileNotFoundError(
                f"{self.name}: artifact {name!r} is missing from {self.artifacts} — run the stage that writes it "
                f"first, or start from a run that has it (flywheel run ... --from RUN_ID)"
            )
        df = read_table(p)
        return check_table(df, contract, str(p)) if contract else df

    def write(self, name: str, df: pd.DataFrame, contract: str | None = None) -> Path:
        """Write a table artifact atomically, after checking it against ``contract``."""
        if contract:
            check_table(df, contract, f"{self.name} output {name!r}")
        return write_table(self.path(name), df)

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path(name, "json"), obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.path(name, "json"))

    # --- records ---------------------------------------------------------------------------------
    def metric(self, key: str, value: Any, headline: bool = False) -> Any:
        """Record a metric (a number or short string); ``headline`` ones go to the run's index and ``flywheel runs``."""
        if hasattr(value, "item"):
            value = value.item()
        self._record["metrics"][key] = value
        if headline and key not in self._record["headline"]:
            self._record["headline"].append(key)
        self._save()
        return value

    def note(self, key: str, obj: Any) -> Any:
        """Record a structured fact in the manifest (a decision, a taxonomy version, a lineage link)."""
        self._record["notes"][key] = obj
        self._save()
        return obj

    def input_file(self, path: str | os.PathLike) -> Path:
        """Declare an input data file: its hash goes into the manifest. Returns the resolved path."""
        p = resolve_path(path)
        if not p.exists():
            raise FileNotFoundError(f"{self.name}: input {path} does not exist (resolved to {p})")
        self._record["inputs"][str(path)] = file_sha256(p)
        self._save()
        return p

    def figure(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as PNG for the report (the notebook still shows it inline)."""
        out = self.figures / f"{self.name}__{name}.png"
        fig.savefig(out, dpi=dpi, bbox_inches="tight")
        figs = self._record.setdefault("figures", [])
        rel = str(out.relative_to(self.run_dir))
        if rel not in figs:
            figs.append(rel)
        self._save()
        return out

    def records_of(self, stage: str) -> dict:
        """What another stage of this run recorded (``metrics``, ``notes``, ...); empty if it has not run."""
        return read_json(self.run_dir / "metrics" / f"{stage}.json", default={}) or {}

    @property
    def metrics(self) -> dict:
        return dict(self._record["metrics"])

    def _save(self) -> None:
        write_json(self._record_path, self._record)


def open_stage(run_dir: str | os.PathLike | None, name: str) -> Stage:
    """Open stage ``name`` in ``run_dir``; an empty ``run_dir`` means the newest run (for hand-run notebooks)."""
    if not run_dir:
        latest = latest_run()
        if latest is None:
            raise FileNotFoundError(
                f"no run_dir given and no run under {runs_dir()}: start one with `flywheel run params/smoke.yaml`"
            )
        run_dir = latest
    p = Path(run_dir)
    if not p.is_absolute() and not p.exists():
        cand = runs_dir() / p
        p = cand if cand.exists() else resolve_path(p)
    if not p.exists():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    return Stage(p, name)
