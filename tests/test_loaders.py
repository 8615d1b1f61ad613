"""User data loaders: every format by a column mapping, clear errors on bad input, the TriageSQL recipe end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.data import DataError, gather_items, load_items, split_labelled
from flywheel_lib.domains import get_domain

ROOT = Path(__file__).resolve().parents[1]
MAP = {"item_id": "id", "text": "question", "label": "label", "context": "schema"}
ROWS = [
    {"id": "q1", "question": "who directed episode 3?", "label": "answerable", "schema": {"ep": ["director", "no"]}},
    {"id": "q2", "question": "and janessa?", "label": "ambiguous", "schema": {"people": ["name"]}},
    {"id": "q3", "question": "was there a motive?", "label": "wrong_skill", "schema": {"t": ["a"]}},
]


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/triagesql.yaml")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _flat(rows):
    return [{**r, "schema": json.dumps(r["schema"], sort_keys=True)} for r in rows]


def test_every_format_loads_the_same_items(tmp_path, tax):
    import datasets

    paths = {
        "jsonl": _jsonl(tmp_path / "d.jsonl", ROWS),
        "csv": tmp_path / "d.csv",
        "parquet": tmp_path / "d.parquet",
        "hf": tmp_path / "hf",
    }
    pd.DataFrame(_flat(ROWS)).to_csv(paths["csv"], index=False)
    pd.DataFrame(_flat(ROWS)).to_parquet(paths["parquet"], index=False)
    datasets.Dataset.from_list(_flat(ROWS)).save_to_disk(str(paths["hf"]))
    tables = {k: load_items(p, MAP, "seed", tax) for k, p in paths.items()}
    for k, t in tables.items():
        assert t["item_id"].tolist() == ["q1", "q2", "q3"], k
        assert t["label"].tolist() == ["answerable", "ambiguous", "wrong_skill"], k
        assert json.loads(t["context"][0]) == {"ep": ["director", "no"]}, k
        assert (t["source"] == "seed").all() and t["output"].isna().all()
        assert list(t.columns[:9]) == ["item_id", "text", "source", "workload_id", "timestamp", "label", "output",
                                       "context", "split"]


def test_default_ids_and_eval_split(tmp_path, tax):
    p = _jsonl(tmp_path / "evalset.jsonl", ROWS)
    t = load_items(p, {"text": "question", "label": "label"}, "eval", tax)
    assert t["item_id"].tolist() == ["evalset-000000", "evalset-000001", "evalset-000002"]
    assert (t["split"] == "eval").all() and (t["context"] == "").all()


@pytest.mark.parametrize("rows,mapping,message", [
    (ROWS, {**MAP, "text": "prompt"}, r"d\.jsonl: missing column\(s\) text -> 'prompt'"),
    ([*ROWS[:2], {**ROWS[2], "question": "  "}], MAP, r"d\.jsonl: row 3 \(id 'q3'\), column 'question': empty text"),
    ([*ROWS, {**ROWS[0], "question": "again"}], MAP, r"d\.jsonl: row 4, column 'id': duplicate id 'q1' \(first at row 1\)"),
    ([*ROWS, {**ROWS[0], "id": "q4", "label": "small talk"}], MAP,
     r"d\.jsonl \(column 'label'\): row q4 has label 'small talk', which is not in taxonomy 'triagesql'"),
    (ROWS, {"item_id": "id"}, r"d\.jsonl: the column mapping has no entry for 'text'"),
])
def test_bad_input_names_file_row_and_column(tmp_path, tax, rows, mapping, message):
    p = _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=message):
        load_items(p, mapping, "seed", tax)


def test_unreadable_files(tmp_path, tax):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        load_items(bad, MAP, "seed", tax)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: cannot read"):
        load_items(junk, MAP, "seed", tax)
    with pytest.raises(DataError, match=r"nope\.csv: file does not exist"):
        load_items(tmp_path / "nope.csv", MAP, "seed", tax)
    with pytest.raises(DataError, match=r"unknown format '\.xlsx'"):
        (tmp_path / "x.xlsx").write_text("x")
        load_items(tmp_path / "x.xlsx", MAP, "seed", tax)


def test_split_labelled_is_deterministic_and_stratified(tax):
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(100)], "text": "q",
                          "label": ["answerable"] * 50 + ["wrong_skill"] * 50})
    a = split_labelled(items, tax, seed=1)
    assert a.equals(split_labelled(items, tax, seed=1))
    assert not a["source"].equals(split_labelled(items, tax, seed=2)["source"])
    counts = a.groupby(["true_label", "source"]).size()
    assert counts[("answerable", "seed")] == 30 and counts[("wrong_skill", "eval")] == 10
    prod = a[a["source"] == "production"]
    assert (prod["label"] == "answerable").all() and set(prod["true_label"]) == {"answerable", "wrong_skill"}


def test_triagesql_all_rows_flow_in(tax, triagesql_path):
    items = gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", data_path=str(triagesql_path),
                         column_map={**MAP, "source_label": "source_label"})
    assert len(items) == 955 and items["item_id"].is_unique
    shares = items["source"].value_counts(normalize=True)
    assert abs(shares["seed"] - 0.6) < 0.02 and abs(shares["eval"] - 0.2) < 0.02
    assert items["true_label"].value_counts().to_dict() == {"wrong_skill": 388, "missing_capability": 195,
                                                            "ambiguous": 192, "answerable": 180}
    assert (items.loc[items["source"] == "production", "label"] == "answerable").all()
    assert all(isinstance(json.loads(c), dict) for c in items["context"])
    assert (items["workload_id"] == "triagesql").all()


def _papermill(out: Path, params: dict) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks/00_data.ipynb"), str(out / "00_data.ipynb"),
            "-k", "flywheel", "-y", json.dumps(params)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYWHEEL_ROOT": str(ROOT)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_notebook_runs_the_triagesql_recipe_and_fails_cleanly(tmp_path, triagesql_path):
    run = tmp_path / "run"
    run.mkdir()
    params = {"run_dir": str(run), "domain": "triagesql", "taxonomy": "params/taxonomy/triagesql.yaml",
              "source_kind": "files", "data_path": str(triagesql_path),
              "column_map": {**MAP, "source_label": "source_label"}}
    res = _papermill(run, params)
    assert res.returncode == 0, res.stderr[-2000:]
    items = pd.read_parquet(run / "artifacts/items.parquet")
    assert len(items) == 955 and "pii_found" in items.columns
    metrics = json.loads((run / "metrics/00_data.json").read_text())["metrics"]
    assert metrics["n_seed"] + metrics["n_eval"] + metrics["n_production"] == 955
    # a bad file: the stage fails, naming the row, and writes no items table
    bad_run = tmp_path / "bad"
    bad_run.mkdir()
    bad = _jsonl(tmp_path / "bad.jsonl", [*ROWS, {**ROWS[0], "id": "q9", "label": "small talk"}])
    res = _papermill(bad_run, {**params, "run_dir": str(bad_run), "data_path": str(bad), "column_map": MAP})
    assert res.returncode != 0 and "row q9 has label 'small talk'" in res.stderr + res.stdout
    assert not (bad_run / "artifacts/items.parquet").exists()
    assert not list((bad_run / "artifacts").glob(".*tmp"))
