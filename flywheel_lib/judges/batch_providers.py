"""The two provider Batch APIs, through the judge's own client (:mod:`flywheel_lib.providers`: the one HTTP path of
each provider, its sync calls retried under the judge's ``limits``).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..providers import Http, PermanentError, error_message
from ..providers.http import transient_status
from .anthropic_backend import anthropic_result
from .base import Completion, Request
from .openai_backend import openai_result

OutcomeKind = Literal["ok", "retry", "fail", "malformed"]

__all__ = ["OpenAIBatches", "AnthropicBatches", "BatchStatus", "Outcome", "provider_for"]

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


def _malformed(line: bytes, why: str) -> Outcome | None:
    m = _CID.search(line)
    return Outcome(m.group(1).decode(), "malformed", reason=f"malformed result line ({why})") if m else None


class _Provider:
    name: str
    max_requests: int
    max_bytes: int

    def __init__(self, judge):
        self.judge = judge
        # the judge's client, with a longer timeout: a results file can be large
        self.http: Http = judge.api.copy(timeout_s=max(60.0, judge.api.timeout_s))

    @property
    def url(self) -> str:
        """The API's base URL (the journal keeps batches per server)."""
        return self.http.base_url

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

    def line(self, req: Request) -> bytes:
        return json.dumps({"custom_id": req.key, "method": "POST", "url": "/v1/chat/completions",
                           "body": self.judge._kwargs(req)}).encode()

    def upload(self, lines: list[bytes], local_id: str) -> str:
        data = b"\n".join(lines) + b"\n"
        return self.http.upload("/files", {"purpose": "batch"}, filename=f"{local_id}.jsonl", data=data)["id"]

    def create(self, file_id: str | None, lines: list[bytes], local_id: str) -> str:
        out = self.http.call_json("POST", "/batches", {
            "input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": self.judge.config.batch.completion_window, "metadata": {"flywheel_slot": local_id}})
        return out["id"]

    def find(self, local_id: str) -> str | None:
        after = None
        for _ in range(20):  # the newest 2,000 batches
            q = "?limit=100" + (f"&after={after}" if after else "")
            page = self.http.call_json("GET", f"/batches{q}")
            for b in page.get("data", []):
                if (b.get("metadata") or {}).get("flywheel_slot") == local_id:
                    return b["id"]
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    def status(self, batch_id: str) -> BatchStatus:
        b = self.http.call_json("GET", f"/batches/{batch_id}")
        c = b.get("request_counts") or {}
        s = b.get("status", "")
        return BatchStatus(state=s, ended=s in ("completed", "failed", "expired", "cancelled"), total=int(c.get("total") or 0),
                           done=int(c.get("completed") or 0) + int(c.get("failed") or 0), failed=int(c.get("failed") or 0), raw=b)

    def cancel(self, batch_id: str) -> None:
        self.http.call_json("POST", f"/batches/{batch_id}/cancel", b"")

    def results(self, st: BatchStatus) -> Iterator[Outcome]:
        for fid in (st.raw.get("output_file_id"), st.raw.get("error_file_id")):
            if not fid:
                continue
            yield from self.outcomes(self.http.call("GET", f"/files/{fid}/content"))

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
                why = f"HTTP {code}: {error_message(resp.get('body'))}"
                return Outcome(key, "retry" if transient_status(code) else "fail", reason=why)
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

    def line(self, req: Request) -> bytes:
        return json.dumps({"custom_id": req.key, "params": self.judge._kwargs(req)}).encode()

    def upload(self, lines: list[bytes], local_id: str) -> None:
        return None  # the requests travel inline with the batch

    def create(self, file_id, lines: list[bytes], local_id: str) -> str:
        body = b'{"requests": [' + b",".join(lines) + b"]}"
        return self.http.call_json("POST", "/v1/messages/batches", body)["id"]

    def status(self, batch_id: str) -> BatchStatus:
        b = self.http.call_json("GET", f"/v1/messages/batches/{batch_id}")
        c = {k: int(v or 0) for k, v in (b.get("request_counts") or {}).items()}
        failed = c.get("errored", 0) + c.get("canceled", 0) + c.get("expired", 0)
        s = b.get("processing_status", "")
        return BatchStatus(state=s, ended=s == "ended", total=sum(c.values()), done=c.get("succeeded", 0) + failed,
                           failed=failed, raw=b)

    def cancel(self, batch_id: str) -> None:
        self.http.call_json("POST", f"/v1/messages/batches/{batch_id}/cancel", b"")

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
                return Outcome(key, "ok", anthropic_result(res["message"]))
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
