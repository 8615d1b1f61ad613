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

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..io import file_sha256, text_hash
from ..paths import ARTIFACTS, FIGURES, find_run, is_partial, progress_path, project_root, resolve_path, runs_dir
from ..progress import PROGRESS_ENV, ProgressTail
from ..tracking import track_run, tracking_for
from .manifest import Heartbeat, Manifest, environment, git_state_async, now, pid_alive, run_state, runner_identity
from .params import check_recipe, in_effect
from .recipe import Recipe, RecipeError, load_recipe

__all__ = ["RunResult", "RunInterrupted", "run_recipe", "new_run_id", "find_run", "stage_notebooks", "kernel_for"]

KERNEL_DIR_PREFIX = "flywheel-kernel-"
"""Temp folders holding a kernel's IPC sockets: ``flywheel-kernel-<runner pid>-<random>``, removed after each stage."""
INTERRUPT_GRACE_S = 10.0
"""After SIGINT/SIGTERM, how long the kernel gets to stop its cell (KeyboardInterrupt) before it is killed."""


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


class _Stop(KeyboardInterrupt):
    """Raised in the main thread by the run's SIGINT/SIGTERM handler while a stage executes."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM handlers for the length of a run (main thread only; elsewhere a no-op).

    The first signal is remembered; it raises :class:`_Stop` only while a stage executes (``armed``), so the
    runner's own bookkeeping between stages is never cut in half. A second signal asks for the kernel to be
    killed at once (``force``).
    """

    def __init__(self):
        self.received: int | None = None
        self.force = False
        self.armed = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            self.force = True
            return
        self.received = signum
        if self.armed:
            self.armed = False
            raise _Stop(signum)


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


def _kernel_manager_class(ipc_dir: Path, started: list):
    """Kernels talk over IPC sockets in ``ipc_dir``: nothing on the network, no TCP warning. Every manager made is
    appended to ``started`` so an interrupted run can stop its kernel."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            kw.setdefault("ip", str(ipc_dir / "k"))
            super().__init__(**kw)
            started.append(self)

    return IPCKernelManager


def _signal_kernel(km, signum: int) -> bool:
    """Send ``signum`` to a kernel's process group; False when it has no live process (yet, or any more)."""
    prov = getattr(km, "provisioner", None)
    proc = getattr(prov, "process", None)
    if proc is None or proc.poll() is not None:
        return False
    try:
        pgid = getattr(prov, "pgid", None)
        if pgid and hasattr(os, "killpg"):
            os.killpg(pgid, signum)
        else:
            proc.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


IPC_PATH_MAX = 100
"""A Unix socket's path must fit in ~107 bytes; a kernel's sockets are ``<kernel dir>/k-<port>``."""


def _kernel_tmp_root() -> Path:
    """Where kernel folders go: the temp dir, or ``/tmp`` when the temp dir's path is too long for a socket's."""
    root = Path(tempfile.gettempdir())
    if len(str(root)) + len(KERNEL_DIR_PREFIX) + 30 > IPC_PATH_MAX and Path("/tmp").is_dir():
        return Path("/tmp")
    return root


