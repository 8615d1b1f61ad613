"""A real HTTP server on 127.0.0.1 speaking OpenAI's Files + Batches and Anthropic's Message Batches endpoints,
with faults mixed in on purpose.

OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``. Anthropic: ``POST /v1/messages/batches``,
``GET /v1/messages/batches/{id}[/results]``, ``POST /v1/messages/batches/{id}/cancel``.

A batch advances one step per status poll and ends after ``polls_to_end`` polls (``hold()`` keeps every batch in
progress until ``release()``). Each request is answered like :class:`~.fault_server.FaultServer` answers it (a
stable verdict drawn from the schema's enum by a hash of the request text). Faults:

``expire_first=n``   the first n batches expire with only ``partial`` of their requests done
``cancel_first=n``   the first n batches are cancelled (as from the provider's console), ``partial`` done
``faults``           per-request faults on a request's *first* submission, by probability (a stable hash of the
                     custom id): ``error_500`` (a server error line), ``error_400`` (an invalid-request line),
                     ``malformed`` (an output line cut in half)
``expect_key``       any other key gets a 401

``submissions`` counts how often each custom id was submitted (a test asserts none twice); ``stats`` counts
files, batches, polls and faults. The server never stores or prints request headers.

    with BatchServer(polls_to_end=2, expire_first=1, partial=0.5) as srv:
        srv.url    # "http://127.0.0.1:PORT/v1" (OpenAI base URL); srv.base for Anthropic
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .fault_server import FaultServer, default_answer

__all__ = ["BatchServer", "BATCH_FAULTS"]

BATCH_FAULTS = ("error_500", "error_400", "malformed")


@dataclass
class _Batch:
    id: str
    provider: str
    reqs: list  # (custom_id, text, ids, n_in, model)
    metadata: dict
    fault: str | None = None
    polls: int = 0
    state: str = "in_progress"
    created: float = field(default_factory=time.time)
    results: bytes | None = None
    per_request: dict = field(default_factory=dict)


class BatchServer:
    def __init__(self, *, polls_to_end: int = 2, expire_first: int = 0, cancel_first: int = 0, partial: float = 0.5,
                 faults: dict[str, float] | None = None, expect_key: str | None = None, seed: int = 0):
        unknown = set(faults or {}) - set(BATCH_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(BATCH_FAULTS)}")
        self.polls_to_end, self.expire_first, self.cancel_first, self.partial = polls_to_end, expire_first, cancel_first, partial
        self.faults, self.expect_key, self.seed = dict(faults or {}), expect_key, seed
        self.submissions: Counter = Counter()
        self.stats: Counter = Counter()
        self.batches: dict[str, _Batch] = {}
        self.files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._held = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> BatchServer:
        srv = self

        class H(_Handler):
            server_ref = srv

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="batch-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> BatchServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        """Keep every batch in progress (polls still count) until :meth:`release`."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    # --- the batch model -----------------------------------------------------------------------
    def _fault(self, cid: str) -> str | None:
        if not self.faults or self.submissions[cid] > 1:
            return None
        x = int(hashlib.sha256(f"{self.seed}:{cid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        for name, p in self.faults.items():
            if x < p:
                return name
            x -= p
        return None

    def _create(self, provider: str, lines: list[dict], metadata: dict) -> _Batch:
        reqs = []
        for d in lines:
            body = d["body"] if provider == "openai" else d["params"]
            text, ids = FaultServer._read_request(body, provider == "anthropic")
            n_in = (len(str(body.get("system", ""))) + sum(len(str(m.get("content", ""))) for m in body.get("messages", []))) // 4
            reqs.append((d["custom_id"], text, ids, n_in, body.get("model", "")))
        with self._lock:
            n = len(self.batches)
            bid = ("batch_" if provider == "openai" else "msgbatch_") + hashlib.sha256(f"{time.time()}{n}".encode()).hexdigest()[:16]
            fault = "expired" if n < self.expire_first else "cancelled" if n < self.expire_first + self.cancel_first else None
            b = _Batch(bid, provider, reqs, metadata, fault=fault)
            for cid, *_ in reqs:
                self.submissions[cid] += 1
                f = self._fault(cid)
                if f:
                    b.per_request[cid] = f
                    self.stats[f] += 1
            self.batches[bid] = b
            self.stats["batches"] += 1
            self.stats["requests"] += len(reqs)
        return b

    def _advance(self, b: _Batch) -> None:
        with self._lock:
            self.stats["polls"] += 1
            if b.state != "in_progress":
                return
            b.polls += 1
            if self._held.is_set():
                return
            if b.fault == "cancelled" or (b.fault == "expired" and b.polls >= self.polls_to_end) or b.polls >= self.polls_to_end:
                b.state = {"cancelled": "cancelled", "expired": "expired"}.get(b.fault or "", "completed")

    def _done(self, b: _Batch) -> int:
        n = len(b.reqs)
        if b.state == "completed":
            return n
        if b.state in ("expired", "cancelled"):
            return int(n * self.partial)
        return min(n, n * b.polls // max(1, self.polls_to_end + 1))

    def _result_lines(self, b: _Batch) -> tuple[list[bytes], list[bytes]]:
        """(output lines, error lines) of an ended batch."""
        k = self._done(b)
        ok, err = [], []
        for i, (cid, text, ids, n_in, model) in enumerate(b.reqs):
            f = b.per_request.get(cid)
            if i >= k:
                why = "expired" if b.state == "expired" else "canceled" if b.provider == "anthropic" else "cancelled"
                err.append(self._ended_line(b.provider, cid, why))
                continue
            if f in ("error_500", "error_400"):
                err.append(self._error_line(b.provider, cid, 500 if f == "error_500" else 400))
                continue
            v = default_answer(text, ids)
            if b.provider == "openai":
                body = FaultServer._openai({"model": model, "messages": [{"content": "x" * 4 * n_in}]}, json.dumps(v), "stop")
                line = json.dumps({"id": f"req_{i}", "custom_id": cid, "response": {"status_code": 200, "request_id": f"r{i}", "body": body}, "error": None})
            else:
                msg = FaultServer._anthropic({"model": model, "messages": [{"content": "x" * 4 * n_in}]}, v, json.dumps(v), "stop", None)
                line = json.dumps({"custom_id": cid, "result": {"type": "succeeded", "message": msg}})
            if f == "malformed":
                line = line[: len(line) // 2]
            ok.append(line.encode())
        return ok, err

    @staticmethod
    def _ended_line(provider: str, cid: str, why: str) -> bytes:
        if provider == "anthropic":
            return json.dumps({"custom_id": cid, "result": {"type": why}}).encode()
        msg = {"expired": "This request could not be executed before the completion window expired.",
               "cancelled": "This request was cancelled with its batch."}[why]
        return json.dumps({"id": "req_x", "custom_id": cid, "response": None,
                           "error": {"code": f"batch_{why}", "message": msg}}).encode()

    @staticmethod
    def _error_line(provider: str, cid: str, code: int) -> bytes:
        typ = "api_error" if code >= 500 else "invalid_request_error"
        if provider == "anthropic":
            return json.dumps({"custom_id": cid, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": typ, "message": f"injected {code}"}}}}).encode()
        return json.dumps({"id": "req_x", "custom_id": cid, "response": {"status_code": code, "request_id": "r", "body": {
            "error": {"type": typ, "message": f"injected {code}"}}}, "error": None}).encode()

    def openai_object(self, b: _Batch) -> dict:
        n, k = len(b.reqs), self._done(b)
        failed = sum(1 for i, (cid, *_) in enumerate(b.reqs) if i < k and b.per_request.get(cid, "").startswith("error"))
        obj = {"id": b.id, "object": "batch", "endpoint": "/v1/chat/completions", "status": b.state,
               "input_file_id": b.metadata.get("_file"), "completion_window": "24h", "created_at": int(b.created),
               "metadata": {k2: v for k2, v in b.metadata.items() if not k2.startswith("_")},
               "request_counts": {"total": n, "completed": k - failed, "failed": failed + (n - k if b.state != "in_progress" else 0)},
               "output_file_id": None, "error_file_id": None}
        if b.state != "in_progress":
            ok, err = self._result_lines(b)
            if ok:
                obj["output_file_id"] = f"file-out-{b.id}"
                self.files[obj["output_file_id"]] = b"\n".join(ok) + b"\n"
            if err:
                obj["error_file_id"] = f"file-err-{b.id}"
                self.files[obj["error_file_id"]] = b"\n".join(err) + b"\n"
        return obj

    def anthropic_object(self, b: _Batch) -> dict:
        n, k = len(b.reqs), self._done(b)
        ended = b.state != "in_progress"
        counts = {"processing": n - k if not ended else 0, "succeeded": k, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            if b.state == "expired":
                counts["expired"] = n - k
            elif b.state == "cancelled":
                counts["canceled"] = n - k
        return {"id": b.id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": counts, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b.created)),
                "results_url": f"{self.base}/v1/messages/batches/{b.id}/results" if ended else None}


class _Handler(BaseHTTPRequestHandler):
    server_ref: BatchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:  # quiet: and never a header
        pass

    def _send(self, code: int, body: bytes | dict, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        srv = self.server_ref
        if srv.expect_key is None:
            return True
        auth = self.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else self.headers.get("x-api-key")
        if key == srv.expect_key:
            return True
        srv.stats["unauthorized"] += 1
        self._send(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key / Incorrect API key provided"}})
        return False

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        body = self._body()
        del body
        if not self._authorized():
            return
        srv, p = self.server_ref, self.path.split("?")[0].rstrip("/")
        parts = p.split("/")
        if p == "/v1/batches":
            objs = sorted(srv.batches.values(), key=lambda b: -b.created)
            data = [srv.openai_object(b) for b in objs if b.provider == "openai"][:100]
            return self._send(200, {"object": "list", "data": data, "has_more": False})
        if p.startswith("/v1/files/") and p.endswith("/content"):
            fid = parts[3]
            if fid not in srv.files:
                return self._send(404, {"error": {"message": f"no file {fid}"}})
            return self._send(200, srv.files[fid], "application/jsonl")
        if p.startswith("/v1/messages/batches/"):
            b = srv.batches.get(parts[4])
            if b is None:
                return self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": "no batch"}})
            if len(parts) > 5 and parts[5] == "results":
                ok, err = srv._result_lines(b)
                return self._send(200, b"\n".join(ok + err) + b"\n", "application/jsonl")
            srv._advance(b)
            return self._send(200, srv.anthropic_object(b))
        if p.startswith("/v1/batches/"):
            b = srv.batches.get(parts[3])
            if b is None:
                return self._send(404, {"error": {"message": "no batch"}})
            srv._advance(b)
            return self._send(200, srv.openai_object(b))
        self._send(404, {"error": {"message": f"not found: {p}"}})

    def do_POST(self) -> None:
        body = self._body()
        if not self._authorized():
            return
        srv, p = self.server_ref, self.path.split("?")[0].rstrip("/")
        parts = p.split("/")
        if p == "/v1/files":
            data = _multipart_file(body, self.headers.get("Content-Type", ""))
            fid = "file-" + hashlib.sha256(data[:4096] + str(time.time()).encode()).hexdigest()[:16]
            srv.files[fid] = data
            srv.stats["files"] += 1
            return self._send(200, {"id": fid, "object": "file", "bytes": len(data), "purpose": "batch"})
        if p == "/v1/batches":
            req = json.loads(body)
            data = srv.files.get(req.get("input_file_id"))
            if data is None:
                return self._send(400, {"error": {"message": f"no file {req.get('input_file_id')!r}"}})
            lines = [json.loads(x) for x in data.splitlines() if x.strip()]
            b = srv._create("openai", lines, {**(req.get("metadata") or {}), "_file": req["input_file_id"]})
            return self._send(200, srv.openai_object(b))
        if p == "/v1/messages/batches":
            b = srv._create("anthropic", json.loads(body)["requests"], {})
            return self._send(200, srv.anthropic_object(b))
        if p.endswith("/cancel"):
            b = srv.batches.get(parts[-2])
            if b is None:
                return self._send(404, {"error": {"message": "no batch"}})
            with srv._lock:
                if b.state == "in_progress":
                    b.state = "cancelled"
            return self._send(200, srv.openai_object(b) if b.provider == "openai" else srv.anthropic_object(b))
        self._send(404, {"error": {"message": f"not found: {p}"}})


def _multipart_file(body: bytes, ctype: str) -> bytes:
    """The ``file`` part of a multipart/form-data body."""
    boundary = ctype.split("boundary=")[-1].strip().strip('"').encode()
    for part in body.split(b"--" + boundary):
        head, _, content = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return content[:-2] if content.endswith(b"\r\n") else content
    raise ValueError("multipart body has no file part")


def main(argv=None) -> None:
    """``python -m flywheel_lib.testing.batch_server --polls 2``: serve in this process (prints ``PORT n``)."""
    import argparse

    ap = argparse.ArgumentParser(description="OpenAI Files + Batches and Anthropic Message Batches server on 127.0.0.1")
    ap.add_argument("--polls", type=int, default=2, help="status polls before a batch ends")
    ap.add_argument("--expire-first", type=int, default=0)
    ap.add_argument("--cancel-first", type=int, default=0)
    ap.add_argument("--partial", type=float, default=0.5)
    for f in BATCH_FAULTS:
        ap.add_argument(f"--p-{f.replace('_', '-')}", type=float, default=0.0, dest=f"p_{f}")
    a = ap.parse_args(argv)
    faults = {f: getattr(a, f"p_{f}") for f in BATCH_FAULTS if getattr(a, f"p_{f}") > 0}
    with BatchServer(polls_to_end=a.polls, expire_first=a.expire_first, cancel_first=a.cancel_first,
                     partial=a.partial, faults=faults) as srv:
        print(f"PORT {srv.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
