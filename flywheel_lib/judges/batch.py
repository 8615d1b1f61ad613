"""Batch mode for API judges (``mode: batch`` in the panel file): the providers' Batch APIs, journaled and resumable.

:func:`run_batch` is what the runner calls for a batch-mode judge, with the requests the cache did not answer:

1. **re-attach**: batches the journal (:mod:`.batch_journal`, beside the verdict cache) holds as in flight for this
   judge are polled and collected, and their requests are not sent again;
2. **submit** the rest, unique by cache key (the key is the ``custom_id``), split at the provider's limits (OpenAI
   50,000 requests or 200 MB a file, Anthropic 100,000 requests or 256 MB a batch), each batch journaled before
   its upload;
3. **poll** every batch, the wait growing from ``batch.poll_s`` by ``poll_growth`` up to ``poll_max_s``; the
   progress bar shows the provider's own counts;
4. **collect** an ended batch: each result goes to the verdict cache under its key (the key an online call uses,
   so a verdict bought in a batch is a cache hit online and the other way round), priced at the batch rate
   (``prices.batch``, default half the online price); requests that expired, were cancelled or failed with a
   429/5xx are resubmitted alone, up to ``batch.max_resubmits`` times, then are abstentions with the provider's
   reason; a 4xx or a refusal is an abstention at once; a result line that cannot be read is an abstention for
   that item only.

Every item ends with exactly one verdict or one explicit abstention. Abstentions for transport reasons (expired,
failed, malformed lines, a batch still running at ``max_wait_s``) are not cached, so the next run tries again;
a batch still running is collected by the next run, never paid twice.

:func:`write_batch_file` and :func:`read_batch_results` use the same OpenAI JSONL for a self-hosted model: vLLM's
``python -m vllm.entrypoints.openai.run_batch -i requests.jsonl -o results.jsonl --model ...`` reads the one and
writes the other; the results land in the verdict cache, and the next ``02_judge`` run reads them from there.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

from ..records import Verdict
from .base import LLMJudge, PermanentError, Request, TransientError
from .batch_journal import BatchJournal, Slot
from .batch_providers import OpenAIBatches, Outcome, provider_for
from .cache import VerdictCache
from .prompt import ParseError, parse_verdict

__all__ = ["run_batch", "write_batch_file", "read_batch_results"]


def _verdict(judge: LLMJudge, key: str, item_id: str, o: Outcome, prices) -> Verdict:
    comp = o.completion
    cost = prices.cost(comp.tokens_in, comp.tokens_out)
    common = dict(model=judge.model, prompt_hash=key, tokens_in=comp.tokens_in, tokens_out=comp.tokens_out,
                  cost_usd=cost, latency_s=0.0)
    try:
        p = parse_verdict(comp.parsed if comp.parsed is not None else comp.text, judge.taxonomy.ids,
                          solvable_id=judge.taxonomy.solvable_id, finish_reason=comp.finish_reason)
        return Verdict(item_id=item_id, judge=judge.name, category=p.category, reason_key=p.reason_key,
                       rationale=p.rationale, **common)
    except ParseError as e:
        return Verdict.abstain(item_id, judge.name, f"unparseable verdict: {e}", **common)


class _Run:
    """One batch-mode judge's work in one run (the state :func:`run_batch` threads through its steps)."""

    def __init__(self, judge: LLMJudge, reqs: list[Request], out: dict, cache: VerdictCache, st, bar):
        self.judge, self.out, self.cache, self.st, self.bar = judge, out, cache, st, bar
        self.cfg = judge.config.batch
        self.prices = judge.config.prices.batch_prices()
        self.prov = provider_for(judge)
        self.journal = BatchJournal(cache.dir)
        self.items: dict[str, list[str]] = {}
        self.reqs: dict[str, Request] = {}
        for r in reqs:
            self.items.setdefault(r.key, []).append(r.item_id)
            self.reqs.setdefault(r.key, r)
        self.tries: Counter = Counter()
        self.active: dict[str, Slot] = {}
        self.slot_keys: dict[str, dict[str, list[str]]] = {}
        self.counts: dict[str, tuple[int, int]] = {}
        self.collected = 0

    # --- outcomes ---------------------------------------------------------------------------------
    def _abstain(self, key: str, why: str) -> None:
        for iid in self.items.pop(key, []):
            self.out[iid] = Verdict.abstain(iid, self.judge.name, why, model=self.judge.model, prompt_hash=key)
            self.st.abstained += 1
            self.st.errors += 1
            self.bar.update(1)

    def _resolve(self, o: Outcome, pending: list) -> str | None:
        """Record one outcome; returns the key when it should be resubmitted."""
        key = o.key
        if o.kind == "ok":
            first = self.items.get(key, [None])[0]
            v = _verdict(self.judge, key, first or "", o, self.prices)
            pending.append((key, self.judge.name, v))  # cached also when this run no longer needs it: it was paid
            self.st.tokens_in += v.tokens_in
            self.st.tokens_out += v.tokens_out
            self.st.cost_usd += v.cost_usd
            for n, iid in enumerate(self.items.pop(key, [])):
                w = dataclasses.replace(v, item_id=iid)
                if n:
                    w.cost_usd, w.tokens_in, w.tokens_out = 0.0, 0, 0  # one call answered them all
                self.out[iid] = w
                self.st.called += 1
                self.st.abstained += w.category is None
                self.bar.update(1)
            return None
        if key not in self.items:
            return None
        if o.kind == "retry" and self.tries[key] <= self.cfg.max_resubmits:
            self.st.retries += 1
            return key
        label = {"retry": f"batch request failed after {self.tries[key]} submissions", "fail": "batch request failed",
                 "malformed": "batch result unreadable"}[o.kind]
        self._abstain(key, f"{label}: {o.reason}")
        return None

    # --- steps ------------------------------------------------------------------------------------
    def reattach(self) -> None:
        for slot in self.journal.in_flight(self.judge.name, self.prov.url):
            if slot.state == "preparing":
                bid = None
                try:
                    bid = self.prov.find(slot.local_id)
                except (TransientError, PermanentError):
                    pass
                if bid is None:
                    self.journal.update(slot, state="lost", info="never confirmed by the provider")
                    continue
                self.journal.update(slot, state="submitted", batch_id=bid)
            keys = self.journal.keys(slot)
            self.active[slot.local_id] = slot
            self.slot_keys[slot.local_id] = keys
            for k in keys:
                if k in self.items:
                    self.tries[k] += 1
        self.st.reattached = len(self.active)

    def submit(self, keys: list[str]) -> None:
        max_n = min(self.cfg.max_requests or self.prov.max_requests, self.prov.max_requests)
        max_b = min(self.cfg.max_bytes or self.prov.max_bytes, self.prov.max_bytes)
        chunk: list[tuple[str, bytes]] = []
        size = 0
        for k in keys:
            line = self.prov.line(self.reqs[k])
            if len(line) + 1 > max_b:
                self._abstain(k, f"request of {len(line)} bytes exceeds the batch size limit ({max_b} bytes)")
                continue
            if chunk and (len(chunk) >= max_n or size + len(line) + 1 > max_b):
                self._send(chunk)
                chunk, size = [], 0
            chunk.append((k, line))
            size += len(line) + 1
        if chunk:
            self._send(chunk)

    def _send(self, chunk: list[tuple[str, bytes]]) -> None:
        keys = {k: list(self.items[k]) for k, _ in chunk}
        slot = self.journal.open_slot(self.judge.name, self.prov.name, self.prov.url, keys)
        lines = [ln for _, ln in chunk]
        try:
            fid = self.prov.upload(lines, slot.local_id)
            if fid:
                self.journal.update(slot, file_id=fid)
            bid = self.prov.create(fid, lines, slot.local_id)
        except (PermanentError, TransientError) as e:
            self.journal.update(slot, state="rejected", info=str(e)[:500])
            for k in keys:
                self._abstain(k, f"batch rejected: {e}")
            return
        self.journal.update(slot, state="submitted", batch_id=bid)
        for k in keys:
            self.tries[k] += 1
        self.active[slot.local_id] = slot
        self.slot_keys[slot.local_id] = keys
        self.st.batches += 1

    def collect(self, slot: Slot, status) -> list[str]:
        pending: list = []
        again: list[str] = []
        seen: set[str] = set()
        keys = self.slot_keys[slot.local_id]
        for o in self.prov.results(status):
            if o.key not in keys or o.key in seen:
                continue
            seen.add(o.key)
            k = self._resolve(o, pending)
            if k:
                again.append(k)
        why = f"no result (batch {status.state})"
        for k in keys:
            if k not in seen:
                k2 = self._resolve(Outcome(k, "retry", reason=why), pending)
                if k2:
                    again.append(k2)
        if pending:
            self.cache.put_many(pending)
        self.journal.update(slot, state="collected", info=status.state)
        self.collected += status.total
        return again

    def poll(self) -> None:
        wait, t0 = self.cfg.poll_s, time.monotonic()
        while self.active:
            again: list[str] = []
            for lid, slot in list(self.active.items()):
                try:
                    s = self.prov.status(slot.batch_id)
                except PermanentError as e:  # the batch is gone (404) or the key no longer works: say so per item
                    self.journal.update(slot, state="collected", info=f"unreachable: {e}")
                    for k in self.slot_keys[lid]:
                        if k in self.items:
                            self._abstain(k, f"batch {slot.batch_id} unreachable: {e}")
                    del self.active[lid]
                    continue
                except TransientError:
                    continue  # polled again next round
                self.counts[lid] = (s.done, s.total)
                if s.ended:
                    again += self.collect(slot, s)
                    del self.active[lid]
                    self.counts.pop(lid, None)
            if again:
                self.submit(again)
                wait = self.cfg.poll_s
            self._show(wait)
            if not self.active:
                break
            if self.cfg.max_wait_s is not None and time.monotonic() - t0 > self.cfg.max_wait_s:
                for lid, slot in self.active.items():
                    for k in self.slot_keys[lid]:
                        if k in self.items:
                            self._abstain(k, f"batch {slot.batch_id} still {slot.state} after {self.cfg.max_wait_s:g}s: "
                                             "run again to collect it (it will not be resubmitted)")
                break
            time.sleep(wait)
            wait = min(self.cfg.poll_max_s, wait * self.cfg.poll_growth)

    def _show(self, wait: float) -> None:
        done = sum(d for d, _ in self.counts.values())
        total = sum(t for _, t in self.counts.values())
        self.bar.set_postfix({"batches": len(self.active), "provider": f"{done}/{total}", "next poll": f"{wait:.0f}s",
                              **self.st.postfix()})

    def close(self) -> None:
        for k in list(self.items):  # defensive: nothing may end without a row
            self._abstain(k, "batch run ended without a result for this request")
        self.journal.close()


