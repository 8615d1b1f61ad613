"""Where a sweep's points run: ``local`` (this process, one after another), ``process`` (``jobs`` worker processes
side by side) or ``ray`` (each point a Ray task, on a local instance or the cluster at ``ray_address``).

Each point gets a share of the cores: ``OMP_NUM_THREADS`` and ``FLYWHEEL_MAX_THREADS`` are set to
``max(1, cores // jobs)`` in the worker's environment (never above a ``FLYWHEEL_MAX_THREADS`` the sweep itself
runs under), so ``jobs`` points never spin more torch threads than there are cores. On Ray, ``cores`` is the
cluster's CPUs and each task asks for that share as ``num_cpus``; run folders must be on storage every worker
sees: the runs folder's absolute path goes to the task as ``FLYWHEEL_RUNS_DIR``.

A launcher runs ``launch(job)`` for each point and returns its result (:func:`~flywheel_lib.sweep.worker.run_point`);
a worker that dies without one is a failed point with the tail of its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import read_json
from ..paths import project_root, runs_dir
from .worker import result_path

__all__ = ["EXECUTORS", "available_cores", "thread_share", "point_env", "spawn_point", "Launcher", "make_launcher"]

EXECUTORS = ("local", "process", "ray")


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the system tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_share(cores: int, jobs: int, cap: int | None = None) -> int:
    """Threads for each of ``jobs`` points on ``cores``: ``max(1, cores // jobs)``, at most ``cap`` (the sweep's
    own ``FLYWHEEL_MAX_THREADS``).

    >>> thread_share(2, 2), thread_share(16, 3), thread_share(1, 4), thread_share(16, 2, cap=4)
    (1, 5, 1, 4)
    """
    share = max(1, cores // max(1, jobs))
    return min(share, cap) if cap else share


def _share(cores: int, jobs: int) -> int:
    from ..threads import max_threads

    return thread_share(cores, jobs, max_threads())


def point_env(threads: int) -> dict[str, str]:
    """The environment a point's worker gets on top of the sweep's."""
    return {"OMP_NUM_THREADS": str(threads), "FLYWHEEL_MAX_THREADS": str(threads),
            "FLYWHEEL_RUNS_DIR": str(runs_dir().resolve()), "FLYWHEEL_ROOT": str(project_root())}


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


def spawn_point(job: dict[str, Any], env: dict[str, str], on_start: Callable | None = None) -> dict[str, Any]:
    """Run ``job`` in a worker process (``python -m flywheel_lib.sweep.worker``) with ``env``; its output goes to
    ``<sweep>/logs/<point_id>.log``. Returns the worker's result, or a failed one naming its exit code and log."""
    log = Path(job["sweep_dir"]) / "logs" / f"{job['point_id']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out = result_path(job["sweep_dir"], job["point_id"])
    out.unlink(missing_ok=True)
    job = {**job, "parent_pid": os.getpid()}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "flywheel_lib.sweep.worker", json.dumps(job, default=str)],
                                env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=env.get("FLYWHEEL_ROOT"))
        if on_start:
            on_start(proc)
        try:
            rc = proc.wait()
        except BaseException:  # the task was cancelled or the launcher interrupted: the run records it
            proc.terminate()
            proc.wait(timeout=120)
            raise
    res = read_json(out, default={}) or {}
    if not res:
        res = {"point_id": job["point_id"], "run_id": job["run_id"], "status": "failed", "env": env,
               "failure": f"worker exited with code {rc} before recording a result: {_tail(log)[-500:]}"}
    res["exit_code"] = rc
    res["log"] = f"logs/{log.name}"
    return res


def _ray_point(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The Ray task: a worker process on whichever node Ray picked."""
    return spawn_point(job, env)


class Launcher:
    """Runs points: ``submit(job)`` starts one (at most ``jobs`` at a time), ``wait(timeout)`` returns the
    ``(job, result)`` pairs that finished, ``stop()`` ends what runs. ``threads`` is each point's share."""

    name = "local"

    def __init__(self, jobs: int, threads: int):
        self.jobs, self.threads = jobs, threads

    @property
    def env(self) -> dict[str, str]:
        return point_env(self.threads)

    def submit(self, job: dict[str, Any]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[tuple[dict, dict]]:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class LocalLauncher(Launcher):
    """In this process, one point at a time (``jobs`` is 1): what a debugger or a notebook sees."""

    def __init__(self, jobs: int, threads: int, echo: Callable[[str], None]):
        super().__init__(1, threads)
        self.echo, self._done = echo, []

    def submit(self, job):
        from .worker import run_point

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            res = run_point(job, echo=lambda s: self.echo(f"  [{job['point_id']}] {s}"))
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        self._done.append((job, res))

    def wait(self, timeout):
        done, self._done = self._done, []
        return done


class ProcessLauncher(Launcher):
    """``jobs`` worker processes side by side, one thread each watching its worker."""

    name = "process"

    def __init__(self, jobs: int, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        super().__init__(jobs, threads)
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-point")
        self._futures: dict = {}
        self._procs: set = set()
        self._lock = threading.Lock()

    def _started(self, proc):
        with self._lock:
            self._procs.add(proc)

    def submit(self, job):
        self._futures[self._pool.submit(spawn_point, job, self.env, self._started)] = job

    def wait(self, timeout):
        from concurrent.futures import FIRST_COMPLETED, wait

        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            job = self._futures.pop(f)
            try:
                out.append((job, f.result()))
            except Exception as e:  # noqa: BLE001 - a launcher error is the point's failure
                out.append((job, {"status": "failed", "failure": f"{type(e).__name__}: {e}"}))
        return out

    def stop(self):
        import signal

        with self._lock:
            for p in self._procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayLauncher(Launcher):
    """Each point a Ray task asking for ``threads`` CPUs; a task that fails on its worker is a failed point."""

    name = "ray"

    def __init__(self, jobs: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise ImportError("the ray executor needs Ray: pip install 'flywheel-workbench[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        cores = int(ray.cluster_resources().get("CPU", 1))
        super().__init__(jobs, _share(cores, jobs))
        self._task = ray.remote(_ray_point).options(num_cpus=self.threads, max_retries=0)
        self._refs: dict = {}

    def submit(self, job):
        self._refs[self._task.remote(job, self.env)] = job

    def wait(self, timeout):
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                out.append((job, self.ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - the worker crashed or the task was lost: the point failed
                out.append((job, {"status": "failed", "failure": f"on a Ray worker: {type(e).__name__}: {e}"[:2000]}))
        return out

    def stop(self):
        for ref in list(self._refs):
            self.ray.cancel(ref, force=False)


def make_launcher(executor: str, jobs: int, *, ray_address: str | None = None,
                  echo: Callable[[str], None] = print) -> Launcher:
    """The launcher for ``executor`` (checked before anything runs)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if ray_address and executor != "ray":
        raise ValueError("--ray-address is set but the executor is not ray")
    if executor == "local":
        if jobs > 1:
            raise ValueError("the local executor runs one point at a time; use --executor process for --jobs > 1")
        return LocalLauncher(1, _share(available_cores(), 1), echo)
    if executor == "process":
        return ProcessLauncher(jobs, _share(available_cores(), jobs))
    return RayLauncher(jobs, ray_address)
