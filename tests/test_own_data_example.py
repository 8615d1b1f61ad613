"""The "your own data" guide's worked example runs: a made-up bookshop's three files, its taxonomy and panel, through
00_data .. 03_resolve with the real runner; the hidden truth stays apart, people review, figures say where they are
from, and the guide shows exactly the files that ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from flywheel_lib.io import read_json
from flywheel_lib.runner import run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "params/examples/own_data.yaml"
FIXTURE = ROOT / "tests" / "fixtures" / "own_data"
GUIDE = ROOT / "docs" / "guides" / "own-data.md"


def _outputs(nb_path: Path) -> str:
    """Every text an executed notebook shows (streams, plain-text results), one string."""
    nb = json.loads(nb_path.read_text())
    parts = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
            parts.append("".join(o.get("data", {}).get("text/html", "")))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FLYWHEEL_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    mp.setenv("FLYWHEEL_ROOT", str(ROOT))
    try:
        res = run_recipe(RECIPE, progress=False)
    finally:
        mp.undo()
    assert res.ok, res.failure
    return res


def test_the_truth_is_kept_apart(run):
    art = run.run_dir / "artifacts"
    items, truth = pd.read_parquet(art / "items.parquet"), pd.read_parquet(art / "truth.parquet")
    assert "true_label" not in items.columns and "truth" not in items.columns
    prod = items[items["source"] == "production"]
    assert len(prod) == 30 and (prod["label"] == "answerable").all()  # logged successes, nothing more
    given = {r["log_id"]: r["truth"] for r in map(json.loads, (FIXTURE / "production.jsonl").read_text().splitlines())}
    kept = truth.dropna(subset=["true_label"]).set_index("item_id")["true_label"]
    assert kept.reindex(list(given)).tolist() == list(given.values())
    assert items["context"].str.startswith("{").all()  # each question keeps its tables for the judges


def test_00_says_what_user_data_lacks(run):
    shown = _outputs(run.run_dir / "notebooks" / "00_data.ipynb")
    assert "(none)" not in shown and "None" not in shown
    assert "not shown, empty in every row of this data: output" in shown
    assert "no implicit feedback signals to show" in shown
    assert "zero-result rate not measured" in shown
    assert "no exact conflicts to show" in shown
    assert "figures/00_data__class_balance.png" in read_json(run.run_dir / "manifest.json")["figures"]


def test_people_review_and_figures_are_labelled(run):
    m = read_json(run.run_dir / "manifest.json")
    assert [s["status"] for s in m["stages"]] == ["succeeded"] * 4
    met, notes = m["metrics"]["03_resolve"], m["notes"]["03_resolve"]
    assert met["review_source"] == "people" and met["audit_source"] == "people"
    assert notes["review_source"]["decided"] == "people" and notes.get("simulated_review") is None
    assert all(v is None for k, v in met.items() if k.endswith("_simulated"))  # nobody simulated an answer
    assert met["audit_n"] == 0  # no one has answered the audit yet: no estimate is made up
    shown = _outputs(run.run_dir / "notebooks" / "03_resolve.ipynb")
    assert "audit estimate (production, people)" in shown
    assert "seed, out of fold (01_calibrate)" in shown and "true production precision (hidden truth)" in shown
    queue = pd.read_csv(run.run_dir / "artifacts" / "review_queue.csv")
    assert queue["audit"].sum() > 0 and queue["human_label"].isna().all()  # the queue waits for people
    cal = pd.read_parquet(run.run_dir / "artifacts" / "calibration.parquet")
    assert set(cal["judge"]) == {"linear", "knn"}


def _blocks(text: str) -> list[str]:
    return [b.strip("\n") for b in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def test_the_guide_shows_exactly_these_files():
    blocks = _blocks(GUIDE.read_text())
    for f in (ROOT / RECIPE, FIXTURE / "taxonomy.yaml", FIXTURE / "panel.yaml"):
        assert f.read_text().strip("\n") in blocks, f"{f.name}: the guide's copy differs from the file"
    for name in ("seed.jsonl", "eval.jsonl", "production.jsonl"):  # data files: their first lines, verbatim
        head = "\n".join((FIXTURE / name).read_text().splitlines()[:3])
        assert head in blocks, f"{name}: the guide's first lines differ from the file"