def run_batch(judge: LLMJudge, reqs: list[Request], out: dict, cache: VerdictCache | None, st, bar) -> None:
    """Judge ``reqs`` through the provider's Batch API; fills ``out[item_id]`` and ``st`` like the online path."""
    if cache is None:
        from .config import PanelError

        raise PanelError(f"judge {judge.name!r} runs in batch mode: it needs a cache_dir (the batch journal lives there)")
    t0 = time.monotonic()
    st.batches = st.reattached = 0
    r = _Run(judge, reqs, out, cache, st, bar)
    try:
        r.reattach()
        attached = {k for keys in r.slot_keys.values() for k in keys}
        r.submit([k for k in r.items if k not in attached])
        r.poll()
    finally:
        r.close()
        st.wall_s = time.monotonic() - t0


# --- the same JSONL for a self-hosted model (vLLM run_batch) ------------------------------------------

def write_batch_file(judge: LLMJudge, items, path: str | Path, *, cache_dir: str | Path | None = None) -> int:
    """Write the OpenAI batch JSONL for ``items`` (those the cache cannot answer); returns the lines written."""
    cols = [c for c in ("item_id", "text", "context") if c in items.columns]
    reqs = judge.requests(items[cols].to_dict("records"))
    hit = VerdictCache(cache_dir).get_many(r.key for r in reqs) if cache_dir is not None else {}
    prov = OpenAIBatches.__new__(OpenAIBatches)
    prov.judge = judge
    seen, n = set(), 0
    with open(path, "wb") as f:
        for r in reqs:
            if r.key in hit or r.key in seen:
                continue
            seen.add(r.key)
            f.write(prov.line(r) + b"\n")
            n += 1
    return n


def read_batch_results(judge: LLMJudge, path: str | Path, cache_dir: str | Path, *, batch_prices: bool = True) -> Counter:
    """Read an OpenAI-format results JSONL (vLLM run_batch's output) into the verdict cache; returns counts by kind."""
    prices = judge.config.prices.batch_prices() if batch_prices else judge.config.prices
    cache = VerdictCache(cache_dir)
    kinds: Counter = Counter()
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            o = OpenAIBatches.read_line(line)
            if o is None:
                raise ValueError(f"{path}: line {n} is not a batch result (no custom_id)")
            kinds[o.kind] += 1
            if o.kind == "ok":
                rows.append((o.key, judge.name, _verdict(judge, o.key, "", o, prices)))
    cache.put_many(rows)
    cache.close()
    return kinds
