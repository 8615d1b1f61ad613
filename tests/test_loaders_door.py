"""Checks at the door: types, labels, lengths and encodings of user files, per-file column maps, and production's
hidden truth kept apart from the items the judges see. Every fixture is a tiny file written into tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.data import DataError, gather_items, load_items, split_truth
from flywheel_lib.data.loaders import DoorReport, file_map
from flywheel_lib.domains import get_domain

ROOT = Path(__file__).resolve().parents[1]
MAP = {"item_id": "id", "text": "question", "label": "label"}
SEED = [
    {"id": "s1", "question": "who directed episode 3?", "label": "answerable"},
    {"id": "s2", "question": "and janessa?", "label": "ambiguous"},
    {"id": "s3", "question": "was there a motive?", "label": "wrong_skill"},
]
# production logs: every row was logged as a success; the truth column says what each request really was
PROD = [
    {"id": "p1", "question": "how many films in 2001?", "label": "answerable", "truth": "answerable"},
    {"id": "p2", "question": "what about him?", "label": "answerable", "truth": "ambiguous"},
    {"id": "p3", "question": "predict next year's sales", "label": "answerable", "truth": "missing_capability"},
]
TRUE = {"p1": "answerable", "p2": "ambiguous", "p3": "missing_capability"}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/triagesql.yaml")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- labels ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["seed", "eval"])
def test_unlabelled_rows_of_a_labelled_file_are_named(tmp_path, tax, source):
    rows = [*SEED, {"id": "s4", "question": "q four", "label": ""}, {"id": "s5", "question": "q five"}]
    p = _jsonl(tmp_path / "seed.jsonl", rows)
    with pytest.raises(DataError, match=r"seed\.jsonl, column 'label': 2 row\(s\) of this " + source
                       + r" file have no label: row 4 \(id 's4'\), row 5 \(id 's5'\)"):
        load_items(p, MAP, source, tax)
    csv = tmp_path / "seed.csv"
    pd.DataFrame([*SEED, {"id": "s4", "question": "q four", "label": ""}]).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"seed\.csv, column 'label': 1 row\(s\) .* row 4 \(id 's4'\)"):
        load_items(csv, MAP, source, tax)


def test_a_labelled_file_needs_a_label_mapping_and_production_does_not(tmp_path, tax):
    p = _jsonl(tmp_path / "seed.jsonl", SEED)
    with pytest.raises(DataError, match=r"seed\.jsonl: a seed file is labelled, but the column mapping has no entry "
                                        r"for 'label'"):
        load_items(p, {"item_id": "id", "text": "question"}, "seed", tax)
    prod = load_items(p, {"item_id": "id", "text": "question"}, "production", tax)
    assert prod["label"].isna().all()


def test_a_truth_label_outside_the_taxonomy_is_named(tmp_path, tax):
    p = _jsonl(tmp_path / "prod.jsonl", [*PROD, {**PROD[0], "id": "p4", "truth": "chit chat"}])
    with pytest.raises(DataError, match=r"prod\.jsonl \(column 'truth'\): row p4 has label 'chit chat'"):
        load_items(p, {**MAP, "true_label": "truth"}, "production", tax)


# --- types -------------------------------------------------------------------------------------------------------

def test_mixed_types_in_an_extra_column_name_file_column_and_row(tmp_path, tax):
    rows = [{**r, "turns": n} for r, n in zip(SEED, [1, "two", 3])]
    p = _jsonl(tmp_path / "seed.jsonl", rows)
    with pytest.raises(DataError, match=r"seed\.jsonl: row 2 \(id 's2'\), column 'turns': 'two' is text, but row 1 "
                                        r"holds number; a column must hold one type"):
        load_items(p, {**MAP, "n_turns": "turns"}, "seed", tax)
    flags = _jsonl(tmp_path / "flags.jsonl", [{**r, "ok": v} for r, v in zip(SEED, [True, None, 0])])
    with pytest.raises(DataError, match=r"flags\.jsonl: row 3 \(id 's3'\), column 'ok': 0 is number, but row 1 holds "
                                        r"bool"):
        load_items(flags, {**MAP, "ok": "ok"}, "seed", tax)


def test_one_type_per_column_writes_to_parquet(tmp_path, tax):
    rows = [{**r, "turns": n, "meta": m} for r, n, m in zip(SEED, [1, 2.5, None], [{"a": 1}, "plain", None])]
    items = load_items(_jsonl(tmp_path / "seed.jsonl", rows), {**MAP, "turns": "turns", "meta": "meta"}, "seed", tax)
    items.to_parquet(tmp_path / "items.parquet")  # the stage's final write
    back = pd.read_parquet(tmp_path / "items.parquet")
    assert back["turns"].tolist()[:2] == [1.0, 2.5] and back["meta"].tolist()[:2] == ['{"a": 1}', "plain"]


def test_a_text_that_is_not_a_string_is_named(tmp_path, tax):
    p = _jsonl(tmp_path / "seed.jsonl", [*SEED, {"id": "s4", "question": {"q": "x"}, "label": "answerable"}])
    with pytest.raises(DataError, match=r"row 4 \(id 's4'\), column 'question': text is dict, not a string"):
        load_items(p, MAP, "seed", tax)


def test_timestamps_parse_in_any_iso_form_or_are_named(tmp_path, tax):
    stamps = ["2024-05-01", "2024-05-01T12:30:00Z", "2024-05-01 13:00:00+02:00"]
    p = _jsonl(tmp_path / "prod.jsonl", [{**r, "ts": t} for r, t in zip(PROD, stamps)])
    t = load_items(p, {**MAP, "timestamp": "ts"}, "production", tax)
    assert t["timestamp"].dt.strftime("%Y-%m-%d %H:%M").tolist() == ["2024-05-01 00:00", "2024-05-01 12:30",
                                                                      "2024-05-01 11:00"]
    unix = load_items(_jsonl(tmp_path / "u.jsonl", [{**PROD[0], "ts": 1714566600}]), {**MAP, "timestamp": "ts"},
                      "production", tax)
    assert str(unix["timestamp"][0]) == "2024-05-01 12:30:00+00:00"
    bad = _jsonl(tmp_path / "bad.jsonl", [{**r, "ts": t} for r, t in zip(PROD, [stamps[0], "yesterday", stamps[1]])])
    with pytest.raises(DataError, match=r"bad\.jsonl: row 2 \(id 'p2'\), column 'ts': 'yesterday' is not a timestamp"):
        load_items(bad, {**MAP, "timestamp": "ts"}, "production", tax)


# --- lengths -----------------------------------------------------------------------------------------------------

def test_long_text_is_truncated_and_reported(tmp_path, tax):
    rows = [SEED[0], {**SEED[1], "question": "x" * 50}, {**SEED[2], "question": "y" * 41}]
    p = _jsonl(tmp_path / "seed.jsonl", rows)
    report = DoorReport()
    t = load_items(p, MAP, "seed", tax, max_text_chars=40, report=report)
    assert t["text"].tolist() == [SEED[0]["question"], "x" * 40, "y" * 40]
    assert report.truncated == {str(p): ["s2", "s3"]} and report.n_truncated == 2
    assert load_items(p, MAP, "seed", tax, max_text_chars=0)["text"].str.len().max() == 50


def test_long_text_is_refused_naming_the_rows(tmp_path, tax):
    rows = [SEED[0], {**SEED[1], "question": "x" * 50}, {**SEED[2], "question": "y" * 41}]
    p = _jsonl(tmp_path / "seed.jsonl", rows)
    with pytest.raises(DataError, match=r"seed\.jsonl, column 'question': 2 row\(s\) longer than max_text_chars=40: "
                                        r"row 2 \(id 's2', 50 chars\), row 3 \(id 's3', 41 chars\)"):
        load_items(p, MAP, "seed", tax, max_text_chars=40, text_overflow="refuse")
    with pytest.raises(DataError, match=r"text_overflow must be one of truncate, refuse, not 'cut'"):
        load_items(p, MAP, "seed", tax, max_text_chars=40, text_overflow="cut")


def test_gather_items_truncates_every_file_into_one_report(tmp_path, tax):
    seed = _jsonl(tmp_path / "seed.jsonl", [{**SEED[0], "question": "s" * 30}, *SEED[1:]])
    prod = _jsonl(tmp_path / "prod.jsonl", [{**PROD[0], "question": "p" * 30}, *PROD[1:]])
    report = DoorReport()
    items = gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", seed_path=str(seed),
                         production_path=str(prod), column_map=MAP, max_text_chars=25, report=report)
    assert items["text"].str.len().max() == 25
    assert report.truncated == {str(prod): ["p1"], str(seed): ["s1"]}


# --- encodings ---------------------------------------------------------------------------------------------------

def _latin1_file(path: Path, header: str, line: str) -> tuple[bytes, int]:
    body = header + "".join(line.format(i=i) for i in range(3000))  # beyond any reader's first buffer
    data = (body + line.format(i="x").replace("menu", "caf\xe9 menu")).encode("latin-1")
    path.write_bytes(data)
    return data, data.index(b"\xe9")


def test_a_latin1_csv_names_the_byte_offset_and_line(tmp_path, tax):
    data, at = _latin1_file(tmp_path / "logs.csv", "id,question,label\n", "q{i},what is on the menu?,answerable\n")
    line = data.count(b"\n", 0, at) + 1
    assert line == 3002
    col = at - data.rindex(b"\n", 0, at)
    with pytest.raises(DataError, match=rf"logs\.csv: not UTF-8: byte offset {at} \(line {line}, byte {col} of that "
                                        r"line\) is 0xe9; save the file as UTF-8"):
        load_items(tmp_path / "logs.csv", MAP, "seed", tax)


def test_a_latin1_jsonl_names_the_byte_offset_and_line(tmp_path, tax):
    data, at = _latin1_file(tmp_path / "logs.jsonl", "",
                            '{{"id": "q{i}", "question": "what is on the menu?", "label": "answerable"}}\n')
    with pytest.raises(DataError, match=rf"logs\.jsonl: not UTF-8: byte offset {at} \(line 3001, "):
        load_items(tmp_path / "logs.jsonl", MAP, "seed", tax)


def test_a_utf8_csv_with_a_byte_order_mark_loads(tmp_path, tax):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfid,question,label\nq1,caf\xc3\xa9?,answerable\n")
    t = load_items(p, MAP, "seed", tax)
    assert t["item_id"].tolist() == ["q1"] and t["text"][0] == "café?"
    p.write_bytes(b"\xef\xbb\xbfid,question,label\nq1,caf\xe9?,answerable\n")
    with pytest.raises(DataError, match=r"byte offset 27 \(line 2, byte 7 of that line\)"):
        load_items(p, MAP, "seed", tax)


# --- per-file column maps ----------------------------------------------------------------------------------------

def test_file_map_one_map_or_keyed_per_file():
    assert file_map(MAP, "seed") == MAP and file_map(MAP, "production") == MAP
    keyed = {"seed": MAP, "production": {"text": "q", "true_label": "truth"}}
    assert file_map(keyed, "production") == {"text": "q", "true_label": "truth"}
    mixed = {"item_id": "id", "text": "question", "seed": {"label": "label"},
             "production": {"text": "request", "item_id": ""}}
    assert file_map(mixed, "seed") == {"item_id": "id", "text": "question", "label": "label"}
    assert file_map(mixed, "production") == {"text": "request"}
    assert file_map(mixed, "eval") == {"item_id": "id", "text": "question"}
    with pytest.raises(DataError, match=r"column_map is keyed per file \(seed, production\) but has no map for the "
                                        r"eval file"):
        file_map(keyed, "eval")
    with pytest.raises(DataError, match=r"column_map\['train'\] is a map; per-file maps are keyed by data, "
                                        r"production, seed, eval"):
        file_map({"train": MAP}, "seed")
    with pytest.raises(DataError, match=r"column_map\['seed'\]\['label'\] = 3"):
        file_map({"seed": {"text": "q", "label": 3}}, "seed")


def test_a_production_only_column_needs_no_fake_in_the_seed(tmp_path, tax):
    seed = _jsonl(tmp_path / "seed.jsonl", SEED)
    prod = _jsonl(tmp_path / "prod.jsonl", [{**r, "latency_ms": 100 + k} for k, r in enumerate(PROD)])
    with pytest.raises(DataError, match=r"seed\.jsonl: missing column\(s\) latency_ms -> 'latency_ms'.*per-file "
                                        r"column_map"):
        gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", seed_path=str(seed),
                     production_path=str(prod), column_map={**MAP, "latency_ms": "latency_ms"})
    items = gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", seed_path=str(seed),
                         production_path=str(prod), column_map={**MAP, "production": {"latency_ms": "latency_ms"}})
    by = items.set_index("item_id")["latency_ms"]
    assert by[["p1", "p2", "p3"]].tolist() == [100, 101, 102] and by[["s1", "s2", "s3"]].isna().all()


# --- production's hidden truth -----------------------------------------------------------------------------------

def _ways(tmp_path: Path) -> dict[str, dict]:
    """Every documented way to hand over production's truth, as gather_items keyword arguments."""
    seed = _jsonl(tmp_path / "seed.jsonl", [{**r, "truth": r["label"]} for r in SEED])
    seed_plain = _jsonl(tmp_path / "seed_plain.jsonl", SEED)
    prod = _jsonl(tmp_path / "prod.jsonl", PROD)
    prod_in_label = _jsonl(tmp_path / "prod_label.jsonl", [{**r, "label": r["truth"]} for r in PROD])
    return {
        "true_label in one column_map": dict(seed_path=str(seed), production_path=str(prod),
                                             column_map={**MAP, "true_label": "truth"}),
        "true_label in a per-file map": dict(seed_path=str(seed_plain), production_path=str(prod),
                                             column_map={"seed": MAP, "production": {**MAP, "true_label": "truth"}}),
        "true_label beside shared entries": dict(seed_path=str(seed_plain), production_path=str(prod),
                                                 column_map={**MAP, "production": {"true_label": "truth"}}),
        "label in production": dict(seed_path=str(seed_plain), production_path=str(prod_in_label), column_map=MAP),
    }


