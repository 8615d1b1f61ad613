"""``flywheel sweep``: every point of a grid x seeds as a normal run, side by side, resumable.

``run_sweep("params/smoke.yaml", grid={"03_resolve.gate_scope": ["changes", "all"]}, seeds=[7, 11, 13])``
checks every configuration against the notebooks first, then runs the points into ordinary run folders
(:func:`~flywheel_lib.runner.run_recipe` with ``--set`` overrides) and keeps the sweep in
``outputs/sweeps/<sweep_id>/`` (beside ``outputs/runs/``):

* ``sweep.json``: the spec, the process running it, and one entry per point (configuration, grid values, seed,
  ``--set`` values, run id, status, time, the environment its worker got, the failure and failed notebook, and
  earlier attempts);
* ``logs/<point>.log`` and ``points/<point>.json``: each worker's output and result;
* ``index.html``: the sweep report (:mod:`flywheel_lib.sweep.report`), linked from every run of the sweep.

The same command finds its sweep again by the spec's key (or ``resume=SWEEP_ID``) and resumes it: points whose run
succeeded are kept as they are, failed, interrupted and missing ones run again as new runs. A sweep that another
live process is running is refused. Progress (points done, running, failed, rate, time left) is printed on the
command line as points finish and every ``progress_every`` seconds.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import file_sha256, read_json, write_json
from ..paths import runs_dir
from ..runner.execute import RunInterrupted, new_run_id, plan_run
from ..runner.manifest import Heartbeat, now, run_state, runner_gone, runner_identity
from ..runner.recipe import RecipeError, load_recipe
from ..stage import resolve_path
from .launch import make_launcher
from .spec import SweepSpec, spec_from_args
from .worker import link_run, result_path

__all__ = ["SweepResult", "run_sweep", "sweeps_dir", "find_sweep", "load_sweep", "Progress"]

FINISHED = "succeeded"
WAIT_FOR_ORPHANS_S = 180.0
"""How long a resumed sweep waits for a run that a dead sweep process left running to stop."""


def sweeps_dir() -> Path:
    """Where sweeps live: ``sweeps/`` beside the runs folder (``outputs/sweeps``)."""
    return runs_dir().parent / "sweeps"


def find_sweep(ref: str | Path) -> Path:
    """A sweep folder from its id, a unique prefix or substring of one, ``latest``, or a path."""
    p = Path(ref)
    if (p / "sweep.json").exists():
        return p.resolve()
    d = sweeps_dir()
    all_ = sorted(x for x in d.iterdir() if (x / "sweep.json").exists()) if d.exists() else []
    if str(ref) in ("latest", "last") and all_:
        return all_[-1]
    hits = ([x for x in all_ if x.name == str(ref)] or [x for x in all_ if x.name.startswith(str(ref))]
            or [x for x in all_ if str(ref) in x.name])
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FileNotFoundError(f"no sweep matches {ref!r} under {d}")
    raise FileNotFoundError(f"{ref!r} matches {len(hits)} sweeps: {', '.join(h.name for h in hits[:5])}")


def load_sweep(ref: str | Path) -> dict[str, Any]:
    return read_json(find_sweep(ref) / "sweep.json")


@dataclass
class SweepResult:
    sweep_id: str
    sweep_dir: Path
    status: str
    """``succeeded`` (every point), ``failed`` (some point failed), ``interrupted``."""
    points: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class Progress:
    """Points done / running / failed, the rate and the time left, as one line."""

    def __init__(self, points: list[dict], jobs: int):
        self.points, self.jobs, self.t0 = points, jobs, time.time()
        self.durations: list[float] = []

    def line(self) -> str:
        by = {s: sum(p["status"] == s for p in self.points) for s in ("succeeded", "running", "failed", "interrupted")}
        total, done = len(self.points), by["succeeded"]
        pending = total - sum(by.values())
        el = time.time() - self.t0
        parts = [f"{done}/{total} done", f"{by['running']} running", f"{by['failed']} failed"]
        if pending:
            parts.append(f"{pending} pending")
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            ahead = pending * mean + sum(max(0.0, mean - (time.time() - p["_t0"]))
                                         for p in self.points if p["status"] == "running" and "_t0" in p)
            parts.append(f"{len(self.durations) / el * 60:.2f} points/min")
            parts.append(f"elapsed {_clock(el)}, left ~{_clock(ahead / max(1, self.jobs))}")
        else:
            parts.append(f"elapsed {_clock(el)}, left ?")
        return " · ".join(parts)


def _clock(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _check_configs(spec: SweepSpec) -> None:
    """Every configuration's plan (the runner's own checks of its overrides), before any point runs."""
    r = load_recipe(spec.recipe_path)
    seen = set()
    for p in spec.points():
        if p.config not in seen:
            seen.add(p.config)
            plan_run(r, sets=p.sets, echo=lambda _: None)


def _entry(p) -> dict[str, Any]:
    return {"point_id": p.point_id, "config": p.config, "params": p.params, "seed": p.seed, "sets": p.sets,
            "status": "pending", "run_id": None, "attempts": []}


def _wait_for_orphan(run_dir: Path, echo) -> str:
    """A run left ``running`` by a dead sweep process: its worker is stopping (SIGTERM); wait for it to say so."""
    t0 = time.time()
    told = False
    while True:
        m = read_json(run_dir / "manifest.json", default={}) or {}
        st = run_state(m, run_dir) if m else "missing"
        if st != "running" or time.time() - t0 > WAIT_FOR_ORPHANS_S:
            return st
        if not told:
            echo(f"waiting for run {run_dir.name} (runner pid {(m.get('runner') or {}).get('pid')}) to stop")
            told = True
        time.sleep(1.0)


def _reconcile(data: dict, sweep_dir: Path, echo) -> list[dict]:
    """Which points run now: a point whose run succeeded (and links this sweep) is kept; the rest run again."""
    todo = []
    for e in data["points"]:
        if e.get("run_id"):
            run_dir = runs_dir() / e["run_id"]
            m = read_json(run_dir / "manifest.json", default={}) or {}
            st = run_state(m, run_dir) if m else "missing"
            if st == "running":
                st = _wait_for_orphan(run_dir, echo)
                m = read_json(run_dir / "manifest.json", default={}) or {}
            if st == FINISHED:
                if e["status"] != FINISHED:  # it finished after the sweep process that ran it died
                    res = read_json(result_path(sweep_dir, e["point_id"]), default={}) or {}
                    if (m.get("sweep") or {}).get("sweep_id") != data["sweep_id"]:
                        link_run(run_dir, _job(data, e, sweep_dir, e["run_id"]))
                    e.update({k: v for k, v in res.items() if k not in ("point_id", "run_id", "status")},
                             status=FINISHED)
                continue
            e["attempts"].append({"run_id": e["run_id"], "status": st, "failure": e.get("failure")})
        for k in ("failure", "failed_stage", "notebook", "exit_code", "started_at", "finished_at", "duration_s"):
            e.pop(k, None)
        e.update(status="pending", run_id=None)
        todo.append(e)
    return todo


def _job(data: dict, e: dict, sweep_dir: Path, run_id: str) -> dict[str, Any]:
    spec = data["spec"]
    return {"sweep_id": data["sweep_id"], "sweep_dir": str(sweep_dir.resolve()), "point_id": e["point_id"],
            "config": e["config"], "seed": e["seed"], "recipe_path": spec["recipe_path"], "sets": e["sets"],
            "stages": spec["stages"], "from_run": spec["from_run"], "run_id": run_id,
            "render_html": data.get("render_html", True)}


class _Stop(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handlers():
    """SIGTERM ends the sweep like Ctrl-C (main thread only): its workers are stopped and the sweep recorded."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum, frame):
        raise _Stop(signum)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM,)}


