"""Real public data nobody here wrote: the TriageSQL recipe through `flywheel run` (ingest, calibrate, judge, resolve)."""

from __future__ import annotations

import pandas as pd
import pytest

from flywheel_lib.io import read_json
from flywheel_lib.runner import run_recipe

pytestmark = pytest.mark.slow  # the triagesql_path fixture fails in CI when the data is missing


def test_triagesql_flows_through_every_curation_stage(runs, triagesql_path):
    res = run_recipe("params/triagesql.yaml", progress=False)
    assert res.ok, res.failure
    m = read_json(res.run_dir / "manifest.json")
    assert [s["status"] for s in m["stages"]] == ["succeeded"] * 4
    art = res.run_dir / "artifacts"
    items = pd.read_parquet(art / "items.parquet")
    assert len(items) == 955 and items["item_id"].is_unique
    assert items["context"].str.startswith("{").all()  # each question keeps its schema for the judges
    assert set(items.loc[items["source"] != "production", "label"]) == {
        "answerable", "ambiguous", "missing_capability", "wrong_skill"}
    assert m["metrics"]["00_data"]["n_seed"] + m["metrics"]["00_data"]["n_eval"] + m["metrics"]["00_data"]["n_production"] == 955
    cal = pd.read_parquet(art / "calibration.parquet")
    assert set(cal["judge"]) == {"knn", "linear", "rules"} and cal["kappa"].notna().all()
    assert cal.set_index("judge").loc["linear", "kappa"] >= 0.45  # out of fold, 5 folds over the seed
    gate = read_json(art / "panel.json")["gate"]
    assert gate["reasoning"]["reasoning"] == "evidence"  # the seed has no reason keys: evidence is compared
    assert m["metrics"]["03_resolve"]["consensus_accepted"] > 0 and m["metrics"]["03_resolve"]["train_curated"] > 0
    verdicts = pd.read_parquet(art / "verdicts.parquet")
    assert set(verdicts["item_id"]) == set(items.loc[items["source"] == "production", "item_id"])
    res_tab = pd.read_parquet(art / "resolutions.parquet")
    assert set(res_tab["action"]) <= {"keep", "replace", "clarify", "refusal", "opt_out"}
    queue = pd.read_csv(res.run_dir / "artifacts" / "review_queue.csv")
    assert len(queue) == m["metrics"]["03_resolve"]["review_queue_size"]
    assert set(res_tab.loc[res_tab["action"] == "opt_out", "item_id"]) <= set(queue["item_id"])  # + contested keeps
    import hashlib

    hashes = {k: v for k, v in m["data_hashes"].items() if k.endswith("triagesql_visible.jsonl")}
    assert list(hashes.values()) == [hashlib.sha256(triagesql_path.read_bytes()).hexdigest()]
