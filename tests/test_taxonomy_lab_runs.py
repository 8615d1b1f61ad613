"""The taxonomy lab writes a new run started from the run it edits (manifest, index.html), and scores an edit on the
seed out of fold and on a held-out production slice against the hidden truth, each figure labelled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import papermill
import pytest
import yaml

from flywheel_lib.io import read_json
from flywheel_lib.lab_widgets import TaxonomyEditor
from flywheel_lib.runner import run_recipe
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.taxonomy_lab import PRODUCTION_SLICE, SEED_SLICE, judge_holdout, production_slice
from flywheel_lib.testing import toy_items, toy_seed

ROOT = Path(__file__).resolve().parents[1]
PANEL = {"name": "lab", "judges": [{"name": "linear", "backend": "linear", "model": "tfidf-logreg",
                                    "params": {"C": 4.0, "min_proba": 0.0}}]}


def _digest(run_dir: Path) -> dict[str, str]:
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "heartbeat"}


def test_the_lab_writes_a_new_run_and_scores_both_slices(runs, tmp_path):
    res = run_recipe("params/examples/own_data.yaml", stages=["00_data", "01_calibrate"], progress=False)
    assert res.ok, res.failure
    edited = res.run_dir
    before = _digest(edited)
    out = tmp_path / "lab.ipynb"
    papermill.execute_notebook(
        "notebooks/taxonomy_lab.ipynb", str(out), kernel_name="python3", progress_bar=False, cwd=str(ROOT),
        parameters={"run_dir": str(edited), "lab_run_id": "lab-1", "domain": "triagesql",
                    "taxonomy": "tests/fixtures/own_data/taxonomy.yaml", "panel": "tests/fixtures/own_data/panel.yaml",
                    "cache_dir": str(tmp_path / "cache"), "edit_category": "missing_data", "edit_field": "add_positive",
                    "edit_value": ["which titles have a paperback edition?", "how many customers bought crime novels?"],
                    "production_slice": 20})
    assert _digest(edited) == before  # the edited run is only read
    lab = runs / "lab-1"
    m = read_json(lab / "manifest.json")
    assert m["parent"]["from_run"] == edited.name and m["status"] == "succeeded"
    status = {s["name"]: s["status"] for s in m["stages"]}
    assert status == {"00_data": "reused", "01_calibrate": "reused", "taxonomy_lab": "succeeded"}
    entry = next(s for s in m["stages"] if s["name"] == "taxonomy_lab")
    assert "artifacts/lab_scores.parquet" in entry["outputs"] and "artifacts/items.parquet" not in entry["outputs"]
    met = m["metrics"]["taxonomy_lab"]
    assert met["production_slice_n"] == 20
    for j in ("linear", "knn"):
        assert {f"kappa_after_{j}", f"production_kappa_before_{j}", f"production_kappa_after_{j}"} <= set(met)
    assert m["params_passed"]["taxonomy_lab"]["production_slice"] == 20
    html = (lab / "index.html").read_text()
    assert "taxonomy_lab" in html and "production_kappa_after_linear" in html and edited.name in html
    scores = pd.read_parquet(lab / "artifacts" / "lab_scores.parquet")
    assert set(scores["slice"]) == {SEED_SLICE, PRODUCTION_SLICE}
    assert scores.loc[scores["slice"] == PRODUCTION_SLICE, "n"].eq(20).all()
    # the production slice is scored against the hidden truth, never against the logged label
    truth = pd.read_parquet(lab / "artifacts" / "truth.parquet").set_index("item_id")["true_label"]
    verdicts = pd.read_parquet(lab / "artifacts" / "lab_production_verdicts_before.parquet")
    assert verdicts["item_id"].nunique() == 20 and truth.reindex(verdicts["item_id"].unique()).notna().all()
    nb = json.loads(out.read_text())
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))


def test_no_truth_no_production_slice():
    items = toy_items().assign(source="production")
    rows, gold, why = production_slice(items, None, 50)
    assert rows.empty and gold.empty and "no hidden truth" in why
    rows, gold, why = production_slice(items, items[["item_id"]].assign(true_label=items["label"]), 5, seed=3)
    assert len(rows) == 5 and (gold.to_numpy() == items.set_index("item_id").loc[rows["item_id"], "label"]).all()


def test_the_editor_scores_the_production_slice(tmp_path):
    panel = tmp_path / "panel.yaml"
    panel.write_text(yaml.safe_dump(PANEL))
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    seed, items = toy_seed(), toy_items()
    hold, prod = items.iloc[::2], items.iloc[1::2]
    judge = lambda rows: (lambda t: judge_holdout(t, str(panel), seed, rows, cache_dir=tmp_path / "c"))  # noqa: E731
    editor = TaxonomyEditor(tax, gold=hold.set_index("item_id")["label"], save_dir=tmp_path, rejudge=judge(hold),
                            rejudge_production=judge(prod), production_gold=prod.set_index("item_id")["label"])
    editor.edit("missing_capability", "add_positive", ["customers who bought that product again later",
                                                       "people who clicked the campaign we discussed before"])
    scores = editor.scores()
    assert list(scores["slice"].unique()) == [SEED_SLICE, PRODUCTION_SLICE]
    assert scores.loc[scores["slice"] == PRODUCTION_SLICE, "n"].eq(len(prod)).all()
    assert "production_kappa_change_linear" in editor.history_[-1]
    with pytest.raises(ValueError, match="production_gold"):
        TaxonomyEditor(tax, gold=editor.gold, save_dir=tmp_path, rejudge=judge(hold), rejudge_production=judge(prod))
