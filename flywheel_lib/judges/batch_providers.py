"""The two provider Batch APIs over plain HTTP (the standard library's urllib; no SDK needed).

* :class:`OpenAIBatches`: upload a JSONL file to ``/v1/files`` (purpose ``batch``), ``POST /v1/batches``, poll
  ``GET /v1/batches/{id}``, download ``output_file_id`` and ``error_file_id`` from ``/v1/files/{id}/content``.
  The same JSONL (``custom_id, method, url, body``) is what vLLM's ``run_batch`` entry point reads and writes.
* :class:`AnthropicBatches`: ``POST /v1/messages/batches`` with the requests inline, poll
  ``GET /v1/messages/batches/{id}``, stream ``results_url``.

Each request line carries the body the online path sends (``judge._kwargs``: the same messages, the same
structured-output schema or tool) and the request's cache key as ``custom_id``, so a result goes straight to
the verdict cache under the key an online call would use. Results are read into :class:`Outcome` records:
``ok`` (a completion), ``retry`` (expired, cancelled, 429/5xx: worth resubmitting), ``fail`` (a 4xx the same
request would get again, a refusal) or ``malformed`` (a result line that cannot be read).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from .base import Completion, PermanentError, Request, TransientError
from .retry import retrying, tries

OutcomeKind = Literal["ok", "retry", "fail", "malformed"]

__all__ = ["OpenAIBatches", "AnthropicBatches", "BatchStatus", "Outcome", "provider_for", "openai_result"]

_CID = re.compile(rb'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


@dataclass
class BatchStatus:
    """A provider batch's state, in the provider's own counts."""

    state: str
    ended: bool
    total: int = 0
    done: int = 0
    """Requests finished (succeeded or failed)."""
    failed: int = 0
    raw: dict = field(default_factory=dict)
    """The provider's batch object."""


@dataclass
class Outcome:
    key: str
    kind: OutcomeKind
    """``ok`` (a completion), ``retry`` (worth resubmitting), ``fail`` (the same request fails again) or
    ``malformed`` (a line that cannot be read)."""
    completion: Completion | None = None
    reason: str = ""


def _transient(code: int) -> bool:
    return code == 429 or code >= 500 or code in (408, 409)


def _err_msg(body) -> str:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body[:200])
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        inner = err.get("error")
        if isinstance(inner, dict):  # Anthropic's {"type": "error", "error": {...}}
            err = inner
        return str(err.get("message") or err.get("type") or err.get("code") or err)[:200]
    return str(err or body)[:200]