@pytest.mark.parametrize("way", ["true_label in one column_map", "true_label in a per-file map",
                                 "true_label beside shared entries", "label in production"])
def test_production_truth_is_kept_in_the_truth_table_only(tmp_path, tax, way):
    kwargs = _ways(tmp_path)[way]
    items = gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", **kwargs)
    items, truth = split_truth(items)
    assert not {"true_label", "truth"} & set(items.columns), way
    prod = items["source"] == "production"
    assert (items.loc[prod, "label"] == "answerable").all()  # what the logs say: every row a success
    assert items.loc[~prod, "label"].tolist() == [r["label"] for r in SEED]
    got = truth.set_index("item_id")["true_label"]
    assert got[list(TRUE)].to_dict() == TRUE, way
    truth.to_parquet(tmp_path / "truth.parquet")
    assert pd.read_parquet(tmp_path / "truth.parquet").set_index("item_id")["true_label"][list(TRUE)].to_dict() == TRUE


def test_a_labelled_data_file_keeps_its_mapped_truth(tmp_path, tax):
    rows = [{"id": f"d{k}", "question": f"question {k}", "label": lab, "truth": "ambiguous" if k == 0 else lab}
            for k, lab in enumerate(["answerable", "wrong_skill"] * 10)]
    p = _jsonl(tmp_path / "all.jsonl", rows)
    items = gather_items(domain=get_domain("triagesql"), taxonomy=tax, source_kind="files", data_path=str(p),
                         column_map={"data": {**MAP, "true_label": "truth"}})
    items, truth = split_truth(items)
    assert "true_label" not in items.columns
    assert truth.set_index("item_id")["true_label"].to_dict() == {r["id"]: r["truth"] for r in rows}


