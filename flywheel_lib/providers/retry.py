"""The one retry policy of every call to a provider (tenacity): what is worth retrying, how long to wait, when to stop.

A :class:`~flywheel_lib.providers.errors.TransientError` (429, 5xx, a dropped connection) or a timeout is retried up to
``limits.max_retries`` times; any other exception ends the call at once. The wait is exponential backoff with full
jitter (uniform between 0 and ``min(backoff_max_s, backoff_base_s * 2**k)`` before the k-th retry, after "Exponential
Backoff And Jitter", AWS Architecture Blog, 2015), or the server's Retry-After (capped by ``retry_after_max_s``, with
up to 10% jitter) when it sent one. The judges' live calls (:mod:`flywheel_lib.judges.runner`) and the sync
calls of :class:`~flywheel_lib.providers.http.Http` (Batch APIs, fine-tuning jobs) share it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from .errors import TransientError

__all__ = ["RETRYABLE", "RetryLimits", "policy", "retrying", "async_retrying", "tries"]

RETRYABLE = (TransientError, TimeoutError)


@dataclass(frozen=True)
class RetryLimits:
    """The policy's knobs where no judge's ``config.limits`` gives them (fine-tuning jobs, generation)."""

    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0


class RetryAfterOrBackoff:
    """tenacity's wait: the server's Retry-After where the failure carries one, else exponential full jitter."""

    def __init__(self, base_s: float, max_s: float, retry_after_max_s: float):
        self.backoff = wait_random_exponential(multiplier=base_s, max=max_s)
        self.retry_after_max_s = retry_after_max_s

    def __call__(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome is not None else None
        after = getattr(err, "retry_after", None)
        if after is not None:
            return min(self.retry_after_max_s, after + random.uniform(0, 0.1 * after + 0.01))
        return self.backoff(state)


def policy(limits, *, on_retry: Callable[[RetryCallState], Any] | None = None) -> dict:
    """tenacity's arguments for ``limits`` (a judge's ``config.limits``): the last failure is re-raised."""
    return dict(retry=retry_if_exception_type(RETRYABLE), stop=stop_after_attempt(1 + limits.max_retries),
                wait=RetryAfterOrBackoff(limits.backoff_base_s, limits.backoff_max_s, limits.retry_after_max_s),
                before_sleep=on_retry, reraise=True)


def retrying(limits, **kw) -> Retrying:
    return Retrying(**policy(limits, **kw))


def async_retrying(limits, **kw) -> AsyncRetrying:
    return AsyncRetrying(**policy(limits, **kw))


def tries(r: Retrying | AsyncRetrying) -> int:
    """How many attempts the last call made."""
    return int(r.statistics.get("attempt_number", 1))
