"""Batch mode (``mode: batch``) against a real local server speaking OpenAI's Files + Batches and Anthropic's
Message Batches endpoints, with faults: expiry with part done, per-request errors, a malformed result line, a
rejected key, a client killed mid-poll and restarted, a cancelled batch. Every item ends with exactly one verdict
or one explicit abstention saying why; the server's submission counts show nothing is paid twice.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml

from flywheel_lib.judges import JudgeFailureError, load_panel
from flywheel_lib.judges.batch import read_batch_results, write_batch_file
from flywheel_lib.judges.batch_journal import BatchJournal
from flywheel_lib.records import check_table
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_seed
from flywheel_lib.testing.batch_server import BatchServer
from flywheel_lib.testing.fault_server import FaultServer

KEY = "batch-key-DO-NOT-LEAK-77"
BACKENDS = ("openai", "anthropic")


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_BATCH_KEY", KEY)


def _items(n: int, prefix: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"{prefix}{i}" for i in range(n)],
                         "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})


def _judge_cfg(backend: str, url: str, *, mode="batch", retries=2, batch=None, prices=None) -> dict:
    return {"name": backend, "backend": "openai-compatible" if backend == "openai" else "anthropic", "model": "m",
            "api_key_env": "FLYWHEEL_BATCH_KEY", "base_url": url, "mode": mode,
            "options": {"timeout_s": 5, "max_tokens": 100}, "fewshot": {"strategy": "stratified", "per_category": 1},
            "limits": {"concurrency": 8, "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
            "prices": prices or {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "batch": {"poll_s": 0.01, "poll_growth": 2.0, "poll_max_s": 0.05, "max_resubmits": retries, **(batch or {})}}


def _panel(tmp_path, srv, tax, backends=BACKENDS, **kw):
    js = [_judge_cfg(b, srv.url if b == "openai" else srv.base, **kw) for b in backends]
    p = tmp_path / "panel.yaml"
    p.write_text(yaml.safe_dump({"name": "batch", "judges": js}))
    return load_panel(p, taxonomy=tax).fit(toy_seed())


def _one_row_each(v: pd.DataFrame, items: pd.DataFrame, judges) -> None:
    check_table(v, "verdicts", "test")
    assert len(v) == len(items) * len(judges)
    assert not v.duplicated(["item_id", "judge"]).any()
    assert set(v["judge"]) == set(judges)
    ab = v[v["category"].isna()]
    assert ab["error"].map(lambda e: isinstance(e, str) and len(e) > 5).all(), ab["error"].tolist()[:5]


def test_batch_verdicts_are_online_cache_hits_and_priced_at_half(tax, tmp_path):
    items = _items(40)
    with BatchServer(polls_to_end=2) as srv:
        pan = _panel(tmp_path, srv, tax)
        v = pan.judge(items, cache_dir=tmp_path / "cache", progress=False)
        _one_row_each(v, items, BACKENDS)
        assert v["category"].notna().all()
        assert srv.stats["batches"] == 2 and max(srv.submissions.values()) == 1
        assert len(srv.submissions) == 80
        batch_cost = v.groupby("judge")["cost_usd"].sum()
        stats = pan.stats_.set_index("judge")
        assert (stats["called"] == 40).all() and (stats["cached"] == 0).all()
        assert stats["cost_usd"].round(9).to_dict() == batch_cost.round(9).to_dict()
    # the same prompts online against a plain server: every verdict is a cache hit, nothing is called
    with FaultServer() as online:
        pan2 = _panel(tmp_path, online, tax, mode="online")
        v2 = pan2.judge(items, cache_dir=tmp_path / "cache", progress=False)
        assert online.stats["requests"] == 0
        assert v2["cached"].all()
        pd.testing.assert_series_equal(v2["category"], v["category"])
        # and the other way round: online verdicts for new items, then batch mode hits them
        more = _items(10, prefix="y")
        more["text"] = more["text"] + " last week"
        pan2.judge(more, cache_dir=tmp_path / "cache", progress=False)
        assert online.stats["requests"] == 20
    with BatchServer() as srv:
        v3 = _panel(tmp_path, srv, tax).judge(more, cache_dir=tmp_path / "cache", progress=False)
        assert srv.stats["batches"] == 0 and v3["cached"].all()
    # prices: the batch rate is half the online price by default; tokens are the server's
    online_cost = (v["tokens_in"] * 1.0 + v["tokens_out"] * 2.0) / 1e6
    assert v["tokens_in"].gt(0).all()
    assert abs(v["cost_usd"].sum() - online_cost.sum() / 2) < 1e-9


def test_explicit_batch_price_entry(tax, tmp_path):
    items = _items(10)
    prices = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "batch": {"input_per_mtok": 0.1, "output_per_mtok": 0.1}}
    with BatchServer() as srv:
        v = _panel(tmp_path, srv, tax, backends=("openai",), prices=prices).judge(items, cache_dir=tmp_path / "c", progress=False)
    want = ((v["tokens_in"] + v["tokens_out"]) * 0.1 / 1e6).sum()
    assert abs(v["cost_usd"].sum() - want) < 1e-12 and want > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_expired_batch_resubmits_only_what_was_not_done(tax, tmp_path, backend):
    items = _items(30)
    with BatchServer(expire_first=1, partial=0.4) as srv:
        v = _panel(tmp_path, srv, tax, backends=(backend,)).judge(items, cache_dir=tmp_path / "c", progress=False)
        _one_row_each(v, items, [backend])
        assert v["category"].notna().all()
        assert srv.stats["batches"] == 2
        counts = sorted(srv.submissions.values())
        assert counts.count(1) == 12 and counts.count(2) == 18  # 40% done in the expired batch, the rest again
        assert len(srv.batches[list(srv.batches)[1]].reqs) == 18


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelled_batch_and_retry_limit(tax, tmp_path, backend):
    items = _items(20)
    # every batch is cancelled with nothing done: after 1 + max_resubmits submissions, explicit abstentions
    with BatchServer(cancel_first=10, partial=0.0) as srv:
        # by default a judge whose every request failed stops the stage, naming itself
        with pytest.raises(JudgeFailureError, match=f"judge '{backend}' stopped: 20 of its 20 calls"):
            _panel(tmp_path, srv, tax, backends=(backend,), retries=1).judge(items, cache_dir=tmp_path / "c0",
                                                                             progress=False)
    with BatchServer(cancel_first=10, partial=0.0) as srv:
        v = _panel(tmp_path, srv, tax, backends=(backend,), retries=1).judge(items, cache_dir=tmp_path / "c",
                                                                         progress=False, max_failure_rate=None)
        _one_row_each(v, items, [backend])
        assert v["category"].isna().all()
        assert v["error"].str.contains("after 2 submissions").all()
        assert v["error"].str.contains("cancel").all()
        assert set(srv.submissions.values()) == {2} and srv.stats["batches"] == 2
    # nothing of it was cached: a later run asks again and gets verdicts
    with BatchServer() as srv:
        v2 = _panel(tmp_path, srv, tax, backends=(backend,)).judge(items, cache_dir=tmp_path / "c", progress=False)
        assert v2["category"].notna().all() and len(srv.submissions) == 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_request_errors_and_a_malformed_line(tax, tmp_path, backend):
    items = _items(200)
    faults = {"error_500": 0.05, "error_400": 0.05, "malformed": 0.05}
    with BatchServer(faults=faults, seed=3) as srv:
        v = _panel(tmp_path, srv, tax, backends=(backend,)).judge(items, cache_dir=tmp_path / "c", progress=False)
        _one_row_each(v, items, [backend])
        n500, n400, nbad = srv.stats["error_500"], srv.stats["error_400"], srv.stats["malformed"]
        assert n500 and n400 and nbad
        err = v["error"].fillna("")
        # 5xx lines are resubmitted alone and answered; 4xx and malformed lines are abstentions for those items only
        assert err.str.contains("batch request failed: HTTP 400|invalid_request_error").sum() == n400
        assert err.str.contains("batch result unreadable: malformed result line").sum() == nbad
        assert v["category"].isna().sum() == n400 + nbad
        assert sum(c == 2 for c in srv.submissions.values()) == n500
        assert srv.stats["batches"] == 2


def test_rejected_key_is_an_abstention_for_every_item(tax, tmp_path, monkeypatch):
    items = _items(12)
    monkeypatch.setenv("FLYWHEEL_BATCH_KEY", "wrong-key")
    with BatchServer(expect_key=KEY) as srv:
        with pytest.raises(JudgeFailureError, match="stopped: 12 of its 12 calls.*batch rejected: HTTP 401"):
            _panel(tmp_path, srv, tax).judge(items, cache_dir=tmp_path / "c0", progress=False)  # by default
        v = _panel(tmp_path, srv, tax).judge(items, cache_dir=tmp_path / "c", progress=False, max_failure_rate=None)
        _one_row_each(v, items, BACKENDS)
        assert v["category"].isna().all()
        assert v["error"].str.contains("batch rejected: HTTP 401").all()
        assert srv.stats["batches"] == 0 and srv.stats["unauthorized"] >= 2
    journal = BatchJournal(tmp_path / "c")
    assert journal.states() == {"rejected": 2}
    assert "wrong-key" not in (tmp_path / "c" / "batches.sqlite").read_bytes().decode("latin-1")


_CLIENT = textwrap.dedent("""
    import sys
    import pandas as pd
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy import load_taxonomy
    from flywheel_lib.testing import toy_seed
    pan = load_panel(sys.argv[1], taxonomy=load_taxonomy("params/taxonomy/segments.yaml")).fit(toy_seed())
    items = pd.DataFrame({"item_id": [f"x{i}" for i in range(50)],
                          "text": [f"customers who placed {i} orders" for i in range(50)], "context": ""})
    pan.judge(items, cache_dir=sys.argv[2], progress=False)