# --- the stage end to end ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_data_stage_checks_at_the_door_and_keeps_the_truth(tmp_path):
    seed = _jsonl(tmp_path / "seed.jsonl", SEED)
    prod = _jsonl(tmp_path / "prod.jsonl", [{**PROD[0], "question": "how many films were made " + "z" * 60},
                                            *PROD[1:]])
    run = tmp_path / "run"
    run.mkdir()
    params = {"run_dir": str(run), "domain": "triagesql", "taxonomy": "params/taxonomy/triagesql.yaml",
              "source_kind": "files", "seed_path": str(seed), "production_path": str(prod),
              "column_map": {**MAP, "production": {"true_label": "truth"}}, "max_text_chars": 40,
              "validation": {"checks": ["length", "injection"]}}  # some of a group's keys: the rest are the cell's
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks/00_data.ipynb"), str(run / "00_data.ipynb"),
            "-k", "flywheel", "-y", json.dumps(params)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYWHEEL_ROOT": str(ROOT)}
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    items = pd.read_parquet(run / "artifacts/items.parquet")
    truth = pd.read_parquet(run / "artifacts/truth.parquet")
    assert "true_label" not in items.columns and items["text"].str.len().max() == 40
    assert truth.set_index("item_id")["true_label"][list(TRUE)].to_dict() == TRUE
    record = json.loads((run / "metrics/00_data.json").read_text())
    assert record["metrics"]["text_truncated"] == 1
