"""02_judge executed with papermill against a real local server with an API key in the environment: the key
never appears in the executed notebook, its HTML, the stage record or the cache."""

import json
import subprocess
import sys
from pathlib import Path

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
        offline = yaml.safe_load(Path("params/judges/offline.yaml").read_text())
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


def _fewshot_fake_panel(path) -> str:
    """Two few-shot prompt judges on the fake backend: ``oracle`` answers the seed texts with their gold label but
    every tenth (which it calls ``ambiguous``), ``coin`` by a hash of the text (agreement at chance level)."""
    import re

    from flywheel_lib.testing.toy import SEED_ROWS

    script = [{"match": f"^{re.escape(t)}$", "answer": {"category": lab if i % 10 else "ambiguous", "reason_key": rk}}
              for i, (t, lab, rk) in enumerate(SEED_ROWS, start=1)]
    judges = [{"name": "oracle", "backend": "fake", "fewshot": {"strategy": "stratified", "per_category": 1},
               "params": {"script": script, "sycophancy": 0.3}},
              {"name": "coin", "backend": "fake", "fewshot": {"strategy": "stratified", "per_category": 1}}]
    path.write_text(yaml.safe_dump({"name": "fewshot-fake", "judges": judges}))
    return str(path)


def test_01_calibrate_cross_fits_a_fewshot_prompt_panel_probes_it_and_drops_a_judge_below_the_kappa_floor(tmp_path):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    toy_seed().to_parquet(run / "artifacts" / "items.parquet", index=False)
    out = run / "01_calibrate.ipynb"
    cmd = [sys.executable, "-m", "papermill", "notebooks/01_calibrate.ipynb", str(out), "-k", "python3",
           "-p", "run_dir", str(run), "-p", "panel", _fewshot_fake_panel(tmp_path / "panel.yaml"),
           "-p", "cache_dir", str(tmp_path / "cache"), "-p", "cv_folds", "3", "-p", "anchoring_n", "12",
           "-p", "min_kappa", "0.2"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    probe = pd.read_parquet(run / "artifacts" / "anchoring_probe.parquet").set_index("judge")
    assert probe.loc["oracle", "applies"] and probe.loc["oracle", "n"] == 12
    assert probe.loc["oracle", "flip_rate"] > 0  # the scripted sycophancy is seen through the fold panels
    report = pd.read_parquet(run / "artifacts" / "calibration.parquet").set_index("judge")
    assert report.loc["oracle", "kappa"] > 0.8 and report.loc["coin", "kappa"] < 0.2
    record = json.loads((run / "artifacts" / "panel.json").read_text())
    assert record["judges"] == ["oracle"] and record["excluded"] == ["coin"]
    assert record["min_kappa"] == 0.2 and record["below_min_kappa"] == ["coin"]
    notes = json.loads((run / "metrics" / "01_calibrate.json").read_text())["notes"]
    assert notes["gate"]["min_kappa"] == 0.2 and notes["gate"]["below_min_kappa"] == ["coin"]
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "dropped from the gate: coin (kappa" in text
