"""Execute a recipe's stage notebooks with papermill into a new run folder.

``run_recipe("params/demo.yaml")`` checks every parameter against the notebooks first, then runs the stages in
order into ``outputs/runs/<run_id>/``: each executed notebook is kept (a failed one too, and the run is marked
failed with the failing cell named), rendered to HTML, and the run gets ``manifest.json`` and ``index.html``.
With ``from_run`` the artifacts of an earlier run are linked into the new folder and only ``stages`` run again.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..io import file_sha256, text_hash
from ..paths import find_run, progress_path, project_root, resolve_path, runs_dir
from ..progress import PROGRESS_ENV, ProgressTail
from .manifest import Manifest, environment, git_state_async, now
from .params import check_recipe, in_effect
from .recipe import Recipe, RecipeError, load_recipe

__all__ = ["RunResult", "run_recipe", "new_run_id", "find_run", "stage_notebooks", "kernel_for"]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    failed_stage: str | None = None
    failure: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def new_run_id(recipe_name: str, salt: Any = None) -> str:
    """``20261123-101502_demo_3fa9c1``: sortable by time, readable, unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in recipe_name)[:40]
    return f"{stamp}_{safe}_{text_hash(stamp, recipe_name, salt, time.time_ns(), os.getpid(), n=6)}"


def stage_notebooks(stages: list[str], notebook_dir: str | Path = "notebooks") -> dict[str, Path]:
    nd = resolve_path(notebook_dir)
    return {s: nd / f"{s}.ipynb" for s in stages}


def kernel_for(notebook: Path) -> str:
    """The notebook's kernel if installed (``flywheel``, registered by ``make setup``), else ``python3``."""
    import json

    from jupyter_client.kernelspec import find_kernel_specs

    name = json.loads(notebook.read_text()).get("metadata", {}).get("kernelspec", {}).get("name", "python3")
    return name if name in find_kernel_specs() else "python3"


def _kernel_manager_class():
    """Kernels talk over IPC sockets in a private temp folder: nothing on the network, no TCP warning."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            kw.setdefault("ip", str(Path(tempfile.mkdtemp(prefix="flywheel-kernel-")) / "k"))
            super().__init__(**kw)

    return IPCKernelManager


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) every file of ``src`` into ``dst``: safe because artifacts are replaced atomically."""
    for f in src.rglob("*"):
        if f.is_dir():
            continue
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def _reuse(parent: Path, run_dir: Path, manifest: Manifest, rerun: list[str]) -> list[str]:
    """Bring the parent run's artifacts and its other stages' records into ``run_dir``."""
    pm = Manifest.load(parent)
    for sub in ("artifacts", "figures"):
        if (parent / sub).exists():
            _link_tree(parent / sub, run_dir / sub)
    reused = []
    for s in pm.data["stages"]:
        if s["name"] in rerun or s.get("status") not in ("succeeded", "reused"):
            continue
        reused.append(s["name"])
        for rel in (f"metrics/{s['name']}.json", f"notebooks/{s['name']}.ipynb", f"notebooks/{s['name']}.html"):
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
    return reused


