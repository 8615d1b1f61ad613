"""The ``ray`` executor: Ray Data over Parquet blocks.

The driver (the notebook's process) keeps what must stay single: the verdict cache (SQLite) is read before and
written after, so the cache semantics are the local path's, key for key. What the cache does not answer is
written as Parquet blocks of ``block_rows`` rows into a scratch folder beside the cache (on a cluster, point
``cache_dir`` at storage every node sees), read by ``ray.data.read_parquet``, judged (or embedded) by a pool of
actors that each hold one copy of the fitted judge (or the encoder), written back as Parquet blocks and read by
the driver one block at a time. Rows carry their position, so the result is in item order however Ray schedules.

* offline judges (``knn``, ``linear``, ``rules``): ``judge.predict`` per block;
* online OpenAI-compatible judges (a vLLM server, ...): the runner's own async loop (concurrency, retries, rate
  limits) per block inside an actor, without a cache; the driver caches what the local path would cache;
* embeddings for ``03_resolve``'s conflict detection: :class:`RayEmbedder`, a drop-in ``embedder`` for
  :func:`~flywheel_lib.curation.conflicts.find_conflicts`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..records import VERDICTS, Verdict
from . import Executor

__all__ = ["init_ray", "run_offline_ray", "run_llm_ray", "ray_capable", "RayEmbedder"]


def init_ray(ex: Executor):
    """Join the cluster at ``ex.address``, or start (or reuse) a local Ray instance."""
    import ray

    if not ray.is_initialized():
        kw = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        ray.init(address=ex.address or None, **kw)
    return ray


def ray_capable(judge) -> bool:
    """Judges the ``ray`` executor distributes: offline judges and online OpenAI-compatible ones."""
    return judge.config.backend == "openai-compatible" and judge.config.mode == "online"


def _scratch(cache) -> Path:
    base = Path(cache.dir) if cache is not None else None
    return Path(tempfile.mkdtemp(prefix="ray-blocks-", dir=base))


def _map(ex: Executor, df: pd.DataFrame, fn_cls, ctor: dict, scratch: Path, progress: bool):
    """Write ``df`` as Parquet blocks, map them through an actor pool of ``fn_cls``, yield the output blocks."""
    import pyarrow.parquet as pq

    init_ray(ex)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = bool(progress)
    src, dst = scratch / "in", scratch / "out"
    src.mkdir()
    for n, s in enumerate(range(0, len(df), ex.block_rows)):
        df.iloc[s:s + ex.block_rows].to_parquet(src / f"block-{n:06d}.parquet", index=False)
    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    n_blocks = -(-len(df) // ex.block_rows)
    ds = ray.data.read_parquet(str(src), override_num_blocks=n_blocks)
    ds = ds.map_batches(fn_cls, fn_constructor_kwargs=ctor, batch_size=ex.block_rows, batch_format="pyarrow",
                        concurrency=(1, max(1, min(cpus, n_blocks))), num_cpus=1)
    ds.write_parquet(str(dst))
    for f in sorted(dst.glob("*.parquet")):
        yield pq.read_table(f).to_pandas()


# Blocks travel as Arrow tables both ways (batch_format="pyarrow"): each function converts to pandas itself, which
# keeps Ray's own pandas conversion (and its pandas-version quirks) out of the path.

def _out(pos, values, name: str = "v"):
    import pyarrow as pa

    return pa.table({"_pos": pa.array(pos, type=pa.int64()), name: values})


class _OfflineFn:
    def __init__(self, judge):
        self.judge = judge

    def __call__(self, batch):
        df = batch.to_pandas()
        vs = self.judge.predict(df.drop(columns=["_pos"]).reset_index(drop=True))
        return _out(df["_pos"].to_numpy(), [json.dumps(v.row()) for v in vs])


class _LLMFn:
    def __init__(self, judge):
        self.judge = judge

    def __call__(self, batch):
        from ..judges.runner import run_llm

        df = batch.to_pandas()
        verdicts, _ = run_llm([self.judge], df.drop(columns=["_pos"]).reset_index(drop=True), None, progress=False)
        return _out(df["_pos"].to_numpy(), [json.dumps(v.row()) for v in verdicts[self.judge.name]])


def _collect(blocks, n: int) -> list[Verdict | None]:
    out: list[Verdict | None] = [None] * n
    for b in blocks:
        for pos, v in zip(b["_pos"], b["v"]):
            out[int(pos)] = Verdict(**json.loads(v))
    return out


def _bar(name: str, total: int, progress: bool, position: int, cached: int):
    from ..progress import progress_bar

    bar = progress_bar(total=total, desc=f"{name} [ray]", disable=not progress, position=position, leave=True)
    bar.update(cached)
    return bar


def _finish(out: list, st, rows: list, cache, bar, n_done: int, t0: float):
    """Cache the new verdicts, close the bar and the judge's stats; ``(verdicts, stats)``."""
    if rows and cache is not None:
        cache.put_many(rows)
    bar.update(n_done)
    st.abstained = sum(v.category is None for v in out)
    bar.set_postfix(st.postfix())
    bar.close()
    st.wall_s = time.monotonic() - t0
    return out, st


