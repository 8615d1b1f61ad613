"""The verdict cache: one SQLite file (WAL mode) under ``cache_dir``, keyed by a hash of the exact prompt.

A verdict is written within a quarter of a second of its arrival, so a run killed mid-way resumes and pays only for what was not
finished; re-running a stage, or the taxonomy lab on an unchanged prompt, costs no call. Several processes may
share the file (WAL lets readers run beside one writer; a busy timeout serialises writers).

What is stored: the verdict fields (category, reason_key, rationale, model, tokens, the cost when it was paid,
latency, an abstention's reason). Never an API key: keys hash backend, model, options and prompt only.
Transport failures (retries exhausted) are not stored, so the next run tries them again; a parse failure is
stored (the same prompt gives the same answer and was paid for).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterable

from ..records import Verdict
from ..sqlite_wal import connect_wal

__all__ = ["VerdictCache", "CACHE_FILE"]

CACHE_FILE = "verdicts.sqlite"
_COLS = ("category", "reason_key", "rationale", "model", "tokens_in", "tokens_out", "cost_usd", "latency_s", "error")


class VerdictCache:
    """``get_many(keys) -> {key: row}``; ``put(key, judge, verdict)``; ``put_many([(key, judge, verdict)])``."""

    def __init__(self, cache_dir: str | Path):
        from ..stage import resolve_path

        self.dir = resolve_path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / CACHE_FILE
        self._lock = threading.Lock()
        self._con = connect_wal(self.path, synchronous="NORMAL", check_same_thread=False, isolation_level=None,
                                schema=("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT,"
                                        " category TEXT, reason_key TEXT, rationale TEXT, model TEXT, tokens_in INTEGER,"
                                        " tokens_out INTEGER, cost_usd REAL, latency_s REAL, error TEXT, created REAL)",))

    def __repr__(self) -> str:
        return f"VerdictCache({str(self.path)!r})"

    def get_many(self, keys: Iterable[str], chunk: int = 900) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        cols = ", ".join(_COLS)
        with self._lock:
            for i in range(0, len(keys), chunk):
                part = keys[i:i + chunk]
                q = f"SELECT key, {cols} FROM verdicts WHERE key IN ({','.join('?' * len(part))})"
                for row in self._con.execute(q, part):
                    out[row[0]] = dict(zip(_COLS, row[1:]))
        return out

    def _row(self, key: str, judge: str, v: Verdict) -> tuple:
        return (key, judge, v.category, v.reason_key, v.rationale, v.model, int(v.tokens_in), int(v.tokens_out),
                float(v.cost_usd), float(v.latency_s), v.error, time.time())

    def put(self, key: str, judge: str, v: Verdict) -> None:
        self.put_many([(key, judge, v)])

    def put_many(self, rows: Iterable[tuple[str, str, Verdict]]) -> None:
        data = [self._row(k, j, v) for k, j, v in rows]
        if not data:
            return
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(f"INSERT OR REPLACE INTO verdicts VALUES ({','.join('?' * 12)})", data)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def count(self, judge: str | None = None) -> int:
        with self._lock:
            if judge is None:
                return self._con.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
            return self._con.execute("SELECT COUNT(*) FROM verdicts WHERE judge = ?", (judge,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @staticmethod
    def verdict(row: dict, item_id: str, judge: str, key: str) -> Verdict:
        """A cached row as this run's verdict: ``cached=True`` and no cost (nothing was paid this time)."""
        return Verdict(item_id=item_id, judge=judge, category=row["category"], reason_key=row["reason_key"],
                       rationale=row["rationale"] or "", model=row["model"] or "", prompt_hash=key,
                       tokens_in=int(row["tokens_in"] or 0), tokens_out=int(row["tokens_out"] or 0), cost_usd=0.0,
                       latency_s=0.0, cached=True, error=row["error"])
