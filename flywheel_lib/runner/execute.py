"""Execute a recipe's stage notebooks with papermill into a new run folder.

``run_recipe("params/demo.yaml")`` checks every parameter against the notebooks first, then runs the stages in
order into ``outputs/runs/<run_id>/``: each executed notebook is kept (a failed one too, and the run is marked
failed with the failing cell named), rendered to HTML, and the run gets ``manifest.json`` and ``index.html``.
With ``from_run`` the files the earlier run's finished stages wrote are linked into the new folder and only
``stages`` run again; without ``stages`` the run resumes: it re-runs the stages the earlier run did not finish (or
whose parameters changed) and every later one, and reuses the rest.

A run owns its status. The manifest records the runner (pid, its start time, host) and a heartbeat file is
refreshed while it runs, so ``flywheel runs`` shows a run whose process was killed as ``dead``. SIGINT (Ctrl-C)
and SIGTERM stop the running stage's kernel (first with an interrupt, so the notebook's own cleanup runs), record
the run and that stage as ``interrupted``, write ``index.html``, and end the process with status 128 + the signal
number (130, 143) through :class:`RunInterrupted`, without a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..io import file_sha256, text_hash
from ..paths import find_run, progress_path, project_root, resolve_path, runs_dir
from ..progress import PROGRESS_ENV, ProgressTail
from ..stages.groups import merge_group
from ..tracking import track_run, tracking_for
from .kernels import (  # noqa: F401 - IPC_PATH_MAX and _kernel_tmp_root re-exported for callers of this module
    INTERRUPT_GRACE_S,
    IPC_PATH_MAX,
    KERNEL_DIR_PREFIX,
    _execute,
    _kernel_manager_class,
    _kernel_tmp_root,
    _signal_kernel,
    _Signals,
    _Stop,
    _sweep_kernel_dirs,
    kernel_for,
)
from .manifest import Heartbeat, Manifest, environment, git_state_async, now, run_state, runner_identity
from .params import check_recipe, in_effect
from .recipe import Recipe, RecipeError, load_recipe
from .resume import _outputs_snapshot, _resume_stages, _reuse, _sweep_partials

__all__ = ["RunResult", "RunInterrupted", "RunPlan", "plan_run", "run_recipe", "new_run_id", "find_run", "stage_notebooks", "kernel_for"]



@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    failed_stage: str | None = None
    failure: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    signal: int | None = None
    """The signal (SIGINT, SIGTERM) that interrupted the run, else None."""

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class RunInterrupted(SystemExit):
    """SIGINT or SIGTERM ended a run: it is recorded as ``interrupted`` (``.result``), and the process exits with
    128 + the signal number (130, 143), without a traceback, unless a caller catches this."""

    def __init__(self, result: RunResult):
        super().__init__(128 + int(result.signal or signal.SIGINT))
        self.result = result


def new_run_id(recipe_name: str, salt: Any = None) -> str:
    """``20261123-101502_demo_3fa9c1``: sortable by time, readable, unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in recipe_name)[:40]
    return f"{stamp}_{safe}_{text_hash(stamp, recipe_name, salt, time.time_ns(), os.getpid(), n=6)}"


def stage_notebooks(stages: list[str], notebook_dir: str | Path = "notebooks") -> dict[str, Path]:
    nd = resolve_path(notebook_dir)
    return {s: nd / f"{s}.ipynb" for s in stages}



