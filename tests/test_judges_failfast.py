"""Judges that fail loudly: a judge whose calls mostly fail stops the stage early, naming itself, its last error
and what is cached, against a real HTTP server on 127.0.0.1; a judge that fails now and then still completes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flywheel_lib.judges import JudgeFailureError, load_panel
from flywheel_lib.judges.failfast import FailureBound
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_items, toy_seed
from flywheel_lib.testing.fault_server import FaultServer

KEY = "fake-key-failfast-7d21"
CONC = 4


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


def _items(n: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"x{i}" for i in range(n)],
                         "text": [f"customers who placed {i} orders" for i in range(n)], "context": ""})


def _api_judge(srv, *, retries=1, name="api") -> dict:
    return {"name": name, "backend": "openai-compatible", "model": "m", "base_url": srv.url,
            "api_key_env": "FLYWHEEL_FF_KEY", "options": {"timeout_s": 5, "max_tokens": 100},
            "limits": {"concurrency": CONC, "max_retries": retries, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
            "prices": {"input_per_mtok": 1, "output_per_mtok": 1}}


def _panel(path, judges) -> str:
    path.write_text(yaml.safe_dump({"name": "ff", "judges": judges}))
    return str(path)


def test_the_bound_waits_for_enough_calls_then_judges_the_rate():
    b = FailureBound(0.2, planned=600)
    for _ in range(49):
        b.record(ok=False, error="boom")
    assert not b.breached()  # 49 calls: not enough to know
    b.record(ok=False, error="HTTP 500")
    assert b.breached() and b.last_error == "HTTP 500"
    small = FailureBound(0.2, planned=3)
    small.record(ok=True)
    small.record(ok=False, error="x")
    assert not small.breached()
    small.record(ok=True)
    assert small.breached()  # 1 of 3 > 20%, and 3 calls are all there is
    never = FailureBound(None, planned=5)
    for _ in range(5):
        never.record(ok=False)
    assert not never.breached()
    with pytest.raises(ValueError, match="max_failure_rate"):
        FailureBound(1.5)


def test_a_dead_endpoint_stops_the_stage_within_the_bound(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_FF_KEY", KEY)
    n, retries = 600, 1
    with FaultServer(faults={"500": 1.0}) as srv:
        panel = load_panel(_panel(tmp_path / "p.yaml", [_api_judge(srv, retries=retries)]), taxonomy=tax)
        panel.fit(toy_seed())
        with pytest.raises(JudgeFailureError) as ei:
            panel.judge(_items(n), cache_dir=tmp_path / "cache", progress=False)
        requests = srv.stats["requests"]
    e = ei.value
    assert e.judge == "api" and e.failures == e.calls and e.calls >= 50
    assert e.last_error == f"call failed after {retries + 1} tries: HTTP 500"
    msg = str(e)
    assert "judge 'api' stopped" in msg and "HTTP 500" in msg and "Already cached: 0 of 600" in msg
    # 50 calls tell; the workers in flight then are stopped: far from the 600 x 2 requests a full run pays
    assert requests <= (50 + CONC) * (retries + 1), requests


def test_what_was_cached_is_named_and_kept(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_FF_KEY", KEY)
    cache = tmp_path / "cache"
    with FaultServer() as srv:
        f = _panel(tmp_path / "p.yaml", [_api_judge(srv)])
        load_panel(f, taxonomy=tax).fit(toy_seed()).judge(_items(30), cache_dir=cache, progress=False)
    with FaultServer(faults={"500": 1.0}) as dead:
        f = _panel(tmp_path / "p.yaml", [_api_judge(dead)])
        with pytest.raises(JudgeFailureError, match=r"Already cached: 30 of 200 verdicts of this judge \(30 from "
                                                    r"earlier runs, 0 from this one\)"):
            load_panel(f, taxonomy=tax).fit(toy_seed()).judge(_items(200), cache_dir=cache, progress=False)


def test_a_server_failing_one_call_in_ten_still_completes(tax, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_FF_KEY", KEY)
    n = 300
    with FaultServer(faults={"500": 0.1}, seed=11) as srv:
        panel = load_panel(_panel(tmp_path / "p.yaml", [_api_judge(srv, retries=0)]), taxonomy=tax)
        v = panel.fit(toy_seed()).judge(_items(n), cache_dir=tmp_path / "cache", progress=False)
        assert srv.stats["500"] > 0
    st = panel.stats_.set_index("judge").loc["api"]
    assert len(v) == n and st.errors == srv.stats["500"] and 0 < st.errors / n <= 0.2
    assert v.category.notna().sum() == n - st.errors


def test_a_judge_whose_answers_never_parse_stops_too(tax, tmp_path):
    judge = {"name": "garbled", "backend": "fake", "fewshot": {"strategy": "none"},
             "params": {"script": [{"match": ".", "answer": "I would rather not say"}]}}
    panel = load_panel(_panel(tmp_path / "p.yaml", [judge]), taxonomy=tax)
    with pytest.raises(JudgeFailureError, match="judge 'garbled' stopped.*last error: unparseable verdict"):
        panel.fit(toy_seed()).judge(_items(80), cache_dir=None, progress=False)
    v = panel.judge(_items(80), cache_dir=None, progress=False, max_failure_rate=None)  # the bound switched off
    assert v.category.isna().all() and v.error.str.startswith("unparseable verdict").all()


@pytest.mark.slow
def test_02_judge_stops_naming_the_dead_judge_and_the_offline_ones_are_kept(tmp_path):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    prod = pd.concat([toy_items().assign(source="production")] * 1, ignore_index=True)
    many = pd.DataFrame({"item_id": [f"p{i}" for i in range(300)], "source": "production",
                         "text": [f"customers who placed {i} orders" for i in range(300)]})
    items = pd.concat([toy_seed(), prod, many], ignore_index=True)
    items.to_parquet(run / "artifacts" / "items.parquet", index=False)
    with FaultServer(faults={"500": 1.0}) as srv:
        panel = yaml.safe_load(Path("params/judges/offline.yaml").read_text())
        panel["judges"].append(_api_judge(srv, retries=0))
        f = tmp_path / "panel.yaml"
        f.write_text(yaml.safe_dump(panel))
        out = run / "02_judge.ipynb"
        cmd = [sys.executable, "-m", "papermill", "notebooks/02_judge.ipynb", str(out), "-k", "python3",
               "-p", "run_dir", str(run), "-p", "panel", str(f), "-p", "cache_dir", str(tmp_path / "cache"),
               "-p", "progress", "False", "-p", "max_failure_rate", "0.2"]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "FLYWHEEL_FF_KEY": KEY})
        requests = srv.stats["requests"]
    assert res.returncode != 0
    assert "JudgeFailureError" in res.stderr and "judge 'api' stopped" in res.stderr, res.stderr[-3000:]
    assert requests <= 50 + CONC, requests
    assert not (run / "artifacts" / "verdicts.parquet").exists()  # no table pretending the stage succeeded
    nb = json.loads(out.read_text())  # the failed notebook is kept, with the error in it
    assert "judge 'api' stopped" in json.dumps(nb["cells"])
