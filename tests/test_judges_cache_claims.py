"""Claims in the verdict cache: two runs sharing one cache pay each prompt once (real processes, real SQLite, one
counting HTTP server on 127.0.0.1); a claim whose owner died, or whose lease ran out, is taken over."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import yaml

from flywheel_lib.judges import VerdictCache, load_panel
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_seed
from flywheel_lib.testing.fault_server import FaultServer

KEY = "fake-key-claims-51ac"

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import pandas as pd
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy import load_taxonomy
    from flywheel_lib.testing import toy_seed
    panel_file, cache_dir, n, me, barrier = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
    panel = load_panel(panel_file, taxonomy=load_taxonomy("params/taxonomy/segments.yaml")).fit(toy_seed())
    items = pd.DataFrame({"item_id": [f"x{i}" for i in range(n)],
                          "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})
    (barrier / me).touch()
    while len(list(barrier.iterdir())) < 2:   # both runs start judging together
        time.sleep(0.01)
    v = panel.judge(items, cache_dir=cache_dir, progress=False)
    st = panel.stats_.iloc[0]
    print(json.dumps({"called": int(st.called), "cached": int(st.cached), "answered": int(v.category.notna().sum()),
                      "rows": len(v)}))
""")


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


def _items(n: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"x{i}" for i in range(n)],
                         "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})


def _panel(path, srv, concurrency=4) -> str:
    path.write_text(yaml.safe_dump({"name": "claims", "judges": [{
        "name": "api", "backend": "openai-compatible", "model": "m", "base_url": srv.url,
        "api_key_env": "FLYWHEEL_CLAIMS_KEY", "options": {"timeout_s": 10, "max_tokens": 100},
        "limits": {"concurrency": concurrency, "max_retries": 2, "backoff_base_s": 0.01},
        "prices": {"input_per_mtok": 1, "output_per_mtok": 1}}]}))
    return str(path)


def test_two_processes_on_one_cache_pay_each_prompt_once(tmp_path):
    n = 240
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with FaultServer(latency_s=0.05) as srv:
        pfile = _panel(tmp_path / "p.yaml", srv)
        env = {**os.environ, "FLYWHEEL_CLAIMS_KEY": KEY}
        procs = [subprocess.Popen([sys.executable, str(script), pfile, str(tmp_path / "cache"), str(n), me,
                                   str(barrier)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for me in ("a", "b")]
        outs = [p.communicate(timeout=300) for p in procs]
        seen = dict(srv.seen)
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    a, b = (json.loads(o.strip().splitlines()[-1]) for o, _ in outs)
    assert len(seen) == n and max(seen.values()) == 1, f"{sum(seen.values())} requests for {n} prompts"
    assert a["called"] + b["called"] == n and a["called"] > 0 and b["called"] > 0  # they shared the work
    assert a["answered"] == b["answered"] == a["rows"] == n  # each run has every verdict: its own or the other's
    assert a["cached"] == n - a["called"] and b["cached"] == n - b["called"]
    assert VerdictCache(tmp_path / "cache").claims() == []  # nothing left claimed


DEAD_OWNER = textwrap.dedent("""
    import os, sys
    from flywheel_lib.judges import VerdictCache
    from flywheel_lib.judges.cache import new_owner
    cache = VerdictCache(sys.argv[1])
    got, _ = cache.claim(sys.argv[2:], new_owner(), ttl_s=3600)
    print(len(got), flush=True)
    os._exit(0)   # dies holding its claims
""")


def test_claims_of_a_dead_process_or_an_expired_lease_are_taken_over(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_CLAIMS_KEY", KEY)
    n = 40
    cache_dir = tmp_path / "cache"
    with FaultServer() as srv:
        panel = load_panel(_panel(tmp_path / "p.yaml", srv), taxonomy=tax).fit(toy_seed())
        keys = [r.key for r in panel["api"].requests(_items(n).to_dict("records"))]
        script = tmp_path / "dead.py"
        script.write_text(DEAD_OWNER)
        out = subprocess.run([sys.executable, str(script), str(cache_dir), *keys[:20]], capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == "20"
        cache = VerdictCache(cache_dir)
        # another host's claims: one whose lease ran out, one live for a moment more
        assert cache.claim(keys[20:30], "elsewhere:1:expired", ttl_s=-1)[0] == keys[20:30]
        assert cache.claim(keys[30:32], "elsewhere:1:live", ttl_s=1.0)[0] == keys[30:32]
        assert len(cache.claims()) == 32
        v = panel.judge(_items(n), cache_dir=cache_dir, progress=False)
        seen = dict(srv.seen)
    assert v.category.notna().all() and len(seen) == n and max(seen.values()) == 1
    assert cache.claims() == []


def test_a_run_waits_for_a_live_claim_and_reads_the_verdict_it_brings(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_CLAIMS_KEY", KEY)
    import threading

    from flywheel_lib.records import Verdict

    cache_dir = tmp_path / "cache"
    with FaultServer() as srv:
        panel = load_panel(_panel(tmp_path / "p.yaml", srv), taxonomy=tax).fit(toy_seed())
        reqs = panel["api"].requests(_items(3).to_dict("records"))
        other = VerdictCache(cache_dir)
        assert other.claim([reqs[0].key], "elsewhere:1:busy", ttl_s=3600)[0] == [reqs[0].key]

        def deliver():  # the other run's verdict arrives while this one waits
            while not srv.stats["requests"] >= 2:
                time.sleep(0.01)
            other.put(reqs[0].key, "api", Verdict(item_id="x0", judge="api", category="ambiguous",
                                                  reason_key="theirs"))

        t = threading.Thread(target=deliver)
        t.start()
        v = panel.judge(_items(3), cache_dir=cache_dir, progress=False)
        t.join()
        assert dict(srv.seen).get("customers who placed 0 orders") is None and srv.stats["requests"] == 2
    row = v.set_index("item_id").loc["x0"]
    assert row.category == "ambiguous" and row.reason_key == "theirs" and row.cached and row.cost_usd == 0
