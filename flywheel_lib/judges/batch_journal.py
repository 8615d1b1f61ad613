"""The batch journal: which provider batches are in flight and which requests (cache keys, items) each holds.

One SQLite file beside the verdict cache (``<cache_dir>/batches.sqlite``). A batch is written here as a *slot*
(state ``preparing``, with every request key and its item ids) before its file is uploaded, then gets its
provider file id and batch id as soon as the provider confirms them (``submitted``), and is marked ``collected``
once its results are in the verdict cache. A killed run therefore finds, on its next start, every batch it paid
for: ``submitted`` slots are polled and collected instead of resubmitted. A ``preparing`` slot whose batch id was
never recorded (the process died between the provider's answer and the journal write) is looked up by the slot id
the OpenAI batch carries in its metadata; Anthropic batches carry no metadata, so such a slot there is resubmitted
(the window is one HTTP response long).

States: ``preparing`` -> ``submitted`` -> ``collected``; ``rejected`` (the provider refused the upload or the
batch), ``lost`` (a ``preparing`` slot no provider batch matches).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BatchJournal", "Slot", "JOURNAL_FILE"]

JOURNAL_FILE = "batches.sqlite"
IN_FLIGHT = ("preparing", "submitted")


@dataclass
class Slot:
    """One journaled batch."""

    local_id: str
    """Our id, also sent as the batch's metadata (``flywheel_slot``) where the provider keeps metadata."""
    judge: str
    provider: str
    """``openai`` (Files + /v1/batches) or ``anthropic`` (/v1/messages/batches)."""
    url: str
    """The provider base URL the batch lives at."""
    state: str
    batch_id: str | None = None
    file_id: str | None = None
    n: int = 0
    """Requests in the batch."""
    created: float = 0.0
    info: str = ""
    """Why it ended as it did (provider status, rejection message)."""


class BatchJournal:
    def __init__(self, folder: str | Path):
        from ..sqlite_wal import connect_wal

        self.path = Path(folder) / JOURNAL_FILE
        self._lock = threading.Lock()
        self._con = connect_wal(self.path, check_same_thread=False, isolation_level=None, schema=(
            "CREATE TABLE IF NOT EXISTS batches (local_id TEXT PRIMARY KEY, judge TEXT, provider TEXT,"
            " url TEXT, state TEXT, batch_id TEXT, file_id TEXT, n INTEGER, created REAL, info TEXT)",
            "CREATE TABLE IF NOT EXISTS requests (key TEXT, local_id TEXT, judge TEXT, item_ids TEXT,"
            " PRIMARY KEY (key, local_id))",
            "CREATE INDEX IF NOT EXISTS requests_slot ON requests (local_id)"))

    def __repr__(self) -> str:
        return f"BatchJournal({str(self.path)!r})"

    def open_slot(self, judge: str, provider: str, url: str, items_by_key: dict[str, list[str]]) -> Slot:
        """Journal a batch before anything is uploaded: its requests' keys and the items each answers."""
        slot = Slot(local_id=f"fw-{uuid.uuid4().hex[:20]}", judge=judge, provider=provider, url=url,
                    state="preparing", n=len(items_by_key), created=time.time())
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  (slot.local_id, judge, provider, url, slot.state, None, None, slot.n, slot.created, ""))
                self._con.executemany("INSERT INTO requests VALUES (?,?,?,?)",
                                      [(k, slot.local_id, judge, json.dumps(v)) for k, v in items_by_key.items()])
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return slot

    def update(self, slot: Slot, **fields) -> None:
        """Set ``state``, ``batch_id``, ``file_id`` or ``info`` of a slot (written at once)."""
        bad = set(fields) - {"state", "batch_id", "file_id", "info"}
        if bad:
            raise ValueError(f"unknown slot fields {sorted(bad)}")
        for k, v in fields.items():
            setattr(slot, k, v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._con.execute(f"UPDATE batches SET {sets} WHERE local_id = ?", (*fields.values(), slot.local_id))

    def in_flight(self, judge: str, url: str | None = None) -> list[Slot]:
        """The judge's batches not yet collected (oldest first)."""
        q = "SELECT * FROM batches WHERE judge = ? AND state IN ('preparing', 'submitted')"
        args: tuple = (judge,)
        if url is not None:
            q += " AND url = ?"
            args += (url,)
        with self._lock:
            rows = self._con.execute(q + " ORDER BY created", args).fetchall()
        return [Slot(local_id=r[0], judge=r[1], provider=r[2], url=r[3], state=r[4], batch_id=r[5], file_id=r[6],
                     n=r[7], created=r[8], info=r[9] or "") for r in rows]

    def keys(self, slot: Slot) -> dict[str, list[str]]:
        """The slot's request keys and the item ids each answers."""
        with self._lock:
            rows = self._con.execute("SELECT key, item_ids FROM requests WHERE local_id = ?", (slot.local_id,)).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def states(self, judge: str | None = None) -> dict[str, int]:
        """How many batches are in each state (for reports and tests)."""
        q, args = "SELECT state, COUNT(*) FROM batches", ()
        if judge is not None:
            q, args = q + " WHERE judge = ?", (judge,)
        with self._lock:
            return dict(self._con.execute(q + " GROUP BY state", args).fetchall())

    def close(self) -> None:
        with self._lock:
            self._con.close()
