"""LLM judges against a real local HTTP server that injects faults (OpenAI and Anthropic wire formats).

Every item ends with a verdict or an explicit abstention, none twice; Retry-After is honoured; a missing key
fails before any call; a killed run resumes from the cache; keys never reach the cache or the tables.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml

from flywheel_lib.judges import JudgeFailureError, PanelError, load_panel
from flywheel_lib.records import check_table
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_seed
from flywheel_lib.testing.fault_server import FAULTS, FaultServer

KEY = "fake-key-DO-NOT-LEAK-4f9c2e"
ALL_FAULTS = {"429": 0.05, "500": 0.05, "slow": 0.01, "bad_body": 0.03, "bad_json": 0.03, "truncated": 0.03,
              "drop": 0.03}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


def _items(n: int, prefix: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"{prefix}{i}" for i in range(n)],
                         "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})


def _panel_file(path, srv, *, judges=("openai-compatible", "anthropic"), concurrency=32, retries=4, timeout=0.5,
                key_env="FLYWHEEL_TEST_KEY", extra=None):
    js = []
    for b in judges:
        j = {"name": b.split("-")[0], "backend": b, "model": "test-model", "api_key_env": key_env,
             "base_url": srv.url if b != "anthropic" else srv.base,
             "options": {"timeout_s": timeout, "max_tokens": 100},
             "fewshot": {"strategy": "stratified", "per_category": 1},
             "limits": {"concurrency": concurrency, "max_retries": retries, "backoff_base_s": 0.01,
                        "backoff_max_s": 0.2},
             "prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
        j.update(extra or {})
        js.append(j)
    path.write_text(yaml.safe_dump({"name": "faulty", "judges": js}))
    return path


def test_every_item_ends_once_with_a_verdict_or_an_abstention(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_TEST_KEY", KEY)
    n = 1500
    with FaultServer(faults=ALL_FAULTS, slow_s=1.5, seed=3, expect_key=KEY) as srv:
        panel = load_panel(_panel_file(tmp_path / "p.yaml", srv, retries=2), taxonomy=tax).fit(toy_seed())
        v = panel.judge(_items(n), cache_dir=tmp_path / "cache", progress=False)
        stats = dict(srv.stats)
    assert "unauthorized" not in stats  # both backends sent the key from the environment
    check_table(v, "verdicts")  # also: no (item, judge) twice
    assert len(v) == 2 * n and set(v.judge) == {"openai", "anthropic"}
    assert v.groupby("judge").item_id.nunique().tolist() == [n, n]
    assert (v.category.notna() ^ v.error.notna()).all()  # a verdict or a reason to abstain, never both/neither
    assert all(stats.get(f, 0) > 0 for f in FAULTS), stats
    errs = v.error.dropna()
    for why in ("truncated at max_tokens", "malformed JSON", "call failed after"):
        assert errs.str.contains(why).any(), why
    st = panel.stats_.set_index("judge")
    assert (st.retries > 0).all() and (st.cost_usd > 0).all()
    assert st.abstained.sum() == v.category.isna().sum()
    paid = v[v.tokens_in > 0]
    assert paid.cost_usd.sum() == pytest.approx(st.cost_usd.sum())
    assert paid.cost_usd.iloc[0] == pytest.approx((paid.tokens_in.iloc[0] * 1 + paid.tokens_out.iloc[0] * 2) / 1e6)

    # second run: everything but the failed calls comes from the cache
    failed = v.error.fillna("").str.startswith("call failed").sum()
    with FaultServer(seed=4) as srv2:
        panel2 = load_panel(_panel_file(tmp_path / "p.yaml", srv2, retries=2), taxonomy=tax).fit(toy_seed())
        v2 = panel2.judge(_items(n), cache_dir=tmp_path / "cache", progress=False)
        assert srv2.stats["requests"] == failed
    assert v2.cached.sum() == 2 * n - failed
    assert v2.category.isna().sum() == v.category.isna().sum() - failed

    # the key went to the server as a header only: not in the cache file, not in the table
    blob = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir())
    assert KEY.encode() not in blob and KEY not in v2.to_csv()


@pytest.mark.parametrize("backend", ["openai-compatible", "anthropic"])
def test_retry_after_is_honoured(tax, tmp_path, monkeypatch, backend):
    monkeypatch.setenv("FLYWHEEL_TEST_KEY", KEY)
    with FaultServer(faults={"429": 1.0}, retry_after_s=0.4) as srv:
        panel = load_panel(_panel_file(tmp_path / "p.yaml", srv, judges=(backend,), retries=2), taxonomy=tax)
        panel.fit(toy_seed())
        t0 = time.perf_counter()
        v = panel.judge(_items(1), cache_dir=tmp_path / "c", progress=False, max_failure_rate=None)
        elapsed = time.perf_counter() - t0
        assert srv.stats["requests"] == 3
    assert v.category.isna().all() and v.error.iloc[0] == "call failed after 3 tries: HTTP 429"
    assert elapsed >= 0.8  # two waits of Retry-After 0.4 s, where the backoff alone would be ~0.02 s


def test_a_rejected_key_is_an_abstention_with_the_servers_words_and_no_retry(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_TEST_KEY", "a-key-the-server-does-not-know")
    with FaultServer(expect_key=KEY) as srv:
        panel = load_panel(_panel_file(tmp_path / "p.yaml", srv, judges=("openai-compatible", "anthropic")),
                           taxonomy=tax).fit(toy_seed())
        with pytest.raises(JudgeFailureError, match="last error: call failed: HTTP 401: Incorrect API key"):
            panel.judge(_items(4), cache_dir=tmp_path / "loud", progress=False)  # by default: loud
        before = _settled(srv, "unauthorized")  # calls the stop cut off may still land after it
        v = panel.judge(_items(4), cache_dir=tmp_path / "c", progress=False, max_failure_rate=None)
        # with the bound off: one call per item and judge (the same judges again, from a new event loop), none
        # retried
        assert _settled(srv, "unauthorized") - before == 8 and srv.stats["requests"] == 0
    assert v.category.isna().all()
    assert v.error.str.fullmatch(r"call failed: HTTP 401: Incorrect API key provided").all(), v.error.tolist()
    assert not (tmp_path / "c" / "verdicts.sqlite").exists() or _cache_rows(tmp_path / "c" / "verdicts.sqlite") == 0


def _settled(srv, key: str, quiet_s: float = 0.5) -> int:
    """The server's count once it has not changed for ``quiet_s`` (calls of a stopped run still in flight land)."""
    import time

    last, since = srv.stats[key], time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if srv.stats[key] != last:
            last, since = srv.stats[key], time.monotonic()
    return last


