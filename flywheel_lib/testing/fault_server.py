"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions and Anthropic messages wire formats,
with faults mixed in on purpose.

It answers ``POST /v1/chat/completions`` and ``POST /v1/messages`` with a verdict for the request in the
prompt (the category drawn from the schema's enum by a hash of the request text, so answers are stable), after
``latency_s``. With probability ``faults[name]`` a request instead gets one of:

``429``        status 429 with ``Retry-After`` (``retry_after_s`` seconds; also ``retry-after-ms``)
``500``        status 500
``slow``       the answer only after ``slow_s`` (past the client's timeout)
``bad_body``   status 200 whose body is not JSON
``bad_json``   a well-formed response whose verdict text is malformed JSON
``truncated``  the verdict cut off half-way, finish reason ``length`` / ``max_tokens``
``drop``       the connection closed without a response

    with FaultServer(latency_s=0.1, faults={"429": 0.05, "drop": 0.02}) as srv:
        srv.url   # "http://127.0.0.1:PORT/v1"

It runs its own asyncio loop in a daemon thread and holds thousands of concurrent connections cheaply.
``stats`` counts requests and faults; ``seen`` counts requests per request text. The server never stores or
prints request headers, so an API key sent to it goes nowhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable

__all__ = ["FaultServer", "FAULTS"]

FAULTS = ("429", "500", "slow", "bad_body", "bad_json", "truncated", "drop")
_REQ = re.compile(r"Request: (.*?)(?:\nSchema for this request:.*?)?\nAnswer:\s*$", re.S)


def default_answer(text: str, ids: list[str]) -> dict:
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    cat = ids[h % len(ids)]
    return {"category": cat, "reason_key": f"r{h % 7}", "rationale": f"server verdict for {text[:30]!r}"}


class FaultServer:
    def __init__(self, *, latency_s: float = 0.0, faults: dict[str, float] | None = None, seed: int = 0,
                 retry_after_s: float = 0.05, slow_s: float = 3.0,
                 answer: Callable[[str, list[str]], dict] = default_answer, expect_key: str | None = None):
        unknown = set(faults or {}) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self.latency_s, self.faults, self.retry_after_s, self.slow_s = latency_s, dict(faults or {}), retry_after_s, slow_s
        self.answer = answer
        self.expect_key = expect_key
        """When set, a request without this key (``Authorization: Bearer`` or ``x-api-key``) gets a 401."""
        self._rng = random.Random(seed)
        self.stats: Counter = Counter()
        self.seen: Counter = Counter()
        self._ready = threading.Event()
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-server")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        if getattr(self, "_loop", None) is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._conn, "127.0.0.1", 0, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- HTTP ----------------------------------------------------------------------------------
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                key = None
                for ln in lines[1:]:
                    name, _, value = ln.partition(":")
                    name, value = name.strip().lower(), value.strip()
                    if name == "content-length":
                        length = int(value)
                    elif name == "authorization" and value.startswith("Bearer "):
                        key = value[7:]
                    elif name == "x-api-key":
                        key = value
                body = await reader.readexactly(length) if length else b""
                if self.expect_key is not None and key != self.expect_key:
                    self.stats["unauthorized"] += 1
                    self._send(writer, 401, b'{"error": {"message": "Incorrect API key provided"}}')
                    await writer.drain()
                    continue
                if not await self._handle(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _send(writer, status: int, body: bytes, headers: dict | None = None) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
        h = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        writer.write(f"HTTP/1.1 {status} {reason}\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
                     + b"\r\n" + body)

    def _pick_fault(self) -> str | None:
        x = self._rng.random()
        for name, p in self.faults.items():
            if x < p:
                return name
            x -= p
        return None

    async def _handle(self, method: str, path: str, body: bytes, writer) -> bool:
        anthropic = path.rstrip("/").endswith("/messages")
        if method != "POST" or not (anthropic or path.rstrip("/").endswith("/chat/completions")):
            self._send(writer, 404, b'{"error": {"message": "not found"}}')
            await writer.drain()
            return True
        req = json.loads(body or b"{}")
        text, ids = self._read_request(req, anthropic)
        self.stats["requests"] += 1
        self.seen[text] += 1
        fault = self._pick_fault()
        if fault:
            self.stats[fault] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "drop":
            writer.transport.abort()
            return False
        if fault == "429":
            self._send(writer, 429, b'{"error": {"type": "rate_limit_error", "message": "slow down"}}',
                       {"Retry-After": f"{self.retry_after_s:g}", "retry-after-ms": f"{self.retry_after_s * 1000:g}"})
        elif fault == "500":
            self._send(writer, 500, b'{"error": {"type": "api_error", "message": "boom"}}')
        elif fault == "bad_body":
            self._send(writer, 200, b"<html>502 bad gateway</html>")
        else:
            if fault == "slow":
                await asyncio.sleep(self.slow_s)
            verdict = self.answer(text, ids)
            content = json.dumps(verdict)
            finish = "stop"
            if fault == "bad_json":
                content = content.replace('"', "'", 3)
            elif fault == "truncated":
                content, finish = content[: len(content) // 2], "length"
            out = self._anthropic(req, verdict, content, finish, fault) if anthropic else self._openai(req, content, finish)
            self._send(writer, 200, json.dumps(out).encode())
        await writer.drain()
        return True

    @staticmethod
    def _read_request(req: dict, anthropic: bool) -> tuple[str, list[str]]:
        msgs = req.get("messages") or [{}]
        last = msgs[-1].get("content", "")
        if isinstance(last, list):
            last = " ".join(b.get("text", "") for b in last if isinstance(b, dict))
        m = _REQ.search(last or "")
        text = m.group(1).strip() if m else (last or "")
        if anthropic:
            tools = req.get("tools") or [{}]
            schema = tools[0].get("input_schema", {})
        else:
            schema = ((req.get("response_format") or {}).get("json_schema") or {}).get("schema", {})
        ids = (schema.get("properties", {}).get("category", {}) or {}).get("enum") or ["solvable"]
        return text, ids

    @staticmethod
    def _openai(req: dict, content: str, finish: str) -> dict:
        n_in = sum(len(str(m.get("content", ""))) for m in req.get("messages", [])) // 4
        return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": req.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": {"prompt_tokens": n_in, "completion_tokens": len(content) // 4,
                          "total_tokens": n_in + len(content) // 4}}

    @staticmethod
    def _anthropic(req: dict, verdict: dict, content: str, finish: str, fault: str | None) -> dict:
        n_in = (len(str(req.get("system", ""))) + sum(len(str(m.get("content", ""))) for m in req.get("messages", []))) // 4
        tools = req.get("tools") or [{"name": "record_verdict"}]
        if fault in ("bad_json", "truncated"):
            blocks = [{"type": "text", "text": content}]
        else:
            blocks = [{"type": "tool_use", "id": "toolu_fault", "name": tools[0]["name"], "input": verdict}]
        return {"id": "msg_fault", "type": "message", "role": "assistant", "model": req.get("model", ""),
                "content": blocks, "stop_reason": "max_tokens" if finish == "length" else "tool_use",
                "stop_sequence": None, "usage": {"input_tokens": n_in, "output_tokens": len(content) // 4}}


def main(argv=None) -> None:
    """``python -m flywheel_lib.testing.fault_server --latency 0.1``: serve in this process (prints ``PORT n``)."""
    import argparse
    import sys
    import time

    ap = argparse.ArgumentParser(description="fault-injecting OpenAI/Anthropic-wire server on 127.0.0.1")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    for f in FAULTS:
        ap.add_argument(f"--p-{f.replace('_', '-')}", type=float, default=0.0, dest=f"p_{f}")
    a = ap.parse_args(argv)
    faults = {f: getattr(a, f"p_{f}") for f in FAULTS if getattr(a, f"p_{f}") > 0}
    with FaultServer(latency_s=a.latency, faults=faults, seed=a.seed) as srv:
        print(f"PORT {srv.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