def _failure_text(exc: BaseException) -> tuple[str, str | None]:
    """A one-line reason and the failing cell (``cell 5 (In [4])``) from a papermill error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        cell = f"cell {exc.cell_index}" + (f" (In [{exc.exec_count}])" if exc.exec_count else "")
        first = (exc.source or "").strip().splitlines()
        src = f": `{first[0][:80]}`" if first else ""
        return f"{exc.ename}: {exc.evalue}", f"{cell}{src}"
    return f"{type(exc).__name__}: {exc}", None


@dataclass
class RunPlan:
    """What a run will do, checked before anything runs: the recipe with its overrides, the stages to run and their
    notebooks, the parameters each stage is passed (every key and type checked against its notebook), MLflow
    tracking, and the earlier run whose artifacts are reused."""

    recipe: Recipe
    to_run: list[str]
    notebooks: dict[str, Path]
    declared: dict[str, dict]
    passed: dict[str, dict[str, Any]]
    tracking: Any
    from_dir: Path | None = None


def plan_run(recipe: str | Path | Recipe, *, sets: list[str] | None = None, stages: list[str] | None = None,
             from_run: str | None = None, echo: Callable[[str], None] = print) -> RunPlan:
    """The checked plan of a run: raises :class:`RecipeError` naming the key, stage or run at fault."""
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    r = r.with_overrides(sets or [])
    to_run = list(stages) if stages else list(r.stages)
    unknown = [s for s in to_run if s not in r.stages]
    if unknown:
        raise RecipeError(f"--stages {','.join(unknown)}: not in recipe {r.path or r.name} ({', '.join(r.stages)})")
    notebooks = stage_notebooks(r.stages, r.notebook_dir)
    tracking = tracking_for(r)  # MLflow tracking (optional): params.tracking or $MLFLOW_TRACKING_URI, checked here
    declared = check_recipe(tracking.strip(r), notebooks)  # every key and type, before anything runs
    # what each stage is passed; a group given with some of its keys is passed whole (the notebook's other keys)
    passed = {s: {k: merge_group(k, declared[s][k].default, v) for k, v in r.for_stage(s, set(declared[s])).items()
                  if k != "run_dir"} for s in r.stages}
    from_dir = find_run(from_run) if from_run else None
    if from_dir:
        pm = Manifest.load(from_dir).data
        if run_state(pm, from_dir) == "running":
            why = f"runner pid {(pm.get('runner') or {}).get('pid')}"
            raise RecipeError(f"--from {from_run}: run {from_dir.name} is still running ({why}); "
                              "wait for it, or stop it first")
        if not stages:
            to_run = _resume_stages(pm, r, passed)
            if not to_run:
                raise RecipeError(f"--from {from_run}: every stage of run {from_dir.name} succeeded with these "
                                  "parameters; name the ones to run again with --stages")
            echo(f"resuming {from_dir.name}: running {', '.join(to_run)}")
    if stages and not from_dir and to_run != r.stages[: len(to_run)]:
        echo(f"note: --stages {','.join(to_run)} without --from: earlier stages' artifacts will be missing")
    return RunPlan(r, to_run, notebooks, declared, passed, tracking, from_dir)


def _new_manifest(plan: RunPlan, rid: str, run_dir: Path, *, sets: list[str] | None, parent: dict | None) -> Manifest:
    r = plan.recipe
    recipe_file = resolve_path(r.path) if r.path else None
    return Manifest(run_dir, {
        "run_id": rid,
        "recipe": r.name,
        "recipe_path": r.path,
        "recipe_sha256": file_sha256(recipe_file) if recipe_file and recipe_file.exists() else None,
        "description": r.description,
        "status": "running",
        "created_at": now(),
        "finished_at": None,
        "duration_s": None,
        "runner": runner_identity(),
        "overrides": list(sets or []),
        "stage_order": list(r.stages),
        "parent": parent or ({"from_run": plan.from_dir.name} if plan.from_dir else None),
        "params_passed": {},
        "params_in_effect": {},
        **environment(project_root(), git=False),  # filled in from git_future: a fresh clone's first status takes seconds
        "stages": [{"name": s, "status": "pending"} for s in plan.to_run],
    })


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
    """Run ``recipe`` (a path or a loaded :class:`Recipe`): :func:`plan_run`, a new run folder and its manifest,
    each stage executed and recorded in turn, then MLflow tracking where configured; see the module docstring.

    Raises :class:`RunInterrupted` (a ``SystemExit``) after recording a run that SIGINT or SIGTERM interrupted.
    """
    echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    plan = plan_run(recipe, sets=sets, stages=stages, from_run=from_run, echo=echo)
    rid = run_id or new_run_id(plan.recipe.name, (plan.recipe.model_dump(), plan.to_run, from_run))
    run_dir = runs_dir() / rid
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=False)
    manifest = _new_manifest(plan, rid, run_dir, sets=sets, parent=parent)
    git_future = git_state_async(project_root())
    with Heartbeat(run_dir), _Signals() as signals:
        if plan.from_dir:
            manifest.data["parent"]["reused_stages"] = _reuse(plan.from_dir, run_dir, manifest, plan.to_run)
        manifest.save()
        (run_dir / "recipe.yaml").write_text(_dump_recipe(plan.recipe))
        result = _run_stages(plan, manifest, git_future, signals, progress=progress, render_html=render_html,
                             echo=echo)
    track_run(run_dir, plan.tracking, echo=echo)  # optional: logs the final manifest; a failure is noted, never raised
    if result.signal:
        raise RunInterrupted(result)
    return result


@contextmanager
def _run_environment(**values: str):
    """``FLYWHEEL_*`` variables the stage kernels inherit, set for the run and restored after it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute_stage(plan: RunPlan, stage: str, manifest: Manifest, signals: _Signals, result: RunResult, *,
                   progress: bool, echo: Callable[[str], None]) -> Path:
    """Run one stage's notebook into the run folder; its entry in the manifest says how it ended (``result`` too,
    when it did not succeed). Returns the executed notebook's path."""
    import papermill

    root, run_dir, entry = project_root(), manifest.run_dir, manifest.stage(stage)
    passed = {**plan.passed[stage], "run_dir": str(run_dir)}
    manifest.data["params_passed"][stage] = plan.passed[stage]
    manifest.data["params_in_effect"][stage] = in_effect(passed, plan.declared[stage])
    _record_taxonomy(manifest, passed, plan.declared[stage])
    out_nb = run_dir / "notebooks" / f"{stage}.ipynb"
    entry.update(status="running", started_at=now(), notebook=f"notebooks/{stage}.ipynb")
    manifest.save()
    t0 = time.time()
    before = _outputs_snapshot(run_dir)
    ppath = progress_path(run_dir, stage)
    tail = ProgressTail(ppath, echo=echo if progress else (lambda s: None))
    ipc_dir = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-", dir=_kernel_tmp_root()))
    kernels: list = []
    nb = plan.notebooks[stage]
    try:
        # the kernel inherits PROGRESS_ENV: long loops report to the progress file, not in the notebook
        with tail, _run_environment(**{PROGRESS_ENV: str(ppath)}):
            _execute(signals, lambda: papermill.execute_notebook(
                str(nb), str(out_nb), parameters=passed, kernel_name=kernel_for(nb), progress_bar=progress,
                cwd=str(root), log_output=False, report_mode=False,
                kernel_manager_class=_kernel_manager_class(ipc_dir, kernels)), kernels)
        entry["status"] = "succeeded"
    except KeyboardInterrupt as exc:  # _Stop from the run's handlers, or a caller's own KeyboardInterrupt
        result.signal = getattr(exc, "signum", signal.SIGINT)
        name = signal.Signals(result.signal).name
        entry.update(status="interrupted", error=f"interrupted by {name}")
        result.failed_stage, result.failure = stage, f"{stage} interrupted by {name}"
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised as a status
        reason, cell = _failure_text(exc)
        entry.update(status="failed", error=reason, failed_cell=cell)
        result.failed_stage, result.failure = stage, f"{stage} failed at {cell or 'start'}: {reason}"
    finally:
        for km in kernels:  # normally stopped by papermill already
            _signal_kernel(km, signal.SIGKILL)
        shutil.rmtree(ipc_dir, ignore_errors=True)
    if entry["status"] != "succeeded":
        _sweep_partials(run_dir)
        if tail.last:
            entry["last_progress"] = tail.last
            assert result.failure is not None  # set by whatever did not succeed above
            result.failure += f" (last progress: {tail.last})"
    after = _outputs_snapshot(run_dir)
    entry["outputs"] = sorted(k for k, v in after.items() if before.get(k) != v)
    entry.update(ended_at=now(), duration_s=round(time.time() - t0, 2))
    return out_nb


