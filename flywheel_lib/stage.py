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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .io import file_sha256, read_json, read_table, write_json, write_table
from .paths import (
    FIGURES,
    artifact_path,
    find_run,
    latest_run,
    manifest_path,
    project_root,
    record_path,
    resolve_path,
    runs_dir,
)
from .records import check_table

__all__ = ["Stage", "RunView", "open_stage", "open_run", "project_root", "runs_dir", "resolve_path", "latest_run"]


class RunView:
    """A read-only view of a run folder: another cycle's artifacts, records and models.

    A stage reaches an earlier run (its parent cycle) only through this view, with the same checked reads as its
    own artifacts::

        parent = st.parent            # the run named by the stage's parent_run (or None)
        corpus = parent.read("train_sets")
        winner, adapter = parent.deployed_model()
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir).resolve()
        self.artifacts = self.run_dir / "artifacts"

    def __repr__(self) -> str:
        return f"RunView({self.run_dir.name!r})"

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def path(self, name: str, ext: str = "parquet") -> Path:
        """Path of an artifact (``name`` may carry a suffix or a subfolder; ``ext=""`` for a folder)."""
        return artifact_path(self.run_dir, name, ext)

    def exists(self, name: str, ext: str = "parquet") -> bool:
        return self.path(name, ext).exists()

    def _who(self) -> str:
        return f"run {self.run_id}"

    def read(self, name: str, contract: str | None = None) -> pd.DataFrame:
        """Read a table artifact, checked against ``contract``."""
        p = self.path(name)
        if not p.exists():
            raise FileNotFoundError(f"{self._who()}: artifact {name!r} is missing from {self.artifacts} — run the "
                                    "stage that writes it first, or start from a run that has it "
                                    "(flywheel run ... --from RUN_ID)")
        df = read_table(p)
        return check_table(df, contract, str(p)) if contract else df

    def read_json(self, name: str) -> Any:
        return read_json(self.path(name, "json"))

    def records_of(self, stage: str) -> dict:
        """What a stage of this run recorded (``metrics``, ``notes``, ...); empty if it has not run."""
        return read_json(record_path(self.run_dir, stage), default={}) or {}

    @property
    def manifest(self) -> dict:
        return read_json(manifest_path(self.run_dir), default={}) or {}

    def adapter(self, variant: str) -> str:
        """Where ``variant``'s fine-tuned model is: its ``models/<variant>`` folder in this run when present (a run
        started ``--from`` another has the adapters linked in, so it stands alone), else the recorded
        ``model_ref`` of ``finetune.json`` (a remote model id, or a folder of the run that trained it)."""
        local = self.path(f"models/{variant}", ext="")
        if (local / "adapter_config.json").exists():
            return str(local)
        from .training.record import read_finetune

        ft = read_finetune(self)
        if variant not in ft.variants:
            raise KeyError(f"run {self.run_id} fine-tuned no variant {variant!r} (it has {sorted(ft.variants)})")
        return ft.variants[variant].model_ref

    def deployed_model(self) -> tuple[str, str]:
        """``(variant, adapter)`` of the model this run deployed: 05_evaluate's promotion winner."""
        notes = self.records_of("05_evaluate").get("notes") or {}
        promo = notes.get("promotion") or {}
        if not promo.get("winner"):
            raise FileNotFoundError(f"run {self.run_id} has no promotion decision: run its 05_evaluate first")
        if promo["winner"] == "deployed_prev":  # this run kept the model its parent deployed: follow the lineage
            parent = (notes.get("baseline") or {}).get("parent_run")
            if not parent:
                raise FileNotFoundError(f"run {self.run_id} kept 'deployed_prev' but names no parent run")
            return open_run(parent).deployed_model()
        return promo["winner"], self.adapter(promo["winner"])


def open_run(ref: str | os.PathLike) -> RunView:
    """A read-only view of the run ``ref`` names (an id, a unique prefix, ``latest`` or a path)."""
    return RunView(find_run(ref))


class Stage(RunView):
    """One stage's view of a run folder: the run's read-only view, plus what the stage writes and records."""

    def __init__(self, run_dir: str | os.PathLike, name: str):
        super().__init__(run_dir)
        self.name = name
        self.figures = self.run_dir / FIGURES
        self._record_path = record_path(self.run_dir, name)
        self._parent: RunView | None = None
        self.started = time.time()
        for d in (self.artifacts, self.figures):
            d.mkdir(parents=True, exist_ok=True)
        self._record = read_json(self._record_path, default={})
        self._record.setdefault("metrics", {})
        self._record.setdefault("headline", [])
        self._record.setdefault("notes", {})
        self._record.setdefault("inputs", {})
        self._record["opened_at"] = datetime.now(UTC).isoformat()
        self._save()

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, run={self.run_dir.name!r})"

    def _who(self) -> str:
        return self.name

    # --- artifacts -------------------------------------------------------------------------------
    def write(self, name: str, df: pd.DataFrame, contract: str | None = None) -> Path:
        """Write a table artifact atomically, after checking it against ``contract``."""
        if contract:
            check_table(df, contract, f"{self.name} output {name!r}")
        return write_table(self.path(name), df)

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path(name, "json"), obj)

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

    def figure(self, fig, name: str, dpi: int = 110) -> None:
        """Save a matplotlib figure as PNG for the report (the notebook still shows it inline). Returns nothing, so a
        cell that ends with it shows no path of the machine that ran it."""
        out = self.figures / f"{self.name}__{name}.png"
        fig.savefig(out, dpi=dpi, bbox_inches="tight")
        figs = self._record.setdefault("figures", [])
        rel = str(out.relative_to(self.run_dir))
        if rel not in figs:
            figs.append(rel)
        self._save()

    # --- the parent run (the previous cycle) ----------------------------------------------------
    def open_parent(self, ref: str | os.PathLike | None) -> RunView | None:
        """Open the previous cycle's run read-only (None when ``ref`` is empty) and record the link."""
        if not ref:
            self._parent = None
            return None
        self._parent = open_run(ref)
        self.note("parent_run", self._parent.run_id)
        return self._parent

    @property
    def parent(self) -> RunView | None:
        """The run opened by :meth:`open_parent` (or ``open_stage(..., parent_run=...)``), else None."""
        return self._parent

    def view(self) -> RunView:
        """This run, read-only (for library code that reads a run the same way whether it is this one or a parent)."""
        return RunView(self.run_dir)

    @property
    def metrics(self) -> dict:
        return dict(self._record["metrics"])

    def _save(self) -> None:
        write_json(self._record_path, self._record)


def open_stage(run_dir: str | os.PathLike | None, name: str, parent_run: str | os.PathLike | None = None) -> Stage:
    """Open stage ``name`` in ``run_dir``; an empty ``run_dir`` means the newest run (for hand-run notebooks).

    ``parent_run`` (a later cycle) opens the previous cycle's run read-only as ``stage.parent``.
    """
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
    from .quiet import quiet_known_noise

    quiet_known_noise()  # the executed notebook is a report: no known-harmless library chatter in it
    st = Stage(p, name)
    st.open_parent(parent_run)
    return st
