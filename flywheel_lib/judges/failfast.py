"""Judges that fail loudly: a bound on the share of calls that give no verdict.

A call gives no verdict when it still fails after its retries (a dead endpoint, a rejected key) or when its answer
cannot be parsed. One such call is an abstention that says why; a judge whose calls mostly fail is broken, and a
stage that turned all its calls into abstentions would otherwise report success after paying for every one.

:class:`FailureBound` watches one judge's calls as they end. Once ``min(min_calls, planned)`` calls were made it
knows enough: if more than ``max_rate`` of them failed, :meth:`FailureBound.breached` says so and the runner
stops the judge (and the stage) with :class:`JudgeFailureError`, which names the judge, its last error and what
is already in the verdict cache (a re-run pays only for the rest).

    bound = FailureBound(max_rate=0.2, planned=600)
    bound.record(ok=False, error="call failed after 3 tries: HTTP 500")   # after each call
    bound.breached()                                                        # True once it knows
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FailureBound", "JudgeFailureError", "MAX_FAILURE_RATE", "MIN_CALLS", "check_stats"]

MAX_FAILURE_RATE = 0.2
"""Default bound: a judge may fail at most this share of its calls."""
MIN_CALLS = 50
"""Calls made before the bound is judged (fewer when the judge has fewer to make)."""


class JudgeFailureError(RuntimeError):
    """A judge failed more of its calls than the bound allows; the stage stops."""

    def __init__(self, msg: str, *, judge: str, calls: int, failures: int, last_error: str | None):
        super().__init__(msg)
        self.judge = judge
        """The failing judge's name."""
        self.calls = calls
        """Calls it made this run before it was stopped."""
        self.failures = failures
        """Of those, calls that gave no verdict."""
        self.last_error = last_error
        """The reason of its last failed call."""


@dataclass
class FailureBound:
    """Counts one judge's calls and failures; ``max_rate=None`` (or ``>= 1``) never stops."""

    max_rate: float | None = MAX_FAILURE_RATE
    """Largest share of failed calls allowed."""
    planned: int = 0
    """Calls this judge means to make this run."""
    min_calls: int = MIN_CALLS
    """Calls needed before judging (``min(min_calls, planned)``)."""
    calls: int = 0
    failures: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        if self.max_rate is not None and not 0 <= self.max_rate <= 1:
            raise ValueError(f"max_failure_rate must be in [0, 1] (or None to never stop), not {self.max_rate!r}")

    def record(self, *, ok: bool, error: str | None = None) -> None:
        self.calls += 1
        if not ok:
            self.failures += 1
            self.last_error = error

    @property
    def enough(self) -> int:
        return max(1, min(self.min_calls, self.planned or self.calls))

    def breached(self) -> bool:
        """More than ``max_rate`` of the calls failed, once ``enough`` calls were made."""
        if self.max_rate is None or self.max_rate >= 1 or self.calls < self.enough:
            return False
        return self.failures > self.max_rate * self.calls

    def error(self, judge: str, *, cached: str) -> JudgeFailureError:
        """The error that stops the stage; ``cached`` says what the verdict cache already holds."""
        msg = (f"judge {judge!r} stopped: {self.failures} of its {self.calls} calls gave no verdict "
               f"({self.failures / max(self.calls, 1):.0%}, above max_failure_rate {self.max_rate:.0%}); "
               f"last error: {(self.last_error or 'none').rstrip('.')}. Already cached: {cached}; a re-run pays only for what is missing. "
               f"Fix the judge (endpoint, key, model, max_tokens) or raise max_failure_rate to accept abstentions.")
        return JudgeFailureError(msg, judge=judge, calls=self.calls, failures=self.failures,
                                 last_error=self.last_error)


def check_stats(stats, max_rate: float | None, *, last_error: str | None = None, cached: str = "") -> None:
    """The same bound on a finished judge's :class:`~flywheel_lib.judges.runner.JudgeStats` (executors that do
    not stop early: the batch API, Ray); raises :class:`JudgeFailureError`."""
    calls = stats.called + stats.errors
    bound = FailureBound(max_rate, planned=calls, calls=calls, failures=stats.errors + stats.unparseable,
                         last_error=last_error)
    if bound.breached():
        raise bound.error(stats.judge, cached=cached or f"{stats.cached + stats.called} of {stats.items} verdicts of "
                          f"this judge ({stats.cached} from earlier runs, {stats.called} from this one)")