def _record_stage(manifest: Manifest, stage: str, out_nb: Path, git_future, *, render_html: bool) -> None:
    """The executed notebook rendered to HTML, the stage's records and (once known) the git state in the manifest."""
    from .report import render_notebook_html

    entry = manifest.stage(stage)
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


def _finish_run(manifest: Manifest, result: RunResult, git_future, t_run: float) -> str:
    """The run's status, git state, timings and records in the manifest, and ``index.html``."""
    from .report import write_index

    status = "interrupted" if result.signal else "failed" if result.failure else "succeeded"
    try:
        manifest.data["git"] = git_future.result(timeout=5 if result.signal else 300)
    except Exception as exc:  # noqa: BLE001 - the run's result matters more than its git state
        manifest.data["git"] = {"commit": None, "branch": None, "dirty": None, "dirty_error": repr(exc)}
    if result.signal:
        manifest.data["interrupted"] = {"signal": signal.Signals(result.signal).name, "stage": result.failed_stage}
    manifest.data.update(status=status, finished_at=now(), duration_s=round(time.time() - t_run, 2))
    manifest.refresh_records()
    manifest.save()
    write_index(manifest.run_dir, manifest.data)
    return status


def _run_stages(plan: RunPlan, manifest: Manifest, git_future, signals: _Signals, *, progress: bool,
                render_html: bool, echo: Callable[[str], None]) -> RunResult:
    """Execute the plan's stages in order into the manifest's run folder and record how each ended, then the run."""
    run_dir, rid, to_run = manifest.run_dir, manifest.data["run_id"], plan.to_run
    result = RunResult(rid, run_dir, "running")
    t_run = time.time()
    echo(f"run {rid}  ({plan.recipe.name}: {', '.join(to_run)})\n  folder: {run_dir}")
    _sweep_kernel_dirs()
    with _run_environment(FLYWHEEL_ROOT=str(project_root()), FLYWHEEL_RUNS_DIR=str(runs_dir()), FLYWHEEL_RUN_ID=rid):
        try:
            for i, stage in enumerate(to_run, 1):
                if signals.received:  # a signal between stages: this one never started
                    result.signal, result.failed_stage = signals.received, stage
                    result.failure = f"interrupted by {signal.Signals(signals.received).name} before {stage}"
                    for later in to_run[i - 1:]:
                        manifest.stage(later)["status"] = "skipped"
                    break
                echo(f"▶ [{i}/{len(to_run)}] {stage}   (elapsed {time.time() - t_run:.0f}s)")
                out_nb = _execute_stage(plan, stage, manifest, signals, result, progress=progress, echo=echo)
                _record_stage(manifest, stage, out_nb, git_future, render_html=render_html)
                entry = manifest.stage(stage)
                mark = "✓" if entry["status"] == "succeeded" else "✗"
                echo(f"{mark} {stage} {entry['status']} in {entry['duration_s']:.1f}s")
                if entry["status"] != "succeeded":
                    if entry["status"] == "failed":
                        echo(f"  {result.failure}\n  executed notebook kept: {out_nb}")
                    for later in to_run[i:]:
                        manifest.stage(later)["status"] = "skipped"
                    break
        finally:
            result.status = _finish_run(manifest, result, git_future, t_run)
            result.stages = manifest.data["stages"]
            how = f" ({result.failure})" if result.signal else ""
            echo(f"run {rid} {result.status}{how} in {time.time() - t_run:.0f}s — report: {run_dir / 'index.html'}")
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
