"""The providers' one HTTP path (flywheel_lib.providers) against a real scripted server on 127.0.0.1: statuses
mapped to retry or not, sync calls retried and named, the key in a header only, and generation through it."""

import asyncio
import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flywheel_lib.evaluation import openai_generate
from flywheel_lib.providers import AnthropicApi, OpenAIApi, PermanentError, TransientError
from flywheel_lib.providers.retry import RetryLimits

KEY = "test-key-DO-NOT-LEAK-77a1"
FAST = RetryLimits(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)


class Scripted:
    """Answers each request with the next scripted (status, body, headers); then 200 with an echo of the request."""

    def __init__(self, script=()):
        self.script, self.seen = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                   "body": body})
                status, out, headers = outer.script.pop(0) if outer.script else (200, None, {})
                if out is None:  # an echo, shaped like a chat completion answering the user's message
                    user = json.loads(body)["messages"][-1]["content"] if body else ""
                    out = {"choices": [{"message": {"content": f" echo: {user} "}, "finish_reason": "stop"}]}
                data = json.dumps(out).encode() if not isinstance(out, bytes) else out
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


def test_a_sync_call_retries_a_5xx_and_a_429_then_succeeds():
    with Scripted([(503, {"error": {"message": "overloaded"}}, {}),
                   (429, {"error": {"message": "slow down"}}, {"retry-after-ms": "30"}),
                   (200, {"id": "batch_1"}, {})]) as srv:
        api = OpenAIApi(f"{srv.base}/v1", KEY, limits=FAST)
        assert api.call_json("GET", "/batches/batch_1") == {"id": "batch_1"}
    assert [s["path"] for s in srv.seen] == ["/v1/batches/batch_1"] * 3
    assert all(s["headers"]["Authorization"] == f"Bearer {KEY}" for s in srv.seen)


def test_a_sync_call_that_keeps_failing_names_the_call_and_its_tries():
    with Scripted([(500, {}, {})] * 3) as srv:
        api = OpenAIApi(f"{srv.base}/v1", KEY, limits=FAST)
        with pytest.raises(TransientError, match=r"GET .*/v1/batches/b failed after 3 tries: HTTP 500"):
            api.call("GET", "/batches/b")


def test_a_4xx_is_permanent_with_the_servers_words_and_no_retry_and_no_key():
    with Scripted([(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                     "message": "max_tokens: must be positive"}}, {})]) as srv:
        api = AnthropicApi(srv.base, KEY, limits=FAST)
        with pytest.raises(PermanentError) as err:
            api.call_json("POST", "/v1/messages/batches", {"requests": []})
        assert len(srv.seen) == 1
    msg = str(err.value)
    assert msg.startswith("HTTP 400: max_tokens: must be positive") and "/v1/messages/batches" in msg
    assert KEY not in msg
    h = srv.seen[0]["headers"]
    assert h["x-api-key"] == KEY and h["anthropic-version"] and "Authorization" not in h


def test_an_unreachable_server_is_transient():
    api = OpenAIApi("http://127.0.0.1:9/v1", None, limits=RetryLimits(max_retries=0), timeout_s=2)
    with pytest.raises(TransientError, match="failed after 1 tries: connection error"):
        api.call("GET", "/models")


def test_sync_calls_work_inside_a_running_event_loop_as_in_jupyter():
    with Scripted() as srv:
        api = OpenAIApi(f"{srv.base}/v1", None, limits=FAST)

        async def cell():  # a notebook cell runs while the kernel's loop runs
            return api.call_json("POST", "/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})

        out = asyncio.run(cell())
    assert out["choices"][0]["message"]["content"] == " echo: hi "
    assert "Authorization" not in srv.seen[0]["headers"]  # no key, no header (a local server)


def test_an_upload_is_a_multipart_form_with_the_file():
    with Scripted([(200, {"id": "file-1"}, {})]) as srv:
        api = OpenAIApi(f"{srv.base}/v1", KEY, limits=FAST)
        assert api.upload_file(b'{"a": 1}\n', filename="train.jsonl", purpose="fine-tune") == "file-1"
    seen = srv.seen[0]
    assert seen["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="purpose"' in seen["body"] and b"fine-tune" in seen["body"]
    assert b'filename="train.jsonl"' in seen["body"] and b'{"a": 1}\n' in seen["body"]


def test_a_client_pickles_without_its_connections_or_key_leaking_into_errors():
    with Scripted() as srv:
        api = OpenAIApi(f"{srv.base}/v1", KEY, limits=FAST)

        async def live():
            out = await api.post_json("/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
            assert api._session is not None
            clone = pickle.loads(pickle.dumps(api))
            await api.aclose()
            return out, clone

        out, clone = asyncio.run(live())
        assert clone._session is None and clone.headers == api.headers
        assert clone.call_json("POST", "/chat/completions", {"messages": [{"role": "user", "content": "y"}]})
    assert json.loads(out)["choices"][0]["message"]["content"] == " echo: x "


def test_openai_generate_answers_in_order_through_the_one_client(monkeypatch):
    monkeypatch.delenv("FLYWHEEL_GEN_KEY", raising=False)
    texts = [f"request {i}" for i in range(25)]
    with Scripted([(503, {}, {})]) as srv:  # the first call fails once and is retried
        got = openai_generate("ft:model", texts, base_url=f"{srv.base}/v1", api_key_env="FLYWHEEL_GEN_KEY",
                              progress=False, concurrency=4)
    assert got == [f"echo: {t}" for t in texts]
    assert len(srv.seen) == len(texts) + 1
    body = json.loads(srv.seen[-1]["body"])
    assert body["model"] == "ft:model" and body["temperature"] == 0 and body["messages"][0]["role"] == "system"


def test_a_panel_that_still_sets_a_transport_is_refused_with_what_to_do(tmp_path):
    import yaml

    from flywheel_lib.judges import PanelError, load_panel
    from flywheel_lib.taxonomy import load_taxonomy

    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"name": "old", "judges": [
        {"name": "api", "backend": "openai-compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1",
         "params": {"transport": "sdk"}}]}))
    with pytest.raises(PanelError, match=r"(?s)api.*params.transport is gone.*delete the key"):
        load_panel(f, taxonomy=load_taxonomy("params/taxonomy/segments.yaml"))
