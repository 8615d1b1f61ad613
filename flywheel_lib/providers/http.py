"""One HTTP client for the providers' APIs (aiohttp): many concurrent calls from a coroutine, a few from sync code.

* **From a coroutine** (:meth:`Http.post_json`, the judges' live calls): one connection pool per event loop, no
  retries of its own (the judges' runner retries, so every retry is counted and honours Retry-After).
* **From sync code** (:meth:`Http.call`, :meth:`Http.call_json`, :meth:`Http.upload`: the Batch APIs, fine-tuning
  jobs): each call on a short-lived session in its own event loop (a helper thread where a loop already runs, as in
  Jupyter), retried under :func:`flywheel_lib.providers.retry.retrying`.

Statuses 429, 408, 409 and 5xx, a timeout or a dropped connection are a :class:`TransientError` (carrying the
server's Retry-After); any other status of 400 or more is a :class:`PermanentError` with the server's message.
The key travels in a request header only: it is in no error message and in nothing pickled.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import PermanentError, TransientError
from .retry import RetryLimits, retrying, tries

__all__ = ["Http", "TransientError", "PermanentError", "transient_status", "retry_after_from", "error_message",
           "raise_for_status", "run_coroutine"]

T = TypeVar("T")

Body = bytes | dict | list | Callable[[], Any] | None
"""A request body: bytes as they are, a dict or list as JSON, or a callable that builds the body (an
``aiohttp.FormData``) afresh for every attempt."""


def transient_status(code: int) -> bool:
    return code == 429 or code >= 500 or code in (408, 409)


def retry_after_from(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def error_message(body: bytes | str | dict | None) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}``, Anthropic's ``{"type": "error",
    "error": {...}}``), else the start of the body; at most 200 characters."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        inner = err.get("error")
        if isinstance(inner, dict):
            err = inner
        return str(err.get("message") or err.get("type") or err.get("code") or err)[:200]
    return str(err or body)[:200]


def raise_for_status(status: int, headers, content: bytes) -> None:
    """Nothing for a 2xx or 3xx; a :class:`TransientError` or a :class:`PermanentError` for a failure."""
    if status < 400:
        return
    if transient_status(status):
        raise TransientError(f"HTTP {status}", retry_after=retry_after_from(headers))
    raise PermanentError(f"HTTP {status}: {error_message(content)}")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, also from inside a running loop (Jupyter): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


class Http:
    """A provider's API under ``base_url``: its headers (auth included), timeout and connection pool.

    ``limits`` is the retry policy of the sync calls (anything with ``max_retries``, ``backoff_base_s``,
    ``backoff_max_s`` and ``retry_after_max_s``, e.g. a judge's ``config.limits``).
    """

    def __init__(self, base_url: str, headers: dict[str, str], *, timeout_s: float = 60.0, connections: int = 8,
                 limits=None):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.timeout_s, self.connections = timeout_s, connections
        self.limits = limits or RetryLimits()
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker) without what belongs to one event loop."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_session", "_loop")} | {"_session": None,
                                                                                                "_loop": None}

    def copy(self, **changes) -> Http:
        """The same client with some attributes changed (e.g. ``timeout_s``), sharing no connection."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__getstate__(), **changes)
        return new

    def url(self, path: str) -> str:
        """``path`` under the base URL; a full URL (a results link the provider handed out) as it is."""
        return path if "://" in path else f"{self.base_url}{path}"

    def _new_session(self, connections: int):
        import aiohttp

        return aiohttp.ClientSession(headers=self.headers, connector=aiohttp.TCPConnector(limit=connections),
                                     timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    def _pool(self):
        """The session of the running event loop: a session belongs to the loop that made it, so a client called
        from a new loop (every ``panel.judge`` runs its own) drops the old one and opens another."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._session, self._loop = self._new_session(self.connections), loop
        return self._session

    async def send(self, method: str, path: str, body: Body = None, *, session=None) -> bytes:
        """One request; the response body of a success, else :class:`TransientError` or :class:`PermanentError`."""
        import aiohttp

        data = body() if callable(body) else body
        headers = None
        if isinstance(data, (dict, list)):
            data = json.dumps(data).encode()
        if isinstance(data, bytes):
            headers = {"Content-Type": "application/json"}
        s = session if session is not None else self._pool()
        try:
            async with s.request(method, self.url(path), data=data, headers=headers) as r:
                status, resp_headers, content = r.status, r.headers, await r.read()
        except TimeoutError:
            raise TransientError("timeout") from None
        except aiohttp.ClientError as e:
            raise TransientError(f"connection error ({type(e).__name__})") from None
        raise_for_status(status, resp_headers, content)
        return content

    async def post_json(self, path: str, payload: dict) -> bytes:
        """POST ``payload`` as JSON on the running loop's pool; the raw response body (the caller parses it)."""
        return await self.send("POST", path, payload)

    async def _one_shot(self, method: str, path: str, body: Body) -> bytes:
        async with self._new_session(2) as s:
            return await self.send(method, path, body, session=s)

    def call(self, method: str, path: str, body: Body = None) -> bytes:
        """One request from sync code, retried under ``limits``; a failure names the method and path."""
        where = f"{method} {self.url(path).split('?')[0]}"
        r = retrying(self.limits)
        try:
            return r(lambda: run_coroutine(self._one_shot(method, path, body)))
        except TransientError as e:
            raise TransientError(f"{where} failed after {tries(r)} tries: {e}", retry_after=e.retry_after) from None
        except PermanentError as e:
            raise PermanentError(f"{e} ({where})") from None

    def call_json(self, method: str, path: str, body: Body = None) -> dict:
        """:meth:`call` with the response read as JSON."""
        return json.loads(self.call(method, path, body))

    def upload(self, path: str, fields: dict[str, str], *, filename: str, data: bytes,
               content_type: str = "application/jsonl") -> dict:
        """POST a multipart form (``fields`` and one ``file``) from sync code; the response as JSON."""

        def form():
            import aiohttp

            f = aiohttp.FormData()
            for k, v in fields.items():
                f.add_field(k, v)
            f.add_field("file", data, filename=filename, content_type=content_type)
            return f

        return self.call_json("POST", path, form)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session, self._loop = None, None
