"""A local HTTP server speaking the OpenAI fine-tuning endpoints, for tests and dry runs of the ``openai`` backend.

It is a real server on 127.0.0.1 that the backend's client (:class:`~flywheel_lib.providers.OpenAIApi`) talks to;
it implements what the backend uses:

- ``POST /v1/files`` (multipart: ``file``, ``purpose``) and ``GET /v1/files/{id}``;
- ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs/{id}``, ``GET /v1/fine_tuning/jobs/{id}/events``,
  ``POST /v1/fine_tuning/jobs/{id}/cancel``.

A job's ``method`` is ``{"type": "supervised"}`` (the default: chat JSONL) or ``{"type": "dpo", "dpo":
{"hyperparameters": {"beta": ...}}}``, whose training file is the preference JSONL (``input.messages``,
``preferred_output``, ``non_preferred_output``: one assistant message each), validated the same way.

A job moves one status per retrieve (``validating_files -> queued -> running -> succeeded``), so a poller sees every
state. The training file is validated like the API does: JSON lines with ``messages`` whose last turn is the
assistant's, at least ``min_examples`` lines; a bad file fails the job with ``invalid_training_file``. A succeeded job
reports ``fine_tuned_model = "ft:<model>:flywheel:<suffix>:<id>"``, ``trained_tokens`` (whitespace tokens x epochs)
and a few ``metrics`` events with a decreasing ``train_loss``. Requests without a bearer token get 401::

    with FineTuneServer() as srv:
        api = OpenAIApi(srv.base_url, "test")
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FineTuneServer"]

_FLOW = ["validating_files", "queued", "running", "succeeded"]


def _validate(data: bytes, min_examples: int) -> tuple[str | None, int, int]:
    """(error or None, examples, whitespace tokens) for a chat JSONL training file."""
    n = tokens = 0
    for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {i}: not valid JSON ({e.msg})", n, tokens
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or not msgs:
            return f"line {i}: missing 'messages' list", n, tokens
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                return f"line {i}: each message needs a role (system|user|assistant) and string content", n, tokens
        if msgs[-1]["role"] != "assistant":
            return f"line {i}: the last message must be the assistant's", n, tokens
        n += 1
        tokens += sum(len(m["content"].split()) for m in msgs)
    if n < min_examples:
        return f"training file has {n} examples, at least {min_examples} required", n, tokens
    return None, n, tokens


def _validate_preference(data: bytes, min_examples: int) -> tuple[str | None, int, int]:
    """(error or None, examples, whitespace tokens) for a preference (DPO) JSONL training file."""
    n = tokens = 0
    for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {i}: not valid JSON ({e.msg})", n, tokens
        msgs = (obj.get("input") or {}).get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or not msgs:
            return f"line {i}: missing 'input.messages' list", n, tokens
        for key in ("preferred_output", "non_preferred_output"):
            out = obj.get(key)
            if not (isinstance(out, list) and len(out) == 1 and isinstance(out[0], dict)
                    and out[0].get("role") == "assistant" and isinstance(out[0].get("content"), str)):
                return f"line {i}: '{key}' must be a list of one assistant message", n, tokens
        if obj["preferred_output"][0]["content"] == obj["non_preferred_output"][0]["content"]:
            return f"line {i}: preferred and non-preferred outputs are identical", n, tokens
        n += 1
        tokens += sum(len(str(m.get("content", "")).split()) for m in msgs)
        tokens += len(obj["preferred_output"][0]["content"].split()) + len(obj["non_preferred_output"][0]["content"].split())
    if n < min_examples:
        return f"training file has {n} examples, at least {min_examples} required", n, tokens
    return None, n, tokens


class FineTuneServer:
    """The server: ``start()`` / ``stop()`` or use as a context manager; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, min_examples: int = 10, host: str = "127.0.0.1", port: int = 0):
        self.min_examples = min_examples
        self.files: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.events: dict[str, list[dict]] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FineTuneServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FineTuneServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- state ---------------------------------------------------------------------------------------
    def _event(self, job_id: str, message: str, type_: str = "message", data: dict | None = None) -> None:
        self.events[job_id].append({"object": "fine_tuning.job.event", "id": f"ftevent-{uuid.uuid4().hex[:12]}",
                                    "created_at": int(time.time()), "level": "info", "message": message,
                                    "type": type_, "data": data or {}})

    def _advance(self, job: dict) -> None:
        if job["status"] not in _FLOW[:-1]:
            return
        nxt = _FLOW[_FLOW.index(job["status"]) + 1]
        jid = job["id"]
        if job["status"] == "validating_files":
            check = _validate_preference if job["method"]["type"] == "dpo" else _validate
            err, n, tokens = check(self.blobs[job["training_file"]], self.min_examples)
            if err:
                job.update(status="failed", finished_at=int(time.time()),
                           error={"code": "invalid_training_file", "message": err, "param": "training_file"})
                self._event(jid, f"Training file validation failed: {err}")
                return
            job["_examples"], job["_tokens"] = n, tokens
            self._event(jid, f"Files validated: {n} training examples")
        if nxt == "running":
            self._event(jid, "Fine-tuning job started")
        if nxt == "succeeded":
            epochs = job["hyperparameters"]["n_epochs"]
            for step in range(1, 4):
                self._event(jid, f"Step {step}: training loss={2.0 / step:.3f}", "metrics",
                            {"step": step, "train_loss": 2.0 / step, "total_steps": 3})
            suffix = job.get("suffix") or "model"
            job.update(fine_tuned_model=f"ft:{job['model']}:flywheel:{suffix}:{jid[-8:]}",
                       trained_tokens=job["_tokens"] * epochs, finished_at=int(time.time()))
            self._event(jid, "The job has successfully completed")
        job["status"] = nxt

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # --- HTTP ----------------------------------------------------------------------------------------
    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, message: str, type_: str = "invalid_request_error") -> None:
                self._send(code, {"error": {"message": message, "type": type_, "param": None, "code": None}})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorized(self) -> bool:
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    self._error(401, "missing bearer token", "authentication_error")
                    return False
                return True

            def do_POST(self):
                path = self.path.split("?")[0].rstrip("/")
                srv.requests.append(("POST", path))
                if not self._authorized():
                    return
                body = self._body()
                with srv._lock:
                    if path == "/v1/files":
                        return self._upload(body)
                    if path == "/v1/fine_tuning/jobs":
                        return self._create(body)
                    m = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)/cancel", path)
                    if m and m.group(1) in srv.jobs:
                        job = srv.jobs[m.group(1)]
                        if job["status"] in _FLOW[:-1]:
                            job["status"] = "cancelled"
                        return self._send(200, srv._public(job))
                self._error(404, f"no route POST {path}")

            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                srv.requests.append(("GET", path))
                if not self._authorized():
                    return
                with srv._lock:
                    m = re.fullmatch(r"/v1/files/([\w-]+)", path)
                    if m:
                        f = srv.files.get(m.group(1))
                        return self._send(200, f) if f else self._error(404, f"no such file: {m.group(1)}")
                    m = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)(/events)?", path)
                    if m:
                        job = srv.jobs.get(m.group(1))
                        if job is None:
                            return self._error(404, f"no such fine-tuning job: {m.group(1)}")
                        if m.group(2):
                            data = list(reversed(srv.events[job["id"]]))  # newest first, like the API
                            return self._send(200, {"object": "list", "data": data, "has_more": False})
                        srv._advance(job)
                        return self._send(200, srv._public(job))
                self._error(404, f"no route GET {path}")

            def _upload(self, body: bytes) -> None:
                ctype = self.headers.get("Content-Type", "")
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    f"Content-Type: {ctype}\r\n\r\n".encode() + body)
                fields, filename, data = {}, "upload.jsonl", None
                for part in msg.iter_parts() if msg.is_multipart() else []:
                    name = part.get_param("name", header="content-disposition")
                    if name == "file":
                        filename = part.get_filename() or filename
                        data = part.get_payload(decode=True)
                    elif name:
                        fields[name] = part.get_payload(decode=True).decode()
                if data is None:
                    return self._error(400, "multipart field 'file' is required")
                if fields.get("purpose") != "fine-tune":
                    return self._error(400, f"purpose must be 'fine-tune', got {fields.get('purpose')!r}")
                fid = f"file-{uuid.uuid4().hex[:24]}"
                srv.blobs[fid] = data
                srv.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": filename, "purpose": "fine-tune", "status": "processed"}
                self._send(200, srv.files[fid])

            def _create(self, body: bytes) -> None:
                try:
                    req = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    return self._error(400, "body is not JSON")
                for key in ("model", "training_file"):
                    if not req.get(key):
                        return self._error(400, f"'{key}' is required")
                for key in ("training_file", "validation_file"):
                    if req.get(key) and req[key] not in srv.files:
                        return self._error(400, f"{key} {req[key]!r} does not exist")
                method = req.get("method") or {"type": "supervised"}
                if method.get("type") not in ("supervised", "dpo"):
                    return self._error(400, f"method.type must be 'supervised' or 'dpo', got {method.get('type')!r}")
                hp = dict(req.get("hyperparameters") or {})
                hp.update(((method.get(method["type"]) or {}).get("hyperparameters")) or {})
                hp["n_epochs"] = hp.get("n_epochs") if isinstance(hp.get("n_epochs"), int) else 3
                jid = f"ftjob-{uuid.uuid4().hex[:24]}"
                srv.jobs[jid] = {"id": jid, "object": "fine_tuning.job", "model": req["model"],
                                 "created_at": int(time.time()), "finished_at": None, "fine_tuned_model": None,
                                 "organization_id": "org-local", "result_files": [], "status": "validating_files",
                                 "validation_file": req.get("validation_file"),
                                 "training_file": req["training_file"], "hyperparameters": hp,
                                 "trained_tokens": None, "error": None, "seed": req.get("seed"),
                                 "suffix": req.get("suffix"), "method": method}
                srv.events[jid] = []
                srv._event(jid, f"Created fine-tuning job: {jid}")
                self._send(200, srv._public(srv.jobs[jid]))

        return Handler


def main() -> None:
    """``python -m flywheel_lib.testing.openai_ft_server --port 8765``: serve until interrupted (for dry runs)."""
    import argparse

    ap = argparse.ArgumentParser(description="Local server speaking the OpenAI fine-tuning endpoints")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--min-examples", type=int, default=10)
    args = ap.parse_args()
    srv = FineTuneServer(min_examples=args.min_examples, port=args.port)
    print(f"serving the fine-tuning endpoints at {srv.base_url}", flush=True)
    try:
        srv._httpd.serve_forever()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