def _save(sweep_dir: Path, data: dict) -> None:
    data["updated_at"] = now()
    clean = {**data, "points": [{k: v for k, v in p.items() if not k.startswith("_")} for p in data["points"]]}
    write_json(sweep_dir / "sweep.json", clean)


def run_sweep(recipe: str | None = None, *, grid: dict[str, list] | None = None, seeds: list[int] | None = None,
              seed_key: str | None = None, sets: list[str] | None = None, stages: list[str] | None = None,
              from_run: str | None = None, jobs: int = 1, executor: str = "process", ray_address: str | None = None,
              resume: str | None = None, fresh: bool = False, render_html: bool = True, report: bool = True,
              progress_every: float = 30.0, echo: Callable[[str], None] | None = None) -> SweepResult:
    """Run (or resume) a sweep; see the module docstring. ``executor``: ``local``, ``process`` or ``ray``."""
    echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    data: dict[str, Any] | None = None
    sweep_dir: Path | None = None
    if resume:
        sweep_dir = find_sweep(resume)
        data = read_json(sweep_dir / "sweep.json")
        spec = SweepSpec.from_dict(data["spec"])
        if file_sha256(resolve_path(spec.recipe_path)) != spec.recipe_sha256:
            raise RecipeError(f"sweep {sweep_dir.name}: recipe {spec.recipe_path} changed since the sweep began; "
                              f"start a new sweep")
    else:
        if not recipe:
            raise RecipeError("name a recipe, or --resume SWEEP_ID")
        spec = spec_from_args(recipe, grid=grid, seeds=seeds, seed_key=seed_key, sets=sets, stages=stages,
                              from_run=from_run)
        if not fresh and sweeps_dir().exists():
            same = sorted(d for d in sweeps_dir().glob(f"*_{spec.key}") if (d / "sweep.json").exists())
            if same:
                sweep_dir = same[-1]
                data = read_json(sweep_dir / "sweep.json")
    if data is not None and data.get("status") == "running" and not runner_gone(data.get("orchestrator"), sweep_dir):
        raise RecipeError(f"sweep {sweep_dir.name} is running (pid {data['orchestrator'].get('pid')}); "
                          f"wait for it, or stop it first")
    if spec.from_run:
        from ..paths import find_run

        find_run(spec.from_run)
    _check_configs(spec)
    launcher = make_launcher(executor, jobs, ray_address=ray_address, echo=echo)

    if data is None:
        sweep_id = spec.new_id()
        sweep_dir = sweeps_dir() / sweep_id
        sweep_dir.mkdir(parents=True)
        data = {"sweep_id": sweep_id, "status": "pending", "created_at": now(), "spec": spec.to_dict(),
                "points": [_entry(p) for p in spec.points()]}
        todo = list(data["points"])
        n_cfg, n_seeds = len(spec.configs()), len(spec.seeds)
        shape = f"{n_cfg} configuration{'s' * (n_cfg != 1)}" + (f" x {n_seeds} seed{'s' * (n_seeds != 1)}"
                                                                 if n_seeds else "")
        echo(f"sweep {sweep_id}: {len(todo)} points ({shape}), {launcher.jobs} at a time with "
             f"{launcher.threads} thread(s) each\n  folder: {sweep_dir}")
    else:
        todo = _reconcile(data, sweep_dir, echo)
        kept = len(data["points"]) - len(todo)
        echo(f"resuming sweep {data['sweep_id']}: {kept} of {len(data['points'])} points finished before, "
             f"running {len(todo)}\n  folder: {sweep_dir}")
    data.update(status="running", orchestrator=runner_identity(), executor=launcher.name, jobs=launcher.jobs,
                threads_per_point=launcher.threads, render_html=render_html, finished_at=None)
    data.setdefault("sessions", []).append({"started_at": now(), "executor": launcher.name, "jobs": launcher.jobs,
                                            "points": [e["point_id"] for e in todo]})
    _save(sweep_dir, data)

    prog = Progress(data["points"], launcher.jobs)
    queue, running = list(todo), 0
    status, last, exit_code = "running", 0.0, 130
    old = _handlers()
    try:
        with Heartbeat(sweep_dir):
            try:
                while queue or running:
                    while queue and running < launcher.jobs:
                        e = queue.pop(0)
                        attempt = len(e["attempts"])
                        run_id = new_run_id(spec.recipe_name, (data["sweep_id"], e["point_id"], attempt))
                        e.update(status="running", run_id=run_id, started_at=now(), _t0=time.time())
                        _save(sweep_dir, data)
                        echo(f"▶ {e['point_id']} {e['config']}" + (f" seed {e['seed']}" if e["seed"] is not None
                                                                   else "") + f" -> run {run_id}")
                        running += 1
                        launcher.submit(_job(data, e, sweep_dir, run_id))
                    finished = launcher.wait(timeout=1.0)
                    for job, res in finished:
                        running -= 1
                        _record(data, job, res, prog, echo)
                    if finished:
                        _save(sweep_dir, data)
                    if finished or time.time() - last > progress_every:
                        echo(f"sweep {data['sweep_id']}: {prog.line()}")
                        last = time.time()
            except (KeyboardInterrupt, RunInterrupted) as exc:
                status = "interrupted"
                exit_code = 128 + getattr(exc, "signum", signal.SIGINT) if isinstance(exc, KeyboardInterrupt) \
                    else exc.code
                echo(f"sweep {data['sweep_id']}: stopping {running} running point(s)")
                launcher.stop()
                for job, res in launcher.wait(timeout=5.0):
                    _record(data, job, res, prog, echo)
                for e in data["points"]:
                    if e["status"] == "running":
                        e["status"] = "interrupted"
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if status == "running":
            status = "succeeded" if all(e["status"] == FINISHED for e in data["points"]) else "failed"
        data.update(status=status, finished_at=now())
        data["sessions"][-1]["finished_at"] = now()
        _save(sweep_dir, data)
    out = SweepResult(data["sweep_id"], sweep_dir, status, data["points"])
    if report:
        from .report import write_sweep_report

        try:
            out.report = write_sweep_report(sweep_dir)
        except Exception as exc:  # noqa: BLE001 - the report must not hide the sweep's result
            data["report_error"] = f"{type(exc).__name__}: {exc}"
            _save(sweep_dir, data)
            echo(f"sweep report failed: {data['report_error']}")
    echo(f"sweep {data['sweep_id']} {status}: {prog.line()}"
         + (f" — report: {out.report}" if out.report else ""))
    if status == "interrupted":
        raise SystemExit(exit_code)
    return out


def _record(data: dict, job: dict, res: dict, prog: Progress, echo) -> None:
    e = next(p for p in data["points"] if p["point_id"] == job["point_id"])
    st = res.get("status") or "failed"
    if st not in ("succeeded", "failed", "interrupted"):
        st = "failed"
    e.update({k: v for k, v in res.items() if k not in ("point_id", "status")}, status=st)
    e["run_id"] = job["run_id"]
    if "_t0" in e:
        prog.durations.append(time.time() - e.pop("_t0"))
    mark = "✓" if st == FINISHED else "✗"
    echo(f"{mark} {e['point_id']} {st}" + (f": {e['failure']}" if e.get("failure") and st != FINISHED else "")
         + (f"\n  notebook kept: {e['notebook']}" if e.get("notebook") else ""))