def _sweep_kernel_dirs() -> None:
    """Remove kernel temp folders left by runners that were killed (their pid is gone) or that are empty and old."""
    for d in _kernel_tmp_root().glob(f"{KERNEL_DIR_PREFIX}*"):
        try:
            pid = d.name[len(KERNEL_DIR_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)
            elif not any(d.iterdir()) and time.time() - d.stat().st_mtime > 3600:
                d.rmdir()
        except OSError:
            continue


def _execute(signals: _Signals, fn: Callable[[], Any], kernels: list) -> None:
    """Run ``fn`` (papermill) in a worker thread, so that the run's own SIGINT/SIGTERM handlers stay in charge of
    the main thread (nbclient installs none outside it). On a signal: interrupt the kernel, give its cell
    :data:`INTERRUPT_GRACE_S` to stop (a second signal: none), kill it if it has not, wait for ``fn``, raise
    :class:`_Stop`. Exceptions of ``fn`` are re-raised here."""
    box: dict[str, BaseException] = {}

    def work():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box["error"] = e

    if signals.received:
        raise _Stop(signals.received)
    worker = threading.Thread(target=work, name="stage", daemon=True)
    worker.start()
    try:
        signals.armed = True
        if signals.received:  # it came while the worker started, before the handler could raise
            raise _Stop(signals.received)
        while worker.is_alive():
            worker.join(0.25)
        signals.armed = False
    except _Stop:
        signals.armed = False
        interrupted, t0 = set(), time.monotonic()
        while worker.is_alive():
            waited = time.monotonic() - t0
            for km in kernels:
                if signals.force or waited > INTERRUPT_GRACE_S:
                    _signal_kernel(km, signal.SIGKILL)
                elif id(km) not in interrupted and _signal_kernel(km, signal.SIGINT):
                    interrupted.add(id(km))
            if waited > INTERRUPT_GRACE_S + 120:
                break  # a kernel that will not start or die: the run is recorded anyway
            worker.join(0.2)
        raise
    if "error" in box:
        raise box["error"]


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
    """Run ``recipe`` (a path or a loaded :class:`Recipe`); see the module docstring.

    Raises :class:`RunInterrupted` (a ``SystemExit``) after recording a run that SIGINT or SIGTERM interrupted.
    """
    echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    r = r.with_overrides(sets or [])
    to_run = list(stages) if stages else list(r.stages)
    unknown = [s for s in to_run if s not in r.stages]
    if unknown:
        raise RecipeError(f"--stages {','.join(unknown)}: not in recipe {r.path or r.name} ({', '.join(r.stages)})")
    notebooks = stage_notebooks(r.stages, r.notebook_dir)
    tracking = tracking_for(r)  # MLflow tracking (optional): params.tracking or $MLFLOW_TRACKING_URI, checked here
    declared = check_recipe(tracking.strip(r), notebooks)  # every key and type, before anything runs
    passed = {s: {k: v for k, v in r.for_stage(s, set(declared[s])).items() if k != "run_dir"} for s in r.stages}
    parent_dir = find_run(from_run) if from_run else None
    if parent_dir:
        pm = Manifest.load(parent_dir).data
        if run_state(pm, parent_dir) == "running":
            why = f"runner pid {(pm.get('runner') or {}).get('pid')}"
            raise RecipeError(f"--from {from_run}: run {parent_dir.name} is still running ({why}); "
                              "wait for it, or stop it first")
        if not stages:
            to_run = _resume_stages(pm, r, passed)
            if not to_run:
                raise RecipeError(f"--from {from_run}: every stage of run {parent_dir.name} succeeded with these "
                                  "parameters; name the ones to run again with --stages")
            echo(f"resuming {parent_dir.name}: running {', '.join(to_run)}")
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
        "runner": runner_identity(),
        "overrides": list(sets or []),
        "stage_order": list(r.stages),
        "parent": parent or ({"from_run": parent_dir.name} if parent_dir else None),
        "params_passed": {},
        "params_in_effect": {},
        **environment(root, git=False),  # filled in from git_future: a fresh clone's first status takes seconds
        "stages": [{"name": s, "status": "pending"} for s in to_run],
    })
    git_future = git_state_async(root)
    with Heartbeat(run_dir), _Signals() as signals:
        if parent_dir:
            manifest.data["parent"]["reused_stages"] = _reuse(parent_dir, run_dir, manifest, to_run)
        manifest.save()
        (run_dir / "recipe.yaml").write_text(_dump_recipe(r))
        result = _run_stages(r, to_run, notebooks, declared, passed, manifest, git_future, signals,
                             progress=progress, render_html=render_html, echo=echo)

    # --- MLflow tracking (optional): logs the final manifest; a failure is noted in it, never raised ----------------
    track_run(run_dir, tracking, echo=echo)

    if result.signal:
        raise RunInterrupted(result)
    return result


