"""One way to open the project's SQLite stores (verdict cache, batch journal, embedding cache) in WAL mode.

Several processes share these files (two judges of a panel, a notebook beside a batch run). Switching a fresh file to
WAL needs a lock that SQLite does not wait for: the second of two processes creating the same file at once gets
"database is locked" at once, whatever the busy timeout. So the busy timeout is set first, creation is serialised
within a process, and a "locked" answer while creating is retried for a few seconds before it is raised.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["connect_wal"]

_INIT_LOCK = threading.Lock()


def connect_wal(path: str | Path, *, schema: tuple[str, ...] = (), synchronous: str | None = None,
                timeout_s: float = 60.0, attempts: int = 50, **kw) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` (``CREATE ... IF NOT EXISTS`` statements) applied."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _INIT_LOCK:
        for attempt in range(attempts):
            con = sqlite3.connect(path, timeout=timeout_s, **kw)
            try:
                con.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
                con.execute("PRAGMA journal_mode=WAL")
                if synchronous:
                    con.execute(f"PRAGMA synchronous={synchronous}")
                for stmt in schema:
                    con.execute(stmt)
                con.commit()
                return con
            except sqlite3.DatabaseError as e:
                con.close()
                locked = isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
                if not locked or attempt == attempts - 1:
                    raise type(e)(f"{path}: {e}") from e
                time.sleep(0.1)
    raise AssertionError("unreachable")
