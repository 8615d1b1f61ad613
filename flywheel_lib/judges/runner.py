"""Running judges over items: concurrency, rate limits, retries, the cache and cost accounting.

LLM judges run together in one asyncio event loop; each judge has its own pool of ``limits.concurrency``
workers and its own rate limiter (requests and tokens per minute). A call that fails with a 429, a 5xx, a
timeout or a dropped connection is retried with exponential backoff and full jitter, honouring the server's
Retry-After. Verdicts go to the cache as they arrive, in small batches (at most a quarter of a second or 64
verdicts old; one SQLite transaction per verdict costs more CPU than the call at high concurrency), and whatever
is pending is written when the run ends or is interrupted. A verdict that cannot be parsed, or a call
that still fails after its retries, becomes an abstention saying why: never a guessed label, never a dropped row.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass

from ..records import Verdict
from .base import LLMJudge, OfflineJudge, PermanentError, Request, TransientError
from .cache import VerdictCache
from .prompt import ParseError, parse_verdict

FLUSH_EVERY = 64
FLUSH_AFTER_S = 0.25
"""Pending verdicts are written to the cache when this many have piled up, or when the oldest is this old."""

__all__ = ["JudgeStats", "RateLimiter", "split_cached", "run_offline", "run_llm", "run_coroutine"]


@dataclass
class JudgeStats:
    """What one judge did in one run (a row of the panel's ``stats_`` table)."""

    judge: str
    backend: str
    model: str
    items: int = 0
    called: int = 0
    """Verdicts obtained this run (not from the cache)."""
    cached: int = 0
    abstained: int = 0
    """Abstentions of any kind (parse failures and call failures)."""
    errors: int = 0
    """Calls that failed after their retries (a subset of abstained)."""
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0

    def postfix(self) -> dict:
        return {"cached": self.cached, "abst": self.abstained, "err": self.errors, "$": f"{self.cost_usd:.4f}"}

    def row(self) -> dict:
        return asdict(self)


class RateLimiter:
    """Spaces out requests to stay under requests and tokens per minute (a leaky bucket with a small burst)."""

    def __init__(self, rpm: float | None, tpm: float | None, burst: int = 1):
        self.rpm, self.tpm, self.burst = rpm, tpm, max(1, burst)
        self._next_r = self._next_t = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self._lock:  # GCRA: up to `burst` requests at once, then one per gap
            now = time.monotonic()
            wait = 0.0
            if self.rpm:
                gap = 60.0 / self.rpm
                self._next_r = max(self._next_r, now)
                wait = max(wait, self._next_r - gap * (self.burst - 1) - now)
                self._next_r += gap
            if self.tpm:
                gap = 60.0 * max(tokens, 1) / self.tpm
                self._next_t = max(self._next_t, now)
                wait = max(wait, self._next_t - now)
                self._next_t += gap
        if wait > 0:
            await asyncio.sleep(wait)


def _bar(name: str, total: int, progress: bool, position: int):
    from ..progress import progress_bar

    return progress_bar(total=total, desc=f"judge {name}", disable=not progress, position=position, leave=True,
                        dynamic_ncols=True)


def split_cached(judge_name: str, ids: list[str], keys: list[str], cache: VerdictCache | None
                 ) -> tuple[list[Verdict | None], list[int]]:
    """What the cache already answers: verdicts in item order (``None`` where missing) and the positions to judge.
    Every executor (local, Ray) starts from this, so a cached verdict is read back the same way everywhere."""
    hit = cache.get_many(keys) if cache is not None else {}
    out: list[Verdict | None] = [None] * len(keys)
    todo = []
    for i, (iid, k) in enumerate(zip(ids, keys)):
        if k in hit:
            out[i] = VerdictCache.verdict(hit[k], iid, judge_name, k)
        else:
            todo.append(i)
    return out, todo


def run_offline(judge: OfflineJudge, items, cache: VerdictCache | None, *, progress: bool = True,
                position: int = 0, chunk: int = 2048) -> tuple[list[Verdict], JudgeStats]:
    """Judge every item with an offline judge; cached verdicts are read back, the rest predicted in chunks."""
    t0 = time.monotonic()
    st = JudgeStats(judge.name, judge.config.backend, judge.model, items=len(items))
    keys = judge.keys(items)
    out, todo = split_cached(judge.name, items["item_id"].astype(str).tolist(), keys, cache)
    st.cached = len(items) - len(todo)
    bar = _bar(judge.name, len(items), progress, position)
    bar.update(st.cached)
    for s in range(0, len(todo), chunk):
        idx = todo[s:s + chunk]
        vs = judge.predict(items.iloc[idx])
        if len(vs) != len(idx):
            raise RuntimeError(f"judge {judge.name!r} returned {len(vs)} verdicts for {len(idx)} items")
        rows = []
        for i, v in zip(idx, vs):
            v.prompt_hash = keys[i]
            out[i] = v
            rows.append((keys[i], judge.name, v))
        if cache is not None:
            cache.put_many(rows)
        st.called += len(idx)
        bar.update(len(idx))
        bar.set_postfix(st.postfix(), refresh=False)
    st.abstained = sum(v.category is None for v in out)
    bar.set_postfix(st.postfix())
    bar.close()
    st.wall_s = time.monotonic() - t0
    return out, st


async def _call_with_retries(judge: LLMJudge, req: Request, limiter: RateLimiter, st: JudgeStats):
    lim, opts = judge.config.limits, judge.config.options
    attempt = 0
    while True:
        await limiter.acquire(req.est_tokens)
        try:
            async with asyncio.timeout(opts.timeout_s + 5):  # a guard above the client's own timeout
                return await judge.complete(req), None
        except (TransientError, asyncio.TimeoutError) as e:
            retry_after = getattr(e, "retry_after", None)
            why = str(e) or type(e).__name__
        except PermanentError as e:
            return None, f"call failed: {e}"
        except Exception as e:  # noqa: BLE001 - anything else is an abstention that says what happened
            return None, f"call failed: {type(e).__name__}: {e}"
        if attempt >= lim.max_retries:
            return None, f"call failed after {attempt + 1} tries: {why}"
        backoff = random.uniform(0, min(lim.backoff_max_s, lim.backoff_base_s * 2 ** attempt))
        delay = min(lim.retry_after_max_s, retry_after + random.uniform(0, 0.1 * retry_after + 0.01)) \
            if retry_after is not None else backoff
        attempt += 1
        st.retries += 1
        await asyncio.sleep(delay)


async def _judge_llm(judge: LLMJudge, reqs: list[Request], out: dict, cache, st: JudgeStats, bar) -> None:
    limiter = RateLimiter(judge.config.limits.rpm, judge.config.limits.tpm, burst=judge.config.limits.concurrency)
    prices = judge.config.prices
    ids, solvable = judge.taxonomy.ids, judge.taxonomy.solvable_id
    it = iter(reqs)
    last_post = [0.0]
    pending: list = []

    def flush() -> None:
        if pending and cache is not None:
            cache.put_many(pending)
        pending.clear()

    async def worker():
        for req in it:
            t0 = time.monotonic()
            comp, err = await _call_with_retries(judge, req, limiter, st)
            lat = time.monotonic() - t0
            if comp is None:
                v = Verdict.abstain(req.item_id, judge.name, err, model=judge.model, prompt_hash=req.key, latency_s=lat)
                st.errors += 1
            else:
                cost = prices.cost(comp.tokens_in, comp.tokens_out)
                st.tokens_in += comp.tokens_in
                st.tokens_out += comp.tokens_out
                st.cost_usd += cost
                common = dict(model=judge.model, prompt_hash=req.key, tokens_in=comp.tokens_in,
                              tokens_out=comp.tokens_out, cost_usd=cost, latency_s=lat)
                try:
                    p = parse_verdict(comp.parsed if comp.parsed is not None else comp.text, ids,
                                      solvable_id=solvable, finish_reason=comp.finish_reason)
                    v = Verdict(item_id=req.item_id, judge=judge.name, category=p.category, reason_key=p.reason_key,
                                rationale=p.rationale, **common)
                except ParseError as e:
                    v = Verdict.abstain(req.item_id, judge.name, f"unparseable verdict: {e}", **common)
                pending.append((req.key, judge.name, v))
                st.called += 1
            if v.category is None:
                st.abstained += 1
            out[req.item_id] = v
            bar.update(1)
            now = time.monotonic()
            if len(pending) >= FLUSH_EVERY:  # the age bound is the flusher's
                flush()
            if now - last_post[0] > 0.5:
                last_post[0] = now
                bar.set_postfix(st.postfix(), refresh=False)

    async def flusher():  # so that no verdict waits longer than FLUSH_AFTER_S while calls are slow
        while True:
            await asyncio.sleep(FLUSH_AFTER_S)
            flush()

    n = max(1, min(judge.config.limits.concurrency, len(reqs)))
    ticker = asyncio.ensure_future(flusher())
    try:
        await asyncio.gather(*(worker() for _ in range(n)))
    finally:
        ticker.cancel()
        flush()
        await judge.aclose()


def run_coroutine(coro):
    """Run a coroutine to the end, also from inside a running loop (Jupyter): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def run_llm(judges: list[LLMJudge], items, cache: VerdictCache | None, *, progress: bool = True,
            position: int = 0) -> tuple[dict[str, list[Verdict]], dict[str, JudgeStats]]:
    """Judge every item with every LLM judge, all judges at once; returns verdicts in item order."""
    cols = [c for c in ("item_id", "text", "context") if c in items.columns]
    records = items[cols].to_dict("records")
    ids = [str(r["item_id"]) for r in records]
    plans = []
    for j in judges:
        st = JudgeStats(j.name, j.config.backend, j.model, items=len(records))
        reqs = j.requests(records)
        got, todo_i = split_cached(j.name, [r.item_id for r in reqs], [r.key for r in reqs], cache)
        out: dict[str, Verdict] = {r.item_id: v for r, v in zip(reqs, got) if v is not None}
        todo = [reqs[i] for i in todo_i]
        st.cached = len(reqs) - len(todo)
        st.abstained += sum(v.category is None for v in out.values())
        plans.append((j, todo, out, st))

    async def main():
        bars = []
        try:
            tasks = []
            for n, (j, todo, out, st) in enumerate(plans):
                bar = _bar(j.name, len(records), progress, position + n)
                bar.update(st.cached)
                bars.append(bar)
                if j.config.mode == "batch":  # the provider's Batch API (flywheel_lib/judges/batch.py)
                    from .batch import run_batch

                    tasks.append(asyncio.to_thread(run_batch, j, todo, out, cache, st, bar))
                else:
                    tasks.append(_timed(_judge_llm(j, todo, out, cache, st, bar), st))
            await asyncio.gather(*tasks)
        finally:
            for b, (_, _, _, st) in zip(bars, plans):
                b.set_postfix(st.postfix())
                b.close()

    run_coroutine(main())
    verdicts = {j.name: [out[i] for i in ids] for j, _, out, _ in plans}
    return verdicts, {j.name: st for j, _, _, st in plans}


async def _timed(coro, st: JudgeStats):
    t0 = time.monotonic()
    try:
        await coro
    finally:
        st.wall_s = time.monotonic() - t0
