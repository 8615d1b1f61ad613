"""One judge's requests, handed to its workers only once claimed in the verdict cache.

Two runs sharing a cache (two notebooks, a re-run started while the first still runs) would otherwise both pay
for every prompt neither had cached when it started. :class:`ClaimQueue` claims requests a chunk at a time
(:meth:`~flywheel_lib.judges.cache.VerdictCache.claim`, one transaction per chunk): a claimed request goes to a
worker; one whose verdict another run already wrote is answered from the cache; one another run holds waits, and
is polled until its verdict arrives (answered from the cache: ``cached=True``, no cost) or its claim is released
or goes stale (then claimed and called here). Without a cache it is a plain queue.

    q = ClaimQueue(reqs, cache, on_answered=lambda req, row: ...)
    while (req := await q.next()) is not None:
        ...                       # call; q.failed(req) when the call gave nothing to store
    q.close()                     # drop what this run still holds
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .base import Request
from .cache import CLAIM_TTL_S, VerdictCache, new_owner

__all__ = ["ClaimQueue", "POLL_S"]

POLL_S = 0.2
"""How often a run waiting on another run's claims looks for their verdicts."""


class ClaimQueue:
    """Requests to call, claimed first; ``on_answered(req, row)`` receives those another run answered."""

    def __init__(self, reqs: list[Request], cache: VerdictCache | None, *,
                 on_answered: Callable[[Request, dict], None], chunk: int = 64, poll_s: float = POLL_S,
                 ttl_s: float = CLAIM_TTL_S):
        self.todo = deque(reqs)
        self.cache = cache
        self.on_answered = on_answered
        self.chunk, self.poll_s, self.ttl_s = max(1, chunk), poll_s, ttl_s
        self.owner = new_owner() if cache is not None else ""
        self.ready: deque[Request] = deque()
        self.waiting: dict[str, list[Request]] = {}
        self.waited = 0
        """Requests that waited on another run's claim at least once."""
        self._last_poll = 0.0
        self._lock = asyncio.Lock()

    async def next(self) -> Request | None:
        """The next request this run should call, or ``None`` when none is left (every other one answered)."""
        if self.cache is None:
            return self.todo.popleft() if self.todo else None
        while True:
            if self.ready:
                return self.ready.popleft()
            if self.todo:
                self._claim([self.todo.popleft() for _ in range(min(self.chunk, len(self.todo)))])
                continue
            if not self.waiting:
                return None
            async with self._lock:  # one worker polls; the others find its result
                if self.ready or not self.waiting:
                    continue
                wait = self._last_poll + self.poll_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_poll = time.monotonic()
                self._poll()

    def _claim(self, reqs: list[Request]) -> None:
        claimed, answered = self.cache.claim([r.key for r in reqs], self.owner, ttl_s=self.ttl_s)
        mine = set(claimed)
        for r in reqs:
            if r.key in answered:
                self.on_answered(r, answered[r.key])
            elif r.key in mine:
                mine.discard(r.key)  # a repeated prompt in this run waits for the first one's verdict
                self.ready.append(r)
            else:
                if r.key not in self.waiting:
                    self.waited += 1
                self.waiting.setdefault(r.key, []).append(r)

    def _poll(self) -> None:
        answered, free = self.cache.waiting(list(self.waiting))
        for k, row in answered.items():
            for r in self.waiting.pop(k):
                self.on_answered(r, row)
        if free:
            self._claim([r for k in free for r in self.waiting.pop(k)])

    def failed(self, req: Request) -> None:
        """The call gave nothing to store: release its claim so that a waiting run may try."""
        if self.cache is not None:
            self.cache.release(self.owner, [req.key])

    def renew(self) -> None:
        if self.cache is not None:
            self.cache.renew(self.owner, ttl_s=self.ttl_s)

    def close(self) -> None:
        """Release every claim this run still holds (its end, or its stop)."""
        if self.cache is not None:
            self.cache.release(self.owner)