def test_missing_key_fails_before_any_call(tax, tmp_path, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_NO_SUCH_KEY", raising=False)
    with FaultServer() as srv:
        panel = load_panel(_panel_file(tmp_path / "p.yaml", srv, key_env="FLYWHEEL_NO_SUCH_KEY"), taxonomy=tax)
        panel.fit(toy_seed())
        with pytest.raises(PanelError, match="set the environment variable FLYWHEEL_NO_SUCH_KEY"):
            panel.judge(_items(3), cache_dir=tmp_path / "c", progress=False)
        assert srv.stats["requests"] == 0


CHILD = textwrap.dedent("""
    import sys, pandas as pd
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy import load_taxonomy
    from flywheel_lib.testing import toy_seed
    panel = load_panel(sys.argv[1], taxonomy=load_taxonomy("params/taxonomy/segments.yaml")).fit(toy_seed())
    n = int(sys.argv[3])
    items = pd.DataFrame({"item_id": [f"x{i}" for i in range(n)],
                          "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})
    panel.judge(items, cache_dir=sys.argv[2], progress=False)
    print("finished")
""")


def _cache_rows(path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_killed_run_resumes_from_the_cache(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_TEST_KEY", KEY)
    n = 300
    with FaultServer(latency_s=0.05) as srv:
        pfile = _panel_file(tmp_path / "p.yaml", srv, judges=("openai-compatible",), concurrency=4, timeout=5)
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        cache = tmp_path / "cache"
        proc = subprocess.Popen([sys.executable, str(script), str(pfile), str(cache), str(n)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=os.getcwd())
        deadline = time.time() + 120
        while _cache_rows(cache / "verdicts.sqlite") < 60 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = _cache_rows(cache / "verdicts.sqlite")
        assert 60 <= done < n, f"killed too late ({done} of {n}); child said {proc.stdout.read()}"
        before = srv.stats["requests"]
        panel = load_panel(pfile, taxonomy=tax).fit(toy_seed())
        v = panel.judge(_items(n), cache_dir=cache, progress=False)
        paid_again = srv.stats["requests"] - before
    assert v.cached.sum() == done and paid_again == n - done
    assert v.category.notna().all()


def test_rate_limits_space_the_calls(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_TEST_KEY", KEY)
    with FaultServer() as srv:
        # 600 requests per minute = one per 0.1 s after a burst of `concurrency` (4): 16 items take >= 1.2 s
        f = _panel_file(tmp_path / "rpm.yaml", srv, judges=("openai-compatible",), concurrency=4,
                        extra={"limits": {"concurrency": 4, "rpm": 600}})
        panel = load_panel(f, taxonomy=tax).fit(toy_seed())
        t0 = time.perf_counter()
        v = panel.judge(_items(16, "r"), cache_dir=None, progress=False)
        rpm_s = time.perf_counter() - t0
        # 60,000 tokens per minute with ~1,300 estimated tokens a request: ~1.3 s per request after the first
        f = _panel_file(tmp_path / "tpm.yaml", srv, judges=("openai-compatible",), concurrency=4,
                        extra={"limits": {"concurrency": 4, "tpm": 60000}})
        panel2 = load_panel(f, taxonomy=tax).fit(toy_seed())
        est = panel2["openai"].requests(_items(1, "t").to_dict("records"))[0].est_tokens
        t0 = time.perf_counter()
        panel2.judge(_items(3, "t"), cache_dir=None, progress=False)
        tpm_s = time.perf_counter() - t0
    assert v.category.notna().all()
    assert rpm_s >= 1.15, rpm_s  # the limiter's spacing is a lower bound on time; a slow machine only adds
    assert tpm_s >= 2 * est * 60 / 60000 - 0.1, (tpm_s, est)
