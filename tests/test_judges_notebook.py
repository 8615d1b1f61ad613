"""02_judge executed with papermill against a real local server with an API key in the environment: the key
never appears in the executed notebook, its HTML, the stage record or the cache."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from flywheel_lib.testing import toy_items, toy_seed
from flywheel_lib.testing.fault_server import FaultServer

KEY = "sk-nb-SECRET-93be1d77"
pytestmark = pytest.mark.slow


def test_02_judge_runs_and_never_leaks_the_key(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    prod = toy_items().assign(source="production")
    pd.concat([toy_seed(), prod], ignore_index=True).to_parquet(run / "artifacts" / "items.parquet", index=False)
    monkeypatch.setenv("FLYWHEEL_NB_KEY", KEY)
    with FaultServer(faults={"429": 0.2, "truncated": 0.2}, retry_after_s=0.01) as srv:
        panel = tmp_path / "panel.yaml"
        offline = yaml.safe_load(open("params/judges/offline.yaml"))
        offline["judges"].append({
            "name": "api", "backend": "openai-compatible", "model": "m", "base_url": srv.url,
            "api_key_env": "FLYWHEEL_NB_KEY", "options": {"timeout_s": 5},
            "limits": {"concurrency": 4, "max_retries": 6, "backoff_base_s": 0.01},
            "prices": {"input_per_mtok": 1, "output_per_mtok": 1}})
        panel.write_text(yaml.safe_dump(offline))
        out = run / "02_judge.ipynb"
        cmd = [sys.executable, "-m", "papermill", "notebooks/02_judge.ipynb", str(out), "-k", "python3",
               "-p", "run_dir", str(run), "-p", "panel", str(panel), "-p", "cache_dir", str(tmp_path / "cache"),
               "-p", "progress", "True"]
        subprocess.run(cmd, check=True, capture_output=True, env={**__import__("os").environ})
        assert srv.stats["requests"] >= 10
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(out)], check=True, capture_output=True)
    v = pd.read_parquet(run / "artifacts" / "verdicts.parquet")
    assert len(v) == 4 * len(prod) and set(v.judge) == {"knn", "linear", "rules", "api"}
    assert (v.loc[v.judge == "api", "cost_usd"] > 0).any()
    record = json.loads((run / "metrics" / "02_judge.json").read_text())
    assert record["metrics"]["n_items_judged"] == len(prod) and "spend_usd" in record["headline"]
    files = [p for d in (run, tmp_path / "cache") for p in d.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files) and any(p.name == "verdicts.sqlite" for p in files)
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not leaks
