"""Running judges over items: concurrency, rate limits, retries, the cache and cost accounting.

LLM judges run together in one asyncio event loop; each judge has its own pool of ``limits.concurrency``
workers and its own rate limiter (requests and tokens per minute). A call that fails with a 429, a 5xx, a
timeout or a dropped connection is retried with exponential backoff and full jitter, honouring the server's
Retry-After. Verdicts go to the cache as they arrive, in small batches (at most a quarter of a second or 64
verdicts old; one SQLite transaction per verdict costs more CPU than the call at high concurrency), and whatever
is pending is written when the run ends or is interrupted. A verdict that cannot be parsed, or a call
that still fails after its retries, becomes an abstention saying why: never a guessed label, never a dropped row.
A judge for which that happens too often stops the run (:mod:`flywheel_lib.judges.failfast`). A request is claimed
in the cache before its call, so two runs sharing a cache pay each prompt once (:mod:`flywheel_lib.judges.claims`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

from ..providers.http import run_coroutine
from ..providers.retry import RETRYABLE, async_retrying, tries
from ..records import Verdict
from .base import LLMJudge, OfflineJudge, PermanentError, Request
from .cache import VerdictCache
from .claims import ClaimQueue
from .failfast import MAX_FAILURE_RATE, FailureBound, JudgeFailureError
from .prompt import ParseError, parse_verdict

FLUSH_EVERY = 64
FLUSH_AFTER_S = 0.25
"""Pending verdicts are written to the cache when this many have piled up, or when the oldest is this old."""

__all__ = ["JudgeStats", "RateLimiter", "split_cached", "run_offline", "run_llm", "run_coroutine",
           "JudgeFailureError"]


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
    unparseable: int = 0
    """Answers that could not be parsed (a subset of abstained; with ``errors``, the calls that gave no verdict)."""
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
    """One request under the retry policy (:mod:`flywheel_lib.providers.retry`): ``(completion, None)``, or
    ``(None, why)`` once it fails for good (the abstention's reason)."""
    timeout_s = judge.config.options.timeout_s + 5  # a guard above the client's own timeout

    def count(_state) -> None:
        st.retries += 1

    retrying = async_retrying(judge.config.limits, on_retry=count)
    try:
        async for attempt in retrying:
            with attempt:
                await limiter.acquire(req.est_tokens)
                async with asyncio.timeout(timeout_s):
                    return await judge.complete(req), None
    except RETRYABLE as e:
        return None, f"call failed after {tries(retrying)} tries: {str(e) or type(e).__name__}"
    except PermanentError as e:
        return None, f"call failed: {e}"
    except Exception as e:  # noqa: BLE001 - anything else is an abstention that says what happened
        return None, f"call failed: {type(e).__name__}: {e}"
    return None, "call failed: no attempt made"


async def _judge_llm(judge: LLMJudge, reqs: list[Request], out: dict, cache, st: JudgeStats, bar, *,
                     max_failure_rate: float | None = MAX_FAILURE_RATE) -> None:
    limiter = RateLimiter(judge.config.limits.rpm, judge.config.limits.tpm, burst=judge.config.limits.concurrency)
    prices = judge.config.prices
    ids, solvable = judge.taxonomy.ids, judge.taxonomy.solvable_id
    bound = FailureBound(max_failure_rate, planned=len(reqs))
    last_post = [0.0]
    pending: list = []

    def answered(req: Request, row: dict) -> None:  # another run paid for it while this one waited
        v = VerdictCache.verdict(row, req.item_id, judge.name, req.key)
        out[req.item_id] = v
        st.cached += 1
        st.abstained += v.category is None
        bar.update(1)

    conc = judge.config.limits.concurrency
    queue = ClaimQueue(reqs, cache, on_answered=answered, chunk=min(256, max(8, 2 * conc)))

    def flush() -> None:
        if pending and cache is not None:
            cache.put_many(pending)
        pending.clear()

    async def worker():
        while (req := await queue.next()) is not None:
            t0 = time.monotonic()
            comp, err = await _call_with_retries(judge, req, limiter, st)
            lat = time.monotonic() - t0
            if comp is None:
                v = Verdict.abstain(req.item_id, judge.name, err, model=judge.model, prompt_hash=req.key, latency_s=lat)
                st.errors += 1
                queue.failed(req)
                bound.record(ok=False, error=err)
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
                    bound.record(ok=True)
                except ParseError as e:
                    v = Verdict.abstain(req.item_id, judge.name, f"unparseable verdict: {e}", **common)
                    st.unparseable += 1
                    bound.record(ok=False, error=v.error)
                pending.append((req.key, judge.name, v))
                st.called += 1
            if v.category is None:
                st.abstained += 1
            out[req.item_id] = v
            bar.update(1)
            if bound.breached():
                where = f"in {cache.path}" if cache is not None else "nothing (no cache_dir)"
                raise bound.error(judge.name, cached=f"{st.cached + st.called} of {st.items} verdicts of this judge "
                                  f"({st.cached} from earlier runs, {st.called} from this one) {where}")
            now = time.monotonic()
            if len(pending) >= FLUSH_EVERY:  # the age bound is the flusher's
                flush()
            if now - last_post[0] > 0.5:
                last_post[0] = now
                bar.set_postfix(st.postfix(), refresh=False)

    async def flusher():  # so that no verdict waits longer than FLUSH_AFTER_S while calls are slow
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_AFTER_S)
            flush()
            if time.monotonic() - renewed > queue.ttl_s / 4:  # the claims' heartbeat
                renewed = time.monotonic()
                queue.renew()

    n = max(1, min(conc, len(reqs)))
    ticker = asyncio.ensure_future(flusher())
    try:
        await _all_or_first_error([worker() for _ in range(n)])
    finally:
        ticker.cancel()
        try:
            flush()
        finally:
            queue.close()
            await judge.aclose()


async def _all_or_first_error(coros) -> None:
    """Await every coroutine; at the first error cancel the rest (no call is started after it) and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, rest = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise t.exception()


def run_llm(judges: list[LLMJudge], items, cache: VerdictCache | None, *, progress: bool = True,
            position: int = 0, max_failure_rate: float | None = MAX_FAILURE_RATE
            ) -> tuple[dict[str, list[Verdict]], dict[str, JudgeStats]]:
    """Judge every item with every LLM judge, all judges at once; returns verdicts in item order.

    A judge whose calls give no verdict (call failures, unparseable answers) more often than ``max_failure_rate``
    (judged once ``min(50, planned)`` calls were made) stops the run with
    :class:`~flywheel_lib.judges.failfast.JudgeFailureError`; the other judges stop too, and every verdict
    obtained so far is in the cache. ``None`` never stops.
    """
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
                    tasks.append(_timed(_judge_llm(j, todo, out, cache, st, bar,
                                                   max_failure_rate=max_failure_rate), st))
            await _all_or_first_error(tasks)
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
