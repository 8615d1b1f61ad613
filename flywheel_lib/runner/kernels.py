"""Stage kernels: their temp folders for IPC sockets, the signals that stop them, and one stage's execution
under the run's signal handlers (SIGINT/SIGTERM interrupt the kernel first, then kill it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .manifest import pid_alive

KERNEL_DIR_PREFIX = "flywheel-kernel-"
"""Temp folders holding a kernel's IPC sockets: ``flywheel-kernel-<runner pid>-<random>``, removed after each stage."""
INTERRUPT_GRACE_S = 10.0
"""After SIGINT/SIGTERM, how long the kernel gets to stop its cell (KeyboardInterrupt) before it is killed."""


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


def kernel_for(notebook: Path) -> str:
    """The notebook's kernel if installed (``flywheel``, registered by ``make setup``), else ``python3``."""

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