class _Http:
    """Small JSON-over-HTTP client: 429, 5xx and dropped connections are retried under the judges' retry policy
    (:mod:`flywheel_lib.judges.retry`), other 4xx raise."""

    def __init__(self, headers: dict, *, timeout: float, limits):
        self.headers, self.timeout, self.limits = headers, timeout, limits

    def _once(self, method: str, url: str, body: bytes | None, content_type: str) -> bytes:
        req = urllib.request.Request(url, data=body, method=method, headers={**self.headers, "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            content = e.read()
            if not _transient(e.code):
                raise PermanentError(f"HTTP {e.code} from {method} {url.split('?')[0]}: {_err_msg(content)}") from None
            raise TransientError(f"HTTP {e.code}: {_err_msg(content)}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise TransientError(f"connection error ({type(e).__name__}: {e})") from None

    def call(self, method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> bytes:
        r = retrying(self.limits)
        try:
            return r(self._once, method, url, body, content_type)
        except TransientError as e:
            raise TransientError(f"{method} {url.split('?')[0]} failed after {tries(r)} tries: {e}") from None

    def json(self, method: str, url: str, payload=None) -> dict:
        body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
        return json.loads(self.call(method, url, body))


def openai_result(body: dict) -> Completion:
    """A chat-completion body as a :class:`Completion` (a refusal raises :class:`PermanentError`)."""
    ch = body["choices"][0]
    msg = ch.get("message") or {}
    if msg.get("refusal"):
        raise PermanentError(f"model refused: {str(msg['refusal'])[:200]}")
    usage = body.get("usage") or {}
    return Completion(text=msg.get("content") or "", finish_reason=ch.get("finish_reason") or "stop",
                      tokens_in=int(usage.get("prompt_tokens") or 0), tokens_out=int(usage.get("completion_tokens") or 0))


def _anthropic_result(msg: dict) -> Completion:
    finish = "length" if msg.get("stop_reason") == "max_tokens" else "stop"
    usage = msg.get("usage") or {}
    tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    for block in msg.get("content") or []:
        if block.get("type") == "tool_use" and finish != "length":
            inp = block.get("input") if isinstance(block.get("input"), dict) else {}
            return Completion(text=json.dumps(inp), parsed=inp, finish_reason=finish, tokens_in=tin, tokens_out=tout)
    text = "".join(b.get("text", "") for b in msg.get("content") or [] if isinstance(b, dict))
    return Completion(text=text, finish_reason=finish, tokens_in=tin, tokens_out=tout)


def _malformed(line: bytes, why: str) -> Outcome | None:
    m = _CID.search(line)
    return Outcome(m.group(1).decode(), "malformed", reason=f"malformed result line ({why})") if m else None


class _Provider:
    name: str
    max_requests: int
    max_bytes: int

    def __init__(self, judge):
        self.judge = judge
        lim = judge.config.limits
        self.http = _Http(self.headers(), timeout=max(60.0, judge.config.options.timeout_s), limits=lim)

    def find(self, local_id: str) -> str | None:
        """The provider batch carrying this slot id, where the provider keeps metadata."""
        return None

    def outcomes(self, body: bytes) -> Iterator[Outcome]:
        """The outcomes of a JSONL results file, one per non-empty line that names a request."""
        for line in body.splitlines():
            if line.strip():
                o = self.read_line(line)
                if o is not None:
                    yield o

    @staticmethod
    def read_line(line: bytes) -> Outcome | None:  # pragma: no cover - each provider reads its own format
        raise NotImplementedError


class OpenAIBatches(_Provider):
    name = "openai"
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024

    @property
    def url(self) -> str:
        return self.judge.base_url()

    def headers(self) -> dict:
        key = self.judge.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def line(self, req: Request) -> bytes:
        return json.dumps({"custom_id": req.key, "method": "POST", "url": "/v1/chat/completions",
                           "body": self.judge._kwargs(req)}).encode()

    def upload(self, lines: list[bytes], local_id: str) -> str:
        boundary = uuid.uuid4().hex
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{local_id}.jsonl"\r\n'
                f"Content-Type: application/jsonl\r\n\r\n").encode()
        body = b"".join([head, b"\n".join(lines), b"\n", f"\r\n--{boundary}--\r\n".encode()])
        out = json.loads(self.http.call("POST", f"{self.url}/files", body, f"multipart/form-data; boundary={boundary}"))
        return out["id"]

    def create(self, file_id: str | None, lines: list[bytes], local_id: str) -> str:
        out = self.http.json("POST", f"{self.url}/batches", {
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": self.judge.config.batch.completion_window, "metadata": {"flywheel_slot": local_id}})
        return out["id"]

    def find(self, local_id: str) -> str | None:
        after = None
        for _ in range(20):  # the newest 2,000 batches
            q = "?limit=100" + (f"&after={after}" if after else "")
            page = self.http.json("GET", f"{self.url}/batches{q}")
            for b in page.get("data", []):
                if (b.get("metadata") or {}).get("flywheel_slot") == local_id:
                    return b["id"]
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    def status(self, batch_id: str) -> BatchStatus:
        b = self.http.json("GET", f"{self.url}/batches/{batch_id}")
        c = b.get("request_counts") or {}
        s = b.get("status", "")
        return BatchStatus(state=s, ended=s in ("completed", "failed", "expired", "cancelled"), total=int(c.get("total") or 0),
                           done=int(c.get("completed") or 0) + int(c.get("failed") or 0), failed=int(c.get("failed") or 0), raw=b)

    def cancel(self, batch_id: str) -> None:
        self.http.json("POST", f"{self.url}/batches/{batch_id}/cancel", b"")

    def results(self, st: BatchStatus) -> Iterator[Outcome]:
        for fid in (st.raw.get("output_file_id"), st.raw.get("error_file_id")):
            if not fid:
                continue
            yield from self.outcomes(self.http.call("GET", f"{self.url}/files/{fid}/content"))

    @staticmethod
    def read_line(line: bytes) -> Outcome | None:
        """One line of an output or error file (OpenAI's format, also vLLM run_batch's)."""
        try:
            d = json.loads(line)
            key = d["custom_id"]
            resp, err = d.get("response"), d.get("error")
            if resp:
                code = int(resp.get("status_code") or 0)
                if code == 200:
                    try:
                        return Outcome(key, "ok", openai_result(resp["body"]))
                    except PermanentError as e:
                        return Outcome(key, "fail", reason=str(e))
                why = f"HTTP {code}: {_err_msg(resp.get('body'))}"
                return Outcome(key, "retry" if _transient(code) else "fail", reason=why)
            if err:
                code = str(err.get("code") or "")
                return Outcome(key, "retry", reason=f"{code or 'error'}: {str(err.get('message') or '')[:200]}")
            raise KeyError("response")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            return _malformed(line, f"{type(e).__name__}: {str(e)[:80]}")


class AnthropicBatches(_Provider):
    name = "anthropic"
    max_requests = 100_000
    max_bytes = 256 * 1024 * 1024

    @property
    def url(self) -> str:
        return (self.judge.config.base_url or "https://api.anthropic.com").rstrip("/")

    def headers(self) -> dict:
        return {"x-api-key": self.judge.api_key(), "anthropic-version": "2023-06-01"}

    def line(self, req: Request) -> bytes:
        kw = dict(self.judge._kwargs(req))
        kw.update(kw.pop("extra_body", None) or {})
        return json.dumps({"custom_id": req.key, "params": kw}).encode()

    def upload(self, lines: list[bytes], local_id: str) -> None:
        return None  # the requests travel inline with the batch

    def create(self, file_id, lines: list[bytes], local_id: str) -> str:
        body = b'{"requests": [' + b",".join(lines) + b"]}"
        return self.http.json("POST", f"{self.url}/v1/messages/batches", body)["id"]

    def status(self, batch_id: str) -> BatchStatus:
        b = self.http.json("GET", f"{self.url}/v1/messages/batches/{batch_id}")
        c = {k: int(v or 0) for k, v in (b.get("request_counts") or {}).items()}
        failed = c.get("errored", 0) + c.get("canceled", 0) + c.get("expired", 0)
        s = b.get("processing_status", "")
        return BatchStatus(state=s, ended=s == "ended", total=sum(c.values()), done=c.get("succeeded", 0) + failed,
                           failed=failed, raw=b)

    def cancel(self, batch_id: str) -> None:
        self.http.json("POST", f"{self.url}/v1/messages/batches/{batch_id}/cancel", b"")

    def results(self, st: BatchStatus) -> Iterator[Outcome]:
        url = st.raw.get("results_url")
        if not url:
            return
        yield from self.outcomes(self.http.call("GET", url))

    @staticmethod
    def read_line(line: bytes) -> Outcome | None:
        try:
            d = json.loads(line)
            key, res = d["custom_id"], d["result"]
            t = res["type"]
            if t == "succeeded":
                return Outcome(key, "ok", _anthropic_result(res["message"]))
            if t == "errored":
                err = (res.get("error") or {}).get("error") or res.get("error") or {}
                et = str(err.get("type") or "error")
                kind = "fail" if et in ("invalid_request_error", "authentication_error", "permission_error",
                                        "not_found_error") else "retry"
                return Outcome(key, kind, reason=f"{et}: {str(err.get('message') or '')[:200]}")
            if t in ("canceled", "expired"):
                return Outcome(key, "retry", reason=t)
            raise KeyError(f"result type {t!r}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            return _malformed(line, f"{type(e).__name__}: {str(e)[:80]}")


def provider_for(judge) -> _Provider:
    from .anthropic_backend import AnthropicJudge
    from .openai_backend import OpenAIJudge

    if isinstance(judge, AnthropicJudge):
        return AnthropicBatches(judge)
    if isinstance(judge, OpenAIJudge):
        return OpenAIBatches(judge)
    from .config import PanelError

    raise PanelError(f"judge {judge.name!r} ({judge.config.backend}): mode batch needs an openai, openai-compatible "
                     "or anthropic backend")
