"""One point of a sweep: a normal run of the recipe, linked back to its sweep.

``python -m flywheel_lib.sweep.worker '<job json>'`` is what the ``process`` and ``ray`` executors start for a
point; the ``local`` executor calls :func:`run_point` in its own process. The job names the recipe, the
``--set`` values, stages, ``--from`` and the run id the sweep gave the point. The worker records the environment it
got (the thread caps and the runs folder), runs the recipe with :func:`~flywheel_lib.runner.run_recipe`, writes the
sweep into the run's manifest and report (:func:`link_run`), and leaves its result in
``<sweep>/points/<point_id>.json``: the sweep process reads that, so a point's result survives a sweep process
that died while the point ran.

A worker started by a sweep process stops with it: it asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG`` on Linux), and the runner records the run as interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..io import atomic_path, read_json, write_json
from ..runner.manifest import Manifest, now

__all__ = ["run_point", "link_run", "result_path", "ENV_KEYS", "main"]

ENV_KEYS = ("OMP_NUM_THREADS", "FLYWHEEL_MAX_THREADS", "FLYWHEEL_RUNS_DIR", "FLYWHEEL_ROOT")
"""The variables a sweep sets for each point, recorded as the worker saw them."""


def result_path(sweep_dir: str | Path, point_id: str) -> Path:
    return Path(sweep_dir) / "points" / f"{point_id}.json"


def link_run(run_dir: Path, job: dict[str, Any]) -> None:
    """Record the sweep in a finished run: ``manifest["sweep"]`` and a link to the sweep report at the top of the
    run's ``index.html``."""
    from html import escape

    from ..runner.report import write_index

    report = Path(job["sweep_dir"]) / "index.html"
    rel = os.path.relpath(report, run_dir)
    m = Manifest.load(run_dir)
    m.data["sweep"] = {"sweep_id": job["sweep_id"], "point_id": job["point_id"], "config": job["config"],
                       "seed": job["seed"], "report": rel}
    m.save()
    index = write_index(run_dir, m.data)
    link = (f"<p>Part of sweep <a href='{escape(rel)}'>{escape(job['sweep_id'])}</a>: point "
            f"{escape(job['point_id'])}, {escape(job['config'])}"
            + (f", seed {job['seed']}" if job["seed"] is not None else "") + "</p>")
    text = index.read_text(encoding="utf-8")
    with atomic_path(index) as tmp:
        tmp.write_text(text.replace("</h1>", "</h1>" + link, 1), encoding="utf-8")


def _outcome(run_dir: Path) -> dict[str, Any]:
    """Status, failure and the failed stage's notebook of a run, from its manifest."""
    from ..runner.manifest import run_state

    m = read_json(run_dir / "manifest.json", default={}) or {}
    out: dict[str, Any] = {"status": run_state(m, run_dir) if m else "missing"}
    for s in m.get("stages", []):
        if s.get("status") in ("failed", "interrupted"):
            out["failed_stage"] = s["name"]
            out["failure"] = f"{s['name']}: {s.get('error', s['status'])}" + (
                f" at {s['failed_cell']}" if s.get("failed_cell") else "")
            if s.get("notebook"):
                out["notebook"] = f"{run_dir.name}/{s['notebook']}"
            break
    return out


def run_point(job: dict[str, Any], echo=None) -> dict[str, Any]:
    """Run one point (see the module docstring) and return its result, also written to :func:`result_path`."""
    from ..paths import runs_dir
    from ..runner import run_recipe
    from ..runner.execute import RunInterrupted

    t0 = time.time()
    res: dict[str, Any] = {"point_id": job["point_id"], "run_id": job["run_id"], "started_at": now(),
                           "env": {k: os.environ.get(k) for k in ENV_KEYS},
                           "worker": {"pid": os.getpid(), "host": socket.gethostname()}}
    interrupted = None
    try:
        run = run_recipe(job["recipe_path"], sets=job["sets"], stages=job["stages"], from_run=job["from_run"],
                         run_id=job["run_id"], progress=False, render_html=job.get("render_html", True), echo=echo)
        run_dir = run.run_dir
    except RunInterrupted as e:
        interrupted, run_dir = e, e.result.run_dir
    except Exception as e:  # noqa: BLE001 - a point that cannot start is a failed point; the sweep goes on
        run_dir = runs_dir() / job["run_id"]
        res.update(status="failed", failure=f"{type(e).__name__}: {e}")
    if (run_dir / "manifest.json").exists():
        res.update(_outcome(run_dir))
        if res["status"] in ("succeeded", "failed"):
            link_run(run_dir, job)
    res.update(finished_at=now(), duration_s=round(time.time() - t0, 2))
    write_json(result_path(job["sweep_dir"], job["point_id"]), res)
    if interrupted is not None:
        raise interrupted
    return res


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux); exit at once if it already has."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        sys.exit(143)


def main(argv: list[str] | None = None) -> int:
    job = json.loads((argv or sys.argv[1:])[0])
    if job.get("parent_pid"):
        _die_with_parent(int(job["parent_pid"]))
    res = run_point(job)
    return 0 if res.get("status") == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