""")


def test_client_killed_mid_poll_reattaches_and_pays_nothing_twice(tax, tmp_path):
    items = _items(50)
    with BatchServer() as srv:
        srv.hold()
        js = [_judge_cfg(b, srv.url if b == "openai" else srv.base, batch={"max_requests": 20}) for b in BACKENDS]
        panel_file = tmp_path / "panel.yaml"
        panel_file.write_text(yaml.safe_dump({"name": "batch", "judges": js}))
        env = {**os.environ, "PYTHONPATH": os.getcwd(), "FLYWHEEL_BATCH_KEY": KEY}
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT, str(panel_file), str(tmp_path / "c")], env=env)
        deadline = time.monotonic() + 120
        while srv.stats["polls"] < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the client ended before it was killed"
        proc.kill()
        proc.wait()
        assert srv.stats["batches"] == 6  # 3 per judge: split at max_requests=20
        assert len(srv.submissions) == 100
        srv.release()
        pan = load_panel(panel_file, taxonomy=tax).fit(toy_seed())
        v = pan.judge(items, cache_dir=tmp_path / "c", progress=False)
        _one_row_each(v, items, BACKENDS)
        assert v["category"].notna().all()
        assert srv.stats["batches"] == 6 and max(srv.submissions.values()) == 1
        assert BatchJournal(tmp_path / "c").states() == {"collected": 6}


def test_vllm_run_batch_file_round_trip(tax, tmp_path):
    """The OpenAI batch JSONL is what vLLM's run_batch reads; its output file loads into the verdict cache."""
    items = _items(15)
    with BatchServer() as srv:
        pan = _panel(tmp_path, srv, tax, backends=("openai",), mode="online")
        j = pan["openai"]
        n = write_batch_file(j, items, tmp_path / "requests.jsonl")
        assert n == 15
        lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
        assert {x["url"] for x in lines} == {"/v1/chat/completions"}
        # stand in for `vllm run_batch`: the server answers the same file and we download its output file
        b = srv._create("openai", lines, {})
        srv.release()
        b.state = "completed"
        out = srv.openai_object(b)
        (tmp_path / "results.jsonl").write_bytes(srv.files[out["output_file_id"]])
        kinds = read_batch_results(j, tmp_path / "results.jsonl", tmp_path / "c")
        assert kinds == {"ok": 15}
        v = pan.judge(items, cache_dir=tmp_path / "c", progress=False)
        assert v["cached"].all() and v["category"].notna().all()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no": "id"}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_batch_results(j, bad, tmp_path / "c")
