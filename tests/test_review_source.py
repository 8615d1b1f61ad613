"""Who answers the review (people, or a simulated reviewer that reads the truth) and the audit rows in the review
file: the decision, the export, the round trip through a filled file, and the labels 03_resolve puts on simulated
figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_resolve import CONFLICTS, CONSENSUS, ITEMS, TAX, VALID

from flywheel_lib.curation.audit import audit_precision, draw_audit
from flywheel_lib.curation.resolve import resolve
from flywheel_lib.curation.review import (
    REVIEW_COLUMNS,
    decide_review_source,
    export_review,
    import_review,
    review_queue,
    with_audit,
)
from flywheel_lib.curation.reviewer import simulate_review

ACCEPTED = CONSENSUS.loc[CONSENSUS["status"] == "accepted", ["item_id", "category"]]


@pytest.mark.parametrize("requested, kind, truth, imported, expected", [
    ("auto", "generate", True, False, "simulated"),
    ("auto", "files", True, False, "people"),  # user data with a mapped truth: still people
    ("auto", None, True, False, "people"),  # not recorded: no simulator is known to hold the truth
    ("auto", "generate", False, False, "people"),
    ("auto", "generate", True, True, "people"),  # a filled file is people's answers
    ("people", "generate", True, False, "people"),
    ("simulated", "files", True, False, "simulated"),  # asked for, and a mapped truth column exists
])
def test_decision(requested, kind, truth, imported, expected):
    who = decide_review_source(requested, source_kind=kind, has_truth=truth, review_import=imported)
    assert who.source == expected and who.requested == requested and who.why
    assert who.simulated == (expected == "simulated")


def test_a_simulation_without_truth_or_beside_a_filled_file_is_refused():
    with pytest.raises(ValueError, match="needs a truth table with true_label"):
        decide_review_source("simulated", source_kind="files", has_truth=False)
    with pytest.raises(ValueError, match="holds people's answers"):
        decide_review_source("simulated", source_kind="generate", has_truth=True, review_import=True)
    with pytest.raises(ValueError, match="expected one of people, simulated, auto"):
        decide_review_source("person", source_kind="generate", has_truth=True)


@pytest.fixture
def review_file():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID)
    queue = review_queue(r, ITEMS)
    sample = draw_audit(ACCEPTED, 4, seed=2)
    return queue, sample, with_audit(queue, sample, ITEMS)


def test_audit_rows_come_first_blind_and_marked(review_file):
    queue, sample, out = review_file
    assert list(out.columns) == REVIEW_COLUMNS and (queue["audit"] == 0).all()
    head = out.iloc[:len(sample)]
    assert set(head["item_id"]) == set(sample["item_id"]) and (head["audit"] == 1).all()
    assert (head["priority"] == -1).all() and (head["votes"] == "{}").all() and (head["action"] == "audit").all()
    assert head.set_index("item_id")["text"].to_dict() == ITEMS.set_index("item_id").loc[head["item_id"], "text"].to_dict()
    assert out.iloc[len(sample):]["item_id"].tolist() == queue["item_id"].tolist()
    assert (out.iloc[len(sample):]["audit"] == 0).all()


def test_people_fill_the_file_and_the_estimate_comes_from_their_audit_answers(tmp_path, review_file):
    """The people path never reads a truth table: the file goes out, a filled copy comes back, the audit rows
    give the estimate, the queue rows do not."""
    queue, sample, out = review_file
    paths = export_review(out, tmp_path / "review_queue.csv", taxonomy=TAX, label_studio_path=tmp_path / "ls.json")
    df = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert df["audit"].tolist() == [str(x) for x in out["audit"]]
    gate = ACCEPTED.set_index("item_id")["category"]
    first = sample["item_id"].iloc[0]
    other = next(c for c in TAX.ids if c != gate[first])
    for k, row in df.iterrows():  # a person: confirms every audit label but the first, answers one queue item
        if row["audit"] == "1":
            df.at[k, "human_label"] = other if row["item_id"] == first else gate[row["item_id"]]
    df.loc[df["item_id"] == "p4", "human_label"] = "ambiguous"
    df.to_csv(tmp_path / "filled.csv", index=False)
    back = import_review(tmp_path / "filled.csv", taxonomy=TAX)
    assert back["audit"].dtype == bool and int(back["audit"].sum()) == len(sample)
    assert not back.set_index("item_id").at["p4", "audit"]
    est = audit_precision(ACCEPTED, back[back["audit"]])
    assert est.n == len(sample) and 0 < est.precision < 1 and est.lo < est.precision < est.hi
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID, reviewed=back).set_index("item_id")
    assert r.at[first, "decided_by"] == "human"  # an audit answer is a human decision like any other

    tasks = json.loads(Path(paths["label_studio"]).read_text())
    assert [t["data"]["audit"] for t in tasks] == out["audit"].tolist()
    tasks[0]["annotations"] = [{"completed_by": 3, "result": [
        {"from_name": "label", "value": {"choices": [gate[tasks[0]["data"]["item_id"]]]}}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    ls = import_review(tmp_path / "export.json", taxonomy=TAX)
    assert ls["audit"].tolist() == [True]


def test_a_file_without_an_audit_column_imports_as_no_audit(tmp_path):
    p = tmp_path / "old.csv"
    p.write_text("item_id,human_label\np4,ambiguous\n")
    back = import_review(p, taxonomy=TAX)
    assert back["audit"].tolist() == [False]
    assert audit_precision(ACCEPTED, back[back["audit"]]).n == 0


def test_the_simulated_reviewer_answers_audit_rows_from_the_truth(review_file):
    _, sample, out = review_file
    truth = pd.DataFrame({"item_id": ACCEPTED["item_id"], "true_label": ACCEPTED["category"]})
    truth.loc[truth["item_id"] == sample["item_id"].iloc[0], "true_label"] = "ambiguous"
    answers = simulate_review(out[out["audit"] == 1], truth, budget=len(sample), taxonomy=TAX)
    assert answers.set_index("item_id")["human_label"].to_dict() == truth.set_index("item_id").loc[
        sample["item_id"], "true_label"].to_dict()


def test_03_resolve_labels_simulated_figures_and_records_the_decision():
    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "03_resolve.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    stages = Path(__file__).resolve().parents[1] / "flywheel_lib" / "stages"
    code += "".join((stages / f).read_text() for f in ("resolve.py", "resolve_review.py"))  # the notebook's steps
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "simulated reviewer" in text and "review_source" in text
    assert 'st.note("review_source"' in code and "decide_review_source(r.cfg.review.source" in code
    assert '"review_labels_fixed_simulated"' in code and '"review_labels_fixed"' not in code
    for m in ("audit_precision", "audit_precision_lo", "audit_precision_hi", "audit_n"):
        assert f'st.metric("{m}"' in code
    # the simulated reviewer runs only where the decision says so
    import inspect

    from flywheel_lib.stages.resolve_review import simulated_review

    src = inspect.getsource(simulated_review)
    assert "simulate_review(" not in "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert src.index("if not r.who.simulated:") < src.index("return None") < src.index("simulate_review(in_queue")
