"""The verdict cache: one SQLite file (WAL mode) under ``cache_dir``, keyed by a hash of the exact prompt.

A verdict is written within a quarter of a second of its arrival, so a run killed mid-way resumes and pays only for what was not
finished; re-running a stage, or the taxonomy lab on an unchanged prompt, costs no call. Several processes may
share the file (WAL lets readers run beside one writer; a busy timeout serialises writers).

What is stored: the verdict fields (category, reason_key, rationale, model, tokens, the cost when it was paid,
latency, an abstention's reason). Never an API key: keys hash backend, model, options and prompt only.
Transport failures (retries exhausted) are not stored, so the next run tries them again; a parse failure is
stored (the same prompt gives the same answer and was paid for).

**Claims.** Two runs sharing the cache pay each prompt once. Before a call the runner claims its key
(:meth:`VerdictCache.claim`: a row ``key, owner, host, pid, expires`` in the ``claims`` table, taken in one
``BEGIN IMMEDIATE`` transaction with the check that no verdict and no live claim exists). Another run that finds
a live claim waits for the verdict (it polls) instead of calling. The owner renews its claims while it runs
(:meth:`renew`) and drops them when the verdict is written, when the call fails, and when it ends; a claim whose
owner died (same host, its process is gone) or whose lease expired is stale and taken over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from ..records import Verdict
from ..sqlite_wal import connect_wal

__all__ = ["VerdictCache", "CACHE_FILE", "CLAIM_TTL_S", "new_owner"]

CACHE_FILE = "verdicts.sqlite"
CLAIM_TTL_S = 60.0
"""A claim not renewed for this long is stale (its owner stopped, or lost its host)."""
_HOST = socket.gethostname()


def new_owner() -> str:
    """A claim owner id, unique to one run of one judge in this process."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _alive(host: str, pid: int) -> bool:
    """Whether the claiming process may still run (another host's processes cannot be seen: only the lease
    tells)."""
    if host != _HOST or not pid:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


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
                                        " tokens_out INTEGER, cost_usd REAL, latency_s REAL, error TEXT, created REAL)",
                                        "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT,"
                                        " host TEXT, pid INTEGER, expires REAL)"))

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
                self._con.executemany("DELETE FROM claims WHERE key = ?", [(d[0],) for d in data])
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    # --- claims ----------------------------------------------------------------------------------
    def claim(self, keys: Iterable[str], owner: str, *, ttl_s: float = CLAIM_TTL_S, chunk: int = 900
              ) -> tuple[list[str], dict[str, dict]]:
        """Claim the keys nobody answered or holds, atomically. Returns ``(claimed, answered)``: the keys this
        owner may now call, and ``{key: row}`` for keys whose verdict is already stored. The other keys are held
        by a live claim (another run's, or an earlier one of this owner's): wait for their verdict."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return [], {}
        host, pid, _ = owner.rsplit(":", 2)
        now = time.time()
        claimed: list[str] = []
        answered: dict[str, dict] = {}
        cols = ", ".join(_COLS)
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(keys), chunk):
                    part = keys[i:i + chunk]
                    marks = ",".join("?" * len(part))
                    for row in self._con.execute(f"SELECT key, {cols} FROM verdicts WHERE key IN ({marks})", part):
                        answered[row[0]] = dict(zip(_COLS, row[1:]))
                    held = {k: (o, h, p, e) for k, o, h, p, e in self._con.execute(
                        f"SELECT key, owner, host, pid, expires FROM claims WHERE key IN ({marks})", part)}
                    take = []
                    for k in part:
                        if k in answered:
                            continue
                        c = held.get(k)
                        if c is None or c[3] < now or not _alive(c[1], c[2]):
                            take.append((k, owner, host, int(pid), now + ttl_s))
                    self._con.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)", take)
                    claimed += [t[0] for t in take]
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return claimed, answered

    def waiting(self, keys: Iterable[str]) -> tuple[dict[str, dict], list[str]]:
        """For keys another owner held: ``({key: row} answered since, [keys whose claim is gone or stale])``;
        the rest are still held by a live claim."""
        keys = list(dict.fromkeys(keys))
        answered = self.get_many(keys)
        rest = [k for k in keys if k not in answered]
        if not rest:
            return answered, []
        now = time.time()
        live = set()
        with self._lock:
            for i in range(0, len(rest), 900):
                part = rest[i:i + 900]
                q = f"SELECT key, host, pid, expires FROM claims WHERE key IN ({','.join('?' * len(part))})"
                live |= {k for k, h, p, e in self._con.execute(q, part) if e >= now and _alive(h, p)}
        return answered, [k for k in rest if k not in live]

    def renew(self, owner: str, *, ttl_s: float = CLAIM_TTL_S) -> None:
        """Extend this owner's claims (a heartbeat while its calls run)."""
        with self._lock:
            self._con.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl_s, owner))

    def release(self, owner: str, keys: Iterable[str] | None = None) -> None:
        """Drop this owner's claims on ``keys`` (all of them when ``None``): a failed call, or the run's end."""
        with self._lock:
            if keys is None:
                self._con.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self._con.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", [(k, owner) for k in keys])

    def claims(self) -> list[dict]:
        """The claim rows (for reports and tests)."""
        with self._lock:
            return [dict(zip(("key", "owner", "host", "pid", "expires"), r))
                    for r in self._con.execute("SELECT key, owner, host, pid, expires FROM claims")]

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