def _failure_text(exc: BaseException) -> tuple[str, str | None]:
    """A one-line reason and the failing cell (``cell 5 (In [4])``) from a papermill error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        cell = f"cell {exc.cell_index}" + (f" (In [{exc.exec_count}])" if exc.exec_count else "")
        first = (exc.source or "").strip().splitlines()
        src = f": `{first[0][:80]}`" if first else ""
        return f"{exc.ename}: {exc.evalue}", f"{cell}{src}"
    return f"{type(exc).__name__}: {exc}", None


def run_recipe(
    recipe: str | Path | Recipe,
    *,
    sets: list[str] | None = None,
    stages: list[str] | None = None,
    from_run: str | None = None,
    run_id: str | None = None,
    parent: dict[str, Any] | None = None,
    progress: bool = True,
    render_html: bool = True,
    echo: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``recipe`` (a path or a loaded :class:`Recipe`); see the module docstring."""
    import papermill

    from .report import render_notebook_html, write_index

    echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    r = r.with_overrides(sets or [])
    to_run = list(stages) if stages else list(r.stages)
    unknown = [s for s in to_run if s not in r.stages]
    if unknown:
        raise RecipeError(f"--stages {','.join(unknown)}: not in recipe {r.path or r.name} ({', '.join(r.stages)})")
    notebooks = stage_notebooks(r.stages, r.notebook_dir)
    declared = check_recipe(r, notebooks)  # every key and type, before anything runs
    parent_dir = find_run(from_run) if from_run else None
    if stages and not parent_dir and to_run != r.stages[: len(to_run)]:
        echo(f"note: --stages {','.join(to_run)} without --from: earlier stages' artifacts will be missing")

    root = project_root()
    rid = run_id or new_run_id(r.name, (r.model_dump(), to_run, from_run))
    run_dir = runs_dir() / rid
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=False)
    recipe_file = resolve_path(r.path) if r.path else None
    manifest = Manifest(run_dir, {
        "run_id": rid,
        "recipe": r.name,
        "recipe_path": r.path,
        "recipe_sha256": file_sha256(recipe_file) if recipe_file and recipe_file.exists() else None,
        "description": r.description,
        "status": "running",
        "created_at": now(),
        "finished_at": None,
        "duration_s": None,
        "overrides": list(sets or []),
        "stage_order": list(r.stages),
        "parent": parent or ({"from_run": parent_dir.name} if parent_dir else None),
        "params_passed": {},
        "params_in_effect": {},
        **environment(root, git=False),  # filled in from git_future: a fresh clone's first status takes seconds
        "stages": [{"name": s, "status": "pending"} for s in to_run],
    })
    git_future = git_state_async(root)
    if parent_dir:
        manifest.data["parent"]["reused_stages"] = _reuse(parent_dir, run_dir, manifest, to_run)
    manifest.save()
    (run_dir / "recipe.yaml").write_text(_dump_recipe(r))
    env_before = {k: os.environ.get(k) for k in ("FLYWHEEL_ROOT", "FLYWHEEL_RUNS_DIR", "FLYWHEEL_RUN_ID")}
    os.environ.update(FLYWHEEL_ROOT=str(root), FLYWHEEL_RUNS_DIR=str(runs_dir()), FLYWHEEL_RUN_ID=rid)
    result = RunResult(rid, run_dir, "running")
    t_run = time.time()
    echo(f"run {rid}  ({r.name}: {', '.join(to_run)})\n  folder: {run_dir}")
    try:
        for i, stage in enumerate(to_run, 1):
            entry = manifest.stage(stage)
            passed = {**r.for_stage(stage, set(declared[stage])), "run_dir": str(run_dir)}
            manifest.data["params_passed"][stage] = {k: v for k, v in passed.items() if k != "run_dir"}
            manifest.data["params_in_effect"][stage] = in_effect(passed, declared[stage])
            _record_taxonomy(manifest, passed, declared[stage])
            out_nb = run_dir / "notebooks" / f"{stage}.ipynb"
            entry.update(status="running", started_at=now(), notebook=f"notebooks/{stage}.ipynb")
            manifest.save()
            echo(f"▶ [{i}/{len(to_run)}] {stage}   (elapsed {time.time() - t_run:.0f}s)")
            t0 = time.time()
            ppath = progress_path(run_dir, stage)
            os.environ[PROGRESS_ENV] = str(ppath)  # the kernel inherits it: long loops report here, not in the notebook
            tail = ProgressTail(ppath, echo=echo if progress else (lambda s: None))
            try:
                with tail:
                    papermill.execute_notebook(
                        str(notebooks[stage]), str(out_nb), parameters=passed,
                        kernel_name=kernel_for(notebooks[stage]), progress_bar=progress, cwd=str(root),
                        log_output=False, report_mode=False, kernel_manager_class=_kernel_manager_class(),
                    )
                entry["status"] = "succeeded"
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised as a status
                reason, cell = _failure_text(exc)
                entry.update(status="failed", error=reason, failed_cell=cell)
                if tail.last:
                    entry["last_progress"] = tail.last
                result.failed_stage, result.failure = stage, f"{stage} failed at {cell or 'start'}: {reason}"
                if tail.last:
                    result.failure += f" (last progress: {tail.last})"
            finally:
                os.environ.pop(PROGRESS_ENV, None)
            entry.update(ended_at=now(), duration_s=round(time.time() - t0, 2))
            if render_html and out_nb.exists():
                try:
                    render_notebook_html(out_nb, out_nb.with_suffix(".html"))
                    entry["html"] = f"notebooks/{stage}.html"
                except Exception as exc:  # noqa: BLE001 - a report problem must not hide the result
                    entry["html_error"] = f"{type(exc).__name__}: {exc}"
            manifest.refresh_records()
            if manifest.data.get("git") is None and git_future.done() and git_future.exception() is None:
                manifest.data["git"] = git_future.result()
            manifest.save()
            mark = "✓" if entry["status"] == "succeeded" else "✗"
            echo(f"{mark} {stage} {entry['status']} in {entry['duration_s']:.1f}s")
            if entry["status"] == "failed":
                echo(f"  {result.failure}\n  executed notebook kept: {out_nb}")
                for later in to_run[i:]:
                    manifest.stage(later)["status"] = "skipped"
                break
    except KeyboardInterrupt:
        result.failure = "interrupted"
        for s in manifest.data["stages"]:
            if s["status"] in ("running", "pending"):
                s["status"] = "interrupted" if s["status"] == "running" else "skipped"
        raise
    finally:
        status = "failed" if result.failure else "succeeded"
        try:
            manifest.data["git"] = git_future.result(timeout=300)
        except Exception as exc:  # noqa: BLE001 - the run's result matters more than its git state
            manifest.data["git"] = {"commit": None, "branch": None, "dirty": None, "dirty_error": repr(exc)}
        manifest.data.update(status=status, finished_at=now(), duration_s=round(time.time() - t_run, 2))
        manifest.refresh_records()
        manifest.save()
        write_index(run_dir, manifest.data)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        result.status = status
        result.stages = manifest.data["stages"]
        echo(f"run {rid} {status} in {time.time() - t_run:.0f}s — report: {run_dir / 'index.html'}")
    return result


def _record_taxonomy(manifest: Manifest, passed: dict, declared: dict) -> None:
    """Record the taxonomy version a stage ran with (name@version+content hash)."""
    path = passed.get("taxonomy", declared["taxonomy"].default if "taxonomy" in declared else None)
    if not path:
        return
    try:
        from ..taxonomy import load_taxonomy

        tax = load_taxonomy(path)
        manifest.data.setdefault("taxonomy", {})[str(path)] = tax.version_id
    except Exception as exc:  # noqa: BLE001 - the stage itself will report a bad taxonomy loudly
        manifest.data.setdefault("taxonomy", {})[str(path)] = f"unreadable: {exc}"


def _dump_recipe(r: Recipe) -> str:
    import yaml

    return yaml.safe_dump(r.model_dump(exclude={"path"}), sort_keys=False)
