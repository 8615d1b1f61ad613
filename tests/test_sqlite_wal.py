"""The SQLite stores open in WAL mode from several processes at once: creating a fresh file concurrently must not
fail with "database is locked" (it did, for the batch journal, before creation was retried)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from flywheel_lib.sqlite_wal import connect_wal


def _open_and_write(args):
    folder, n = args
    from flywheel_lib.judges.batch_journal import BatchJournal
    from flywheel_lib.judges.cache import VerdictCache
    from flywheel_lib.records import Verdict

    cache = VerdictCache(folder)
    BatchJournal(folder)
    cache.put(f"k{n}", "j", Verdict(item_id=f"i{n}", judge="j", category="solvable"))
    return n


def test_many_processes_create_the_same_fresh_stores_at_once(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Pool(6) as pool:
        done = pool.map(_open_and_write, [(str(tmp_path / "c"), n) for n in range(12)])
    assert sorted(done) == list(range(12))
    con = sqlite3.connect(tmp_path / "c" / "verdicts.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == 12


def test_a_file_that_is_no_database_is_named(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="x.sqlite: file is not a database"):
        connect_wal(bad, schema=("CREATE TABLE IF NOT EXISTS t (a)",))