def _run_stages(r: Recipe, to_run: list[str], notebooks: dict[str, Path], declared: dict, passed_by_stage: dict,
                manifest: Manifest, git_future, signals: _Signals, *, progress: bool, render_html: bool,
                echo: Callable[[str], None]) -> RunResult:
    """Execute ``to_run`` in order into the manifest's run folder and record how each ended, then the run."""
    import papermill

    from .report import render_notebook_html, write_index

    root, run_dir, rid = project_root(), manifest.run_dir, manifest.data["run_id"]
    env_before = {k: os.environ.get(k) for k in ("FLYWHEEL_ROOT", "FLYWHEEL_RUNS_DIR", "FLYWHEEL_RUN_ID")}
    os.environ.update(FLYWHEEL_ROOT=str(root), FLYWHEEL_RUNS_DIR=str(runs_dir()), FLYWHEEL_RUN_ID=rid)
    result = RunResult(rid, run_dir, "running")
    t_run = time.time()
    echo(f"run {rid}  ({r.name}: {', '.join(to_run)})\n  folder: {run_dir}")
    _sweep_kernel_dirs()
    try:
        for i, stage in enumerate(to_run, 1):
            entry = manifest.stage(stage)
            if signals.received:  # a signal between stages: this one never started
                result.signal, result.failed_stage = signals.received, stage
                result.failure = f"interrupted by {signal.Signals(signals.received).name} before {stage}"
                for later in to_run[i - 1:]:
                    manifest.stage(later)["status"] = "skipped"
                break
            passed = {**passed_by_stage[stage], "run_dir": str(run_dir)}
            manifest.data["params_passed"][stage] = passed_by_stage[stage]
            manifest.data["params_in_effect"][stage] = in_effect(passed, declared[stage])
            _record_taxonomy(manifest, passed, declared[stage])
            out_nb = run_dir / "notebooks" / f"{stage}.ipynb"
            entry.update(status="running", started_at=now(), notebook=f"notebooks/{stage}.ipynb")
            manifest.save()
            echo(f"▶ [{i}/{len(to_run)}] {stage}   (elapsed {time.time() - t_run:.0f}s)")
            t0 = time.time()
            before = _outputs_snapshot(run_dir)
            ppath = progress_path(run_dir, stage)
            os.environ[PROGRESS_ENV] = str(ppath)  # the kernel inherits it: long loops report here, not in the notebook
            tail = ProgressTail(ppath, echo=echo if progress else (lambda s: None))
            ipc_dir = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-", dir=_kernel_tmp_root()))
            kernels: list = []
            try:
                with tail:
                    # _execute returns only once the call has ended: the lambda never outlives this iteration
                    _execute(signals, lambda: papermill.execute_notebook(
                        str(notebooks[stage]), str(out_nb), parameters=passed,  # noqa: B023
                        kernel_name=kernel_for(notebooks[stage]), progress_bar=progress, cwd=str(root),  # noqa: B023
                        log_output=False, report_mode=False,
                        kernel_manager_class=_kernel_manager_class(ipc_dir, kernels),  # noqa: B023
                    ), kernels)
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
                os.environ.pop(PROGRESS_ENV, None)
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
            if entry["status"] != "succeeded":
                if entry["status"] == "failed":
                    echo(f"  {result.failure}\n  executed notebook kept: {out_nb}")
                for later in to_run[i:]:
                    manifest.stage(later)["status"] = "skipped"
                break
    finally:
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
        write_index(run_dir, manifest.data)
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        result.status = status
        result.stages = manifest.data["stages"]
        how = f" ({result.failure})" if result.signal else ""
        echo(f"run {rid} {status}{how} in {time.time() - t_run:.0f}s — report: {run_dir / 'index.html'}")
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
