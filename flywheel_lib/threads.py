"""How many CPU threads torch should use: one per core that is idle when a stage starts.

The load average is no guide on a small VM: kernel threads in uninterruptible sleep and this process's own last
minute count in it, so an idle 2-core VM often reads 1.0 and looks half busy. :func:`free_cores` reads idle time
from ``/proc/stat`` over a short window instead. On a shared 2-core machine two spinning OpenMP threads are ~8x
slower than one, and on an idle one a single thread is ~1.6x slower than two, so auto measures rather than guesses.

``FLYWHEEL_MAX_THREADS`` caps the count, auto or asked for: ``make test`` runs two test processes side by side on
two cores with a cap of 1 each, since a process that saw an idle core at its start would otherwise spin two threads
against the other's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["free_cores", "set_threads", "max_threads", "idle_share", "cpu_times"]


def cpu_times(stat_text: str | None = None) -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from ``/proc/stat`` (or the given text), None where unavailable."""
    try:
        text = stat_text if stat_text is not None else Path("/proc/stat").read_text()
        v = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    if len(v) < 5:
        return None
    return v[3] + v[4], sum(v[:8])


def idle_share(a: tuple[int, int], b: tuple[int, int]) -> float | None:
    """Share of CPU time spent idle between two :func:`cpu_times` readings (None when no time passed).

    >>> idle_share((100, 1000), (150, 1100))   # 50 of 100 jiffies idle
    0.5
    """
    d_total = b[1] - a[1]
    return (b[0] - a[0]) / d_total if d_total > 0 else None


def free_cores(sample_s: float = 0.5, *, reader: Callable[[], tuple[int, int] | None] = cpu_times,
               cores: int | None = None) -> float:
    """How many cores nobody is using right now, from idle time over ``sample_s`` (load average where unavailable)."""
    cores = cores or os.cpu_count() or 1
    a = reader()
    if a is not None:
        time.sleep(sample_s)
        b = reader()
        share = idle_share(a, b) if b is not None else None
        if share is not None:
            return cores * share
    try:
        return max(0.0, cores - os.getloadavg()[0])
    except OSError:
        return float(cores)


def max_threads() -> int | None:
    """The cap ``FLYWHEEL_MAX_THREADS`` sets (None: no cap)."""
    raw = os.environ.get("FLYWHEEL_MAX_THREADS", "").strip()
    if not raw:
        return None
    try:
        cap = int(raw)
    except ValueError:
        raise ValueError(f"FLYWHEEL_MAX_THREADS must be a whole number >= 1, got {raw!r}") from None
    if cap < 1:
        raise ValueError(f"FLYWHEEL_MAX_THREADS must be a whole number >= 1, got {raw!r}")
    return cap


def set_threads(threads: int = 0) -> int:
    """Set torch's CPU threads; 0 = auto: one per core that is idle now (at least one), never more than
    ``FLYWHEEL_MAX_THREADS``. Returns the count set."""
    import torch

    cap = max_threads()
    if threads <= 0:
        cores = os.cpu_count() or 1
        threads = max(1, min(cores, int(free_cores() + 0.5))) if cap != 1 else 1
    if cap is not None:
        threads = min(threads, cap)
    torch.set_num_threads(threads)
    return threads
