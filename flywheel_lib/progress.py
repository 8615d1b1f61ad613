"""Progress of long work, visible where the person who started it is looking.

``progress_bar(total, desc)`` returns a tqdm bar. Where it goes depends on who runs the code:

* under ``flywheel run`` / ``flywheel cycles`` the runner sets ``$FLYWHEEL_PROGRESS_FILE``: the bar writes one JSON
  line per refresh (counts, rate, elapsed, time left, the postfix figures such as loss, spend or cache hits) to that
  file and nothing to the notebook, so the shared report holds no stderr noise; the runner tails the file and
  prints the lines on the command line that started the run (:class:`ProgressTail`), and keeps the last one for a
  failed stage's message;
* in JupyterLab (no such variable) it is ``tqdm.auto``: a widget when ipywidgets is installed;
* ``disable=True`` shows nothing anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["progress_bar", "ProgressTail", "PROGRESS_ENV", "format_progress"]

PROGRESS_ENV = "FLYWHEEL_PROGRESS_FILE"


def _channel_class():
    from tqdm.std import tqdm as std_tqdm

    class ChannelBar(std_tqdm):
        """A tqdm bar that reports to the runner's progress file instead of a terminal or the notebook."""

        def __init__(self, *args, **kw):
            self._channel = os.environ.get(PROGRESS_ENV)
            kw["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            kw.setdefault("mininterval", 2.0)
            kw.pop("dynamic_ncols", None)
            kw.pop("position", None)
            super().__init__(*args, **kw)

        def display(self, msg=None, pos=None):  # tqdm calls this on every refresh it allows
            if not self._channel or self.disable:
                return True
            d = self.format_dict
            rec = {"t": time.time(), "desc": d.get("prefix") or "", "n": d.get("n"), "total": d.get("total"),
                   "elapsed": round(float(d.get("elapsed") or 0), 1), "rate": d.get("rate"),
                   "postfix": d.get("postfix") or ""}
            try:
                with open(self._channel, "a") as fh:
                    fh.write(json.dumps(rec, default=str) + "\n")
            except OSError:
                pass
            return True

        def close(self):
            if not self.disable:
                self.display()
            super().close()
            try:
                self.fp.close()
            except Exception:  # noqa: BLE001
                pass

    return ChannelBar


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", disable: bool = False, **kw):
    """A tqdm bar (``iterable`` or ``total``) that reports to the runner under ``flywheel run``, else to Jupyter."""
    if os.environ.get(PROGRESS_ENV):
        cls = _channel_class()
    else:
        from tqdm.auto import tqdm as cls
    return cls(iterable, total=total, desc=desc, disable=disable, **kw)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def format_progress(rec: dict) -> str:
    """One line: ``desc  n/total (pct)  postfix  elapsed, ~left``."""
    n, total, rate = rec.get("n") or 0, rec.get("total"), rec.get("rate")
    left = (total - n) / rate if total and rate else None
    pct = f" ({100 * n / total:.0f}%)" if total else ""
    post = f"  {rec['postfix']}" if rec.get("postfix") else ""
    tail = f"{_fmt_s(rec.get('elapsed'))} elapsed" + (f", ~{_fmt_s(left)} left" if left is not None else "")
    return f"{rec.get('desc') or 'working'}  {n}/{total if total else '?'}{pct}{post}  {tail}"


class ProgressTail:
    """Follow a progress file in a thread and echo what the stage is doing (used by the runner).

    A line is printed at most every ``every`` seconds per task (5 s on a terminal, 15 s in a log), plus each
    task's last line. ``last`` keeps the most recent line.
    """

    def __init__(self, path: str | os.PathLike, echo=None, every: float | None = None, poll: float = 0.5):
        self.path = Path(path)
        self.echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
        self.every = every if every is not None else (5.0 if sys.stderr.isatty() else 15.0)
        self.poll = poll
        self.last: str | None = None
        self._pos = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-tail", daemon=True)
        self._shown: dict[str, float] = {}
        self._pending: dict[str, str] = {}
        self._printed: dict[str, str] = {}

    def __enter__(self) -> ProgressTail:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain(final=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain()
            self._stop.wait(self.poll)

    def _drain(self, final: bool = False) -> None:
        try:
            with open(self.path) as fh:
                fh.seek(self._pos)
                chunk = fh.read()
                self._pos = fh.tell()
        except OSError:
            return
        for line in chunk.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            text = format_progress(rec)
            self.last = text
            key = rec.get("desc") or ""
            done = rec.get("total") and rec.get("n") == rec.get("total")
            now = time.time()
            if self._printed.get(key) == text:  # a bar's close repeats its last refresh
                continue
            if done or now - self._shown.get(key, 0) >= self.every:
                self.echo("  … " + text)
                self._shown[key] = now
                self._printed[key] = text
                self._pending.pop(key, None)
            else:
                self._pending[key] = text
        if final:
            for key, text in self._pending.items():
                if self._printed.get(key) != text:
                    self.echo("  … " + text)
            self._pending.clear()