def _map_rows(executor: Executor, rows: pd.DataFrame, fn, judge, cache, progress: bool) -> list:
    """``fn`` (an actor class) over ``rows`` in Ray Data blocks, one result per row in row order."""
    df = rows.assign(_pos=np.arange(len(rows)))
    scratch = _scratch(cache)
    try:
        return _collect(_map(executor, df, fn, {"judge": judge}, scratch, progress), len(rows))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_offline_ray(judge, items: pd.DataFrame, cache, *, executor: Executor, progress: bool = True,
                    position: int = 0, chunk: int | None = None):
    """``run_offline`` with the uncached items judged in Ray actors; the same verdicts, cache rows and stats."""
    from ..judges.runner import JudgeStats, split_cached

    t0 = time.monotonic()
    st = JudgeStats(judge.name, judge.config.backend, judge.model, items=len(items))
    keys = judge.keys(items)
    ids = items["item_id"].astype(str).tolist()
    out, todo = split_cached(judge.name, ids, keys, cache)
    st.cached = len(items) - len(todo)
    bar = _bar(judge.name, len(items), progress, position, st.cached)
    if todo:
        cols = [c for c in items.columns if c in ("item_id", "text", "context")]
        got = _map_rows(executor, items.iloc[todo][cols], _OfflineFn, judge, cache, progress)
        rows = []
        for i, v in zip(todo, got):
            if v is None:
                raise RuntimeError(f"judge {judge.name!r}: Ray returned no verdict for item {ids[i]!r}")
            v.prompt_hash = keys[i]
            out[i] = v
            rows.append((keys[i], judge.name, v))
        st.called = len(todo)
    return _finish(out, st, rows if todo else [], cache, bar, len(todo), t0)


def run_llm_ray(judge, items: pd.DataFrame, cache, *, executor: Executor, progress: bool = True, position: int = 0):
    """An online OpenAI-compatible judge over Ray: cache at the driver, calls in actors (the runner's loop)."""
    from ..judges.runner import JudgeStats, split_cached

    t0 = time.monotonic()
    cols = [c for c in ("item_id", "text", "context") if c in items.columns]
    records = items[cols].to_dict("records")
    st = JudgeStats(judge.name, judge.config.backend, judge.model, items=len(records))
    reqs = judge.requests(records)
    out, todo = split_cached(judge.name, [r.item_id for r in reqs], [r.key for r in reqs], cache)
    st.cached = len(reqs) - len(todo)
    bar = _bar(judge.name, len(reqs), progress, position, st.cached)
    if todo:
        got = _map_rows(executor, items.iloc[todo][cols], _LLMFn, judge, cache, progress)
        rows = []
        for i, v in zip(todo, got):
            out[i] = v
            failed = (v.error or "").startswith("call failed")  # transport failures are not cached (as locally)
            st.errors += failed
            if not failed:
                st.called += 1
                rows.append((reqs[i].key, judge.name, v))
            st.tokens_in += v.tokens_in
            st.tokens_out += v.tokens_out
            st.cost_usd += v.cost_usd
    return _finish(out, st, rows if todo else [], cache, bar, len(todo), t0)


class _EmbedFn:
    def __init__(self):
        from ..embeddings import embed

        self.embed = embed

    def __call__(self, batch):
        import pyarrow as pa

        df = batch.to_pandas()
        vecs = np.asarray(self.embed(df["text"].tolist()), dtype=np.float32)
        return _out(df["_pos"].to_numpy(), pa.array([v.tobytes() for v in vecs], type=pa.binary()), "vec")


class RayEmbedder:
    """``embedder(texts) -> (n, d) float32`` over Ray actors (each loads the encoder once); rows in input order."""

    def __init__(self, executor: Executor, progress: bool = False):
        self.executor, self.progress = executor, progress

    def __call__(self, texts) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        df = pd.DataFrame({"text": texts, "_pos": np.arange(len(texts))})
        scratch = Path(tempfile.mkdtemp(prefix="ray-embed-"))
        out: list = [None] * len(texts)
        try:
            for b in _map(self.executor, df, _EmbedFn, {}, scratch, self.progress):
                for pos, v in zip(b["_pos"], b["vec"]):
                    out[int(pos)] = np.frombuffer(v, dtype=np.float32)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return np.stack(out)


VERDICT_COLUMNS = VERDICTS
