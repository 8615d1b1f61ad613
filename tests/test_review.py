"""The review queue: export as CSV and Label Studio JSON, import back, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_resolve import CONFLICTS, CONSENSUS, ITEMS, TAX, VALID

from flywheel_lib.curation.resolve import resolve
from flywheel_lib.curation.review import REVIEW_COLUMNS, ReviewError, export_review, import_review, review_queue


@pytest.fixture
def queue():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID)
    return review_queue(r, ITEMS)


def test_queue_lists_opt_outs_conflicts_first(queue):
    assert list(queue.columns) == REVIEW_COLUMNS
    assert queue["item_id"].tolist() == ["p5", "p4", "p7", "p8"]  # p5 conflicts with s1: first
    assert queue.loc[0, ["conflict_with", "conflict_label"]].tolist() == ["s1", "missing_capability"]
    assert (queue["human_label"] == "").all()


def test_csv_round_trip(tmp_path, queue):
    paths = export_review(queue, tmp_path / "review_queue.csv", taxonomy=TAX, label_studio_path=tmp_path / "ls.json")
    assert set(paths) == {"csv", "label_studio", "label_config"}
    assert '<Choice value="needs_context"' in paths["label_config"].read_text()
    df = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    df.loc[df.item_id == "p4", "human_label"] = "ambiguous"
    df.loc[df.item_id == "p7", ["human_label", "human_output", "reviewer"]] = ["solvable", "city = 'Paris'", "bo"]
    df.to_csv(tmp_path / "reviewed.csv", index=False)
    back = import_review(tmp_path / "reviewed.csv", taxonomy=TAX)
    assert back[["item_id", "human_label", "human_output", "reviewer"]].values.tolist() == [
        ["p4", "ambiguous", None, None], ["p7", "solvable", "city = 'Paris'", "bo"]]
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID, reviewed=back).set_index("item_id")
    assert r.loc["p7", ["action", "output_after", "decided_by"]].tolist() == ["replace", "city = 'Paris'", "human"]


def test_label_studio_round_trip(tmp_path, queue):
    paths = export_review(queue, tmp_path / "q.csv", taxonomy=TAX, label_studio_path=tmp_path / "ls.json")
    tasks = json.loads(paths["label_studio"].read_text())
    assert [t["data"]["item_id"] for t in tasks] == ["p5", "p4", "p7", "p8"]
    # what Label Studio's JSON export adds: annotations with results per control
    tasks[0]["annotations"] = [{"completed_by": {"email": "ann@x"}, "was_cancelled": False, "result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["missing_capability"]}}]}]
    tasks[1]["annotations"] = [{"was_cancelled": True, "result": [
        {"from_name": "label", "type": "choices", "value": {"choices": ["solvable"]}}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    back = import_review(tmp_path / "export.json", taxonomy=TAX)
    assert back[["item_id", "human_label", "reviewer"]].values.tolist() == [["p5", "missing_capability", "ann@x"]]


def test_bad_label_names_file_line_and_column(tmp_path):
    p = tmp_path / "reviewed.csv"
    p.write_text("item_id,human_label\np1,ambiguous\np2,Ambiguos\n")
    with pytest.raises(ReviewError, match=r"reviewed.csv: line 3: column human_label has 'Ambiguos', which is not a "
                                          r"category of taxonomy 'segments'"):
        import_review(p, taxonomy=TAX)


def test_missing_column_and_conflicting_rows(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("item_id,label\np1,ambiguous\n")
    with pytest.raises(ReviewError, match="column 'human_label' is missing"):
        import_review(p, taxonomy=TAX)
    p.write_text("item_id,human_label\np1,ambiguous\np1,solvable\n")
    with pytest.raises(ReviewError, match="line 3: item 'p1' was already labelled 'ambiguous', now 'solvable'"):
        import_review(p, taxonomy=TAX)
    with pytest.raises(ReviewError, match="does not exist"):
        import_review(tmp_path / "nope.csv", taxonomy=TAX)
    j = tmp_path / "t.json"
    j.write_text(json.dumps([{"data": {"text": "x"}}]))
    with pytest.raises(ReviewError, match="t.json: task 0: data has no item_id"):
        import_review(j, taxonomy=TAX)
