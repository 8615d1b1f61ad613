"""OpenAI judges: the ``openai`` backend and ``openai-compatible`` (the same SDK pointed at any base URL: vLLM,
Ollama, llama.cpp's server, LM Studio).

Structured output through a JSON schema (``response_format={"type": "json_schema", ...}``); servers without it
can use ``params: {response_format: json_object}`` or ``none`` (the parser still reads the JSON from the text).

Two transports, the same requests and the same error mapping (``params: {transport: ...}``):

- ``aiohttp`` (the default where aiohttp is installed, as the ``openai`` extra does): one POST per verdict to
  ``<base_url>/chat/completions``. At 32 concurrent calls the openai SDK spends ~1.3 ms of CPU per call on its own
  request machinery and httpx, aiohttp ~0.3 ms; on a 2-core machine that is the difference between 0.88 and 0.95 of
  the ideal throughput (``benchmarks/bench_judges.py``).
- ``sdk``: the openai SDK's ``AsyncOpenAI.post`` (its HTTP layer, status errors and auth).

Retries are never the transport's (the SDK's ``max_retries=0``): the runner retries, so every retry is counted and
honours Retry-After. The key travels in the Authorization header only.
"""

from __future__ import annotations

import email.utils
import functools
import importlib.util
import json
import os
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .base import Completion, LLMJudge, PermanentError, Request, TransientError
from .prompt import verdict_schema

__all__ = ["OpenAIJudge", "OpenAICompatibleJudge", "error_message", "retry_after_from"]


class OpenAIParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    """How the verdict's shape is enforced by the server."""
    transport: Literal["auto", "aiohttp", "sdk"] = "auto"
    """HTTP client: ``auto`` takes aiohttp where it is installed, else the openai SDK."""


OPENAI_URL = "https://api.openai.com/v1"


def _transient_status(code: int) -> bool:
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


class OpenAIJudge(LLMJudge):
    Params = OpenAIParams
    needs_key = True

    _clients: list | None = None
    _session = None
    _turn = 0
    PER_CLIENT = 8
    """Connections per SDK client: httpx's pool scans its connections per request, so big pools are split."""

    @functools.cached_property
    def transport(self) -> str:
        """The HTTP client this judge uses, decided once (``complete`` asks on every call)."""
        t = self.params.transport
        if t == "auto":
            return "aiohttp" if importlib.util.find_spec("aiohttp") is not None else "sdk"
        return t

    SDK_EXTRA = "openai"

    def sdk_modules(self) -> list[str]:
        return ["aiohttp"] if self.transport == "aiohttp" else ["openai", "httpx"]

    def base_url(self) -> str:
        return (self.config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")

    def _make_client(self, n: int):
        import httpx
        import openai

        http = openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
        return openai.AsyncOpenAI(api_key=self.api_key() or "not-needed", base_url=self.base_url(),
                                  max_retries=0, timeout=self.config.options.timeout_s, http_client=http)

    def _same_loop(self) -> None:
        """Clients belong to the event loop that made them: a judge called again from a new loop (every
        ``panel.judge`` runs its own) drops what an earlier loop left open (a stop can end a loop before
        :meth:`aclose`), and makes new ones."""
        import asyncio

        loop = asyncio.get_running_loop()
        if getattr(self, "_loop", None) is not loop:
            self._clients, self._session, self._loop = None, None, loop

    def _next_client(self):
        self._same_loop()
        if self._clients is None:
            c = self.config.limits.concurrency
            k = max(1, -(-c // self.PER_CLIENT))
            self._clients = [self._make_client(-(-c // k) + 2) for _ in range(k)]
        self._turn += 1
        return self._clients[self._turn % len(self._clients)]

    def _aiohttp_session(self):
        self._same_loop()
        if self._session is None:
            import aiohttp

            key = self.api_key()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=self.config.limits.concurrency + 2),
                timeout=aiohttp.ClientTimeout(total=self.config.options.timeout_s))
            self._url = f"{self.base_url()}/chat/completions"
        return self._session

    def _kwargs(self, req: Request) -> dict:
        o = self.config.options
        kw = {"model": self.config.model, "messages": req.messages, "temperature": o.temperature,
              "max_tokens": o.max_tokens}
        if o.top_p is not None:
            kw["top_p"] = o.top_p
        if o.seed is not None:
            kw["seed"] = o.seed
        rf = self.params.response_format
        if rf == "json_schema":
            kw["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "verdict", "strict": True, "schema": verdict_schema(self.taxonomy.ids)}}
        elif rf == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    async def complete(self, req: Request) -> Completion:
        if self.transport == "aiohttp":
            status, headers, content = await self._post_aiohttp(req)
        else:
            status, headers, content = await self._post_sdk(req)
        if status >= 400:
            if _transient_status(status):
                raise TransientError(f"HTTP {status}", retry_after=retry_after_from(headers))
            raise PermanentError(f"HTTP {status}: {error_message(content)}")
        try:
            data = json.loads(content)
            ch = data["choices"][0]
            msg = ch.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise TransientError(f"malformed response body ({type(e).__name__})") from None
        if msg.get("refusal"):
            raise PermanentError(f"model refused: {str(msg['refusal'])[:200]}")
        usage = data.get("usage") or {}
        return Completion(text=msg.get("content") or "", finish_reason=ch.get("finish_reason") or "stop",
                          tokens_in=int(usage.get("prompt_tokens") or 0),
                          tokens_out=int(usage.get("completion_tokens") or 0))

    async def _post_aiohttp(self, req: Request):
        import aiohttp

        session = self._aiohttp_session()
        try:
            async with session.post(self._url, data=json.dumps(self._kwargs(req)).encode()) as r:
                return r.status, r.headers, await r.read()
        except TimeoutError:
            raise TransientError("timeout") from None
        except aiohttp.ClientError as e:
            raise TransientError(f"connection error ({type(e).__name__})") from None

    async def _post_sdk(self, req: Request):
        import httpx
        import openai

        client = self._next_client()
        try:
            # client.post with the body as is: the SDK's HTTP layer, status errors and auth, without its per-call
            # TypedDict transform and pydantic response models (milliseconds of CPU per call at high concurrency)
            raw = await client.post("/chat/completions", body=self._kwargs(req), cast_to=httpx.Response)
        except openai.APIStatusError as e:
            return e.status_code, e.response.headers, e.response.content
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            raise TransientError(type(e).__name__) from None
        return raw.status_code, raw.headers, raw.content

    async def aclose(self) -> None:
        for c in self._clients or []:
            await c.close()
        self._clients = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None  # nothing of the loop stays on the judge (it is pickled to Ray workers)


def error_message(content: bytes) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}``), else the start of the body."""
    try:
        err = json.loads(content).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        msg = None
    return str(msg or content[:200].decode("utf-8", "replace"))[:200]


class OpenAICompatibleJudge(OpenAIJudge):
    """Any server speaking the OpenAI chat-completions API; ``base_url`` is required, a key only if it wants one."""

    needs_key = False

    def __init__(self, config, *, taxonomy, domain=None):
        super().__init__(config, taxonomy=taxonomy, domain=domain)
        if not config.base_url:
            from .config import PanelError

            raise PanelError(f"judge {config.name!r} (openai-compatible) needs base_url, e.g. http://127.0.0.1:8000/v1")
