"""The two ways a call to a provider fails: worth retrying or not."""

from __future__ import annotations

__all__ = ["TransientError", "PermanentError"]


class TransientError(RuntimeError):
    """A failure worth retrying (429, 5xx, timeout, dropped connection); ``retry_after`` in seconds if the server said."""

    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


class PermanentError(RuntimeError):
    """A failure not worth retrying (4xx other than 429, a refused request): the item is an abstention."""
