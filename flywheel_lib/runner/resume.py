"""Reusing an earlier run: which stages to run again (:func:`_resume_stages`), linking the files its finished
stages wrote into the new run folder (:func:`_reuse`), and sweeping the partial files a killed stage left."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..paths import ARTIFACTS, FIGURES, is_partial
from .manifest import Manifest
from .recipe import Recipe


def _outputs_snapshot(run_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Every finished file under ``artifacts/`` and ``figures/`` with (inode, mtime, size): what a stage wrote is
    what changed across it."""
    out = {}
    for sub in (ARTIFACTS, FIGURES):
        for f in (run_dir / sub).rglob("*"):
            rel = f.relative_to(run_dir)
            if any(is_partial(p) for p in rel.parts) or not f.is_file():
                continue
            st = f.stat()
            out[rel.as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _sweep_partials(run_dir: Path) -> None:
    """Remove what an interrupted or failed stage left half-written (its kernel is gone by now)."""
    for sub in (ARTIFACTS, FIGURES):
        for p in sorted((run_dir / sub).rglob("*"), key=lambda x: -len(x.parts)):
            if is_partial(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _link_tree(src: Path, dst: Path, only: set[str] | None = None, base: Path | None = None) -> None:
    """Hard-link (or copy) every finished file of ``src`` into ``dst`` (those named in ``only``, paths relative to
    ``base``, when given): safe because artifacts are replaced atomically, never rewritten in place."""
    base = base or src
    for f in src.rglob("*"):
        rel = f.relative_to(src)
        if f.is_dir() or any(is_partial(p) for p in rel.parts):
            continue
        if only is not None and f.relative_to(base).as_posix() not in only:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def _same_params(a: Any, b: Any) -> bool:
    def norm(x):
        return json.dumps(x, sort_keys=True, default=str)

    return norm(a) == norm(b)


def _resume_stages(pm: dict[str, Any], r: Recipe, passed: dict[str, dict]) -> list[str]:
    """The stages a resumed run must run: from the first stage the parent did not finish (or ran with other
    parameters) on; the ones before it are reused."""
    done = {s["name"]: s for s in pm.get("stages", []) if s.get("status") in ("succeeded", "reused")}
    for i, stage in enumerate(r.stages):
        if stage not in done or not _same_params(pm.get("params_passed", {}).get(stage), passed[stage]):
            return list(r.stages[i:])
    return []


def _reuse(parent: Path, run_dir: Path, manifest: Manifest, rerun: list[str]) -> list[str]:
    """Bring the parent run's finished stages into ``run_dir``: the files they wrote and their records.

    Files of stages that run again, of a stage that was interrupted or died, and half-written ones stay behind, so
    a stage that runs again starts from what it needs and never writes over a file the parent run owns. A parent
    whose stages did not record their outputs lends every finished file."""
    pm = Manifest.load(parent)
    reused = [s["name"] for s in pm.data["stages"]
              if s["name"] not in rerun and s.get("status") in ("succeeded", "reused")]
    entries = [pm.stage(n) for n in reused]
    only = ({o for e in entries for o in e["outputs"]} if all("outputs" in e for e in entries) else None)
    for sub in (ARTIFACTS, FIGURES):
        if (parent / sub).exists():
            _link_tree(parent / sub, run_dir / sub, only, base=parent)
    for name in reused:
        for rel in (f"metrics/{name}.json", f"notebooks/{name}.ipynb", f"notebooks/{name}.html"):
            if (parent / rel).exists():
                (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(parent / rel, run_dir / rel)
    stages = {s["name"]: s for s in manifest.data["stages"]}
    for key in ("params_passed", "params_in_effect"):
        for name in reused:
            if name in pm.data.get(key, {}):
                manifest.data.setdefault(key, {})[name] = pm.data[key][name]
    for k, v in (pm.data.get("taxonomy") or {}).items():
        manifest.data.setdefault("taxonomy", {}).setdefault(k, v)
    for name in reused:
        old = pm.stage(name)
        entry = {**old, "status": "reused", "reused_from": pm.data["run_id"]}
        if name in stages:
            stages[name].update(entry)
        else:
            manifest.data["stages"].append(entry)
    order = {n: i for i, n in enumerate(pm.data.get("stage_order", []) + manifest.data.get("stage_order", []))}
    manifest.data["stages"].sort(key=lambda s: order.get(s["name"], 99))
    manifest.refresh_records()  # a stage that runs next reads the reused stages' notes from the manifest
    return reused
