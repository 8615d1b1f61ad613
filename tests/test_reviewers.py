"""Several reviewers per item: the agreement measures on published worked examples, a balanced seeded assignment,
one file per reviewer out and every answer back, and the resolution rules with their requeue."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_resolve import CONFLICTS, CONSENSUS, ITEMS, TAX, VALID

from flywheel_lib.curation.audit import draw_audit
from flywheel_lib.curation.resolve import resolve
from flywheel_lib.curation.review import REVIEW_COLUMNS, ReviewError, review_queue, with_audit
from flywheel_lib.curation.reviewers import (
    ANSWER_COLUMNS,
    ReviewAggregator,
    agreement,
    assign_reviewers,
    cohen_kappa,
    export_assigned,
    fleiss_kappa,
    krippendorff_alpha,
    read_answers,
    requeue_file,
    review_files,
    reviewer_names,
)
from flywheel_lib.runner.params import inspect_params
from flywheel_lib.stages.groups import group_rows

# Fleiss (1971)-style worked example: 10 items, 14 raters each, 5 categories; kappa = 0.210
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing values;
# nominal alpha = 0.743
_ = None
KRIPPENDORFF = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _], "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
                "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _], "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _]}


def long(table: dict) -> pd.DataFrame:
    return pd.DataFrame([(f"u{u}", r, str(v)) for r, vals in table.items() for u, v in enumerate(vals)
                         if v is not None], columns=["item_id", "reviewer", "label"])


def test_cohen_kappa_on_the_textbook_two_by_two():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 -> po 0.70, pe 0.50, kappa 0.40
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == 1.0
    assert np.isnan(cohen_kappa(["x"] * 3, ["x"] * 3))  # chance agreement 1: undefined, not 1


def test_fleiss_kappa_on_the_worked_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)
    assert np.isnan(fleiss_kappa([[2, 0], [1, 2]]))  # unequal raters per item: not Fleiss' design


def test_krippendorff_alpha_and_the_pairs_on_the_2011_example():
    ag = agreement(long(KRIPPENDORFF), n_boot=300, seed=1)
    assert ag.alpha == pytest.approx(0.743, abs=5e-4)
    assert ag.n_items == 11  # unit 12 has one value: not pairable
    assert ag.fleiss_raters == 4 and ag.fleiss_items == 8  # the units every observer coded
    assert ag.alpha_lo < ag.alpha <= ag.alpha_hi and ag.kappa_fleiss_lo < ag.kappa_fleiss < ag.kappa_fleiss_hi
    pairs = ag.pairs.set_index(["reviewer_a", "reviewer_b"])
    assert len(pairs) == 6 and pairs.at[("A", "B"), "n"] == 9 and pairs.at[("C", "D"), "n"] == 10
    both = long(KRIPPENDORFF).pivot(index="item_id", columns="reviewer", values="label")[["A", "B"]].dropna()
    assert pairs.at[("A", "B"), "kappa"] == pytest.approx(cohen_kappa(both["A"], both["B"]))
    # the same seed, the same intervals
    again = agreement(long(KRIPPENDORFF), n_boot=300, seed=1)
    assert (again.alpha_lo, again.alpha_hi) == (ag.alpha_lo, ag.alpha_hi)
    assert json.dumps(ag.as_dict())  # the manifest note serialises


def test_alpha_from_counts_agrees_with_fleiss_when_every_item_has_every_rater():
    # with no missing answers, alpha = 1 - (1 - kappa) (T - 1) / T, T the number of answers (Krippendorff 2004)
    n = np.asarray(FLEISS_TABLE, dtype=float)
    total = n.sum()
    assert krippendorff_alpha(n) == pytest.approx(1 - (1 - fleiss_kappa(n)) * (total - 1) / total)


def test_assignment_is_balanced_distinct_and_seeded():
    queue = pd.DataFrame({"item_id": [f"i{k}" for k in range(10)]})
    names = ["ann", "bo", "cy", "di"]
    a = assign_reviewers(queue, names, k=2, seed=3)
    assert a.groupby("item_id")["reviewer"].nunique().eq(2).all() and len(a) == 20
    assert a["reviewer"].value_counts().to_dict() == dict.fromkeys(names, 5)
    met = {frozenset(g["reviewer"]) for _, g in a.groupby("item_id")}
    assert met == {frozenset(p) for p in combinations(names, 2)}  # every pair shares items
    assert a.equals(assign_reviewers(queue, names, k=2, seed=3))
    assert a["item_id"].drop_duplicates().tolist() == queue["item_id"].tolist()  # the queue's order kept
    assert reviewer_names([], 3) == ["reviewer_1", "reviewer_2", "reviewer_3"]
    with pytest.raises(ValueError, match="reviewers_per_item 3 but only 2 reviewers"):
        assign_reviewers(queue, ["ann", "bo"], k=3)
    with pytest.raises(ValueError, match="distinct"):
        reviewer_names(["ann", "ann"], 2)


@pytest.fixture
def review_file():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID)
    accepted = CONSENSUS.loc[CONSENSUS["status"] == "accepted", ["item_id", "category"]]
    return with_audit(review_queue(r, ITEMS), draw_audit(accepted, 2, seed=2), ITEMS)


def test_one_file_per_reviewer_out_every_answer_back_then_one_label(tmp_path, review_file):
    names = ["ann", "bo", "cy"]
    assignment = assign_reviewers(review_file, names, k=3, seed=0)  # everyone sees everything
    files = export_assigned(review_file, assignment, tmp_path, taxonomy=TAX)
    assert set(files) == set(names) and set(files["ann"]) == {"csv", "label_studio", "label_config"}
    audit_ids = review_file.loc[review_file["audit"] == 1, "item_id"].tolist()
    answer = {  # p4: 2 of 3 say ambiguous; p7: three different labels; audit items: all agree with the gate
        "ann": {"p4": "ambiguous", "p7": "solvable"}, "bo": {"p4": "ambiguous", "p7": "needs_context"},
        "cy": {"p4": "solvable", "p7": "ambiguous"}}
    gate = CONSENSUS.set_index("item_id")["category"]
    for name in ("ann", "bo"):  # two fill the CSV
        df = pd.read_csv(files[name]["csv"], dtype=str, keep_default_na=False)
        assert list(df.columns) == REVIEW_COLUMNS and (df["reviewer"] == name).all()
        assert df["item_id"].tolist() == review_file["item_id"].tolist()
        for iid, lab in {**answer[name], **{i: gate[i] for i in audit_ids}}.items():
            df.loc[df["item_id"] == iid, "human_label"] = lab
        df.loc[df["item_id"] == "p7", "human_output"] = "city = 'Paris'"
        df.to_csv(tmp_path / f"filled.{name}.csv", index=False)
    tasks = json.loads(files["cy"]["label_studio"].read_text())  # one answers in Label Studio
    for t in tasks:
        lab = {**answer["cy"], **{i: gate[i] for i in audit_ids}}.get(t["data"]["item_id"])
        if lab:
            t["annotations"] = [{"completed_by": {"email": "cy"}, "result": [
                {"from_name": "label", "value": {"choices": [lab]}},
                {"from_name": "note", "value": {"text": ["unsure"]}}]}]
    (tmp_path / "filled.cy.json").write_text(json.dumps(tasks))
    answers = read_answers(review_files(str(tmp_path / "filled.*")), taxonomy=TAX)
    assert list(answers.columns) == ANSWER_COLUMNS and len(answers) == 3 * (2 + len(audit_ids))
    assert set(answers["reviewer"]) == set(names)
    assert answers.loc[answers["item_id"].isin(audit_ids), "audit"].all()

    ag = agreement(answers, n_boot=200)
    assert ag.n_items == 2 + len(audit_ids) and len(ag.pairs) == 3

    agg = ReviewAggregator("majority").fit(answers)
    assert agg.status_["p4"] == "resolved" and agg.labels_["p4"] == "ambiguous"
    assert agg.requeued_ == ["p7"] and agg.labels_["p7"] is None
    back = agg.reviewed()
    assert "p7" not in set(back["item_id"]) and back.set_index("item_id").at["p4", "reviewer"] == "ann+bo"
    assert back.loc[back["item_id"].isin(audit_ids), "audit"].all()
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID, reviewed=back).set_index("item_id")
    assert r.at["p4", "decided_by"] == "human" and r.at["p7", "decided_by"] != "human"  # requeued: unlabelled
    assert ReviewAggregator("unanimous").fit(answers).requeued_ == ["p4", "p7"]

    again = requeue_file(agg, review_file, ITEMS)
    assert list(again.columns) == REVIEW_COLUMNS and again["item_id"].tolist() == ["p7"]
    assert again.at[0, "note"] == "reviewers disagree (majority): ann=solvable, bo=needs_context, cy=ambiguous"
    assert again.at[0, "human_label"] == ""


def test_rules_on_a_hand_table():
    rows = [("a", "r1", "x"), ("a", "r2", "x"), ("a", "r3", "y"),  # 2 of 3
            ("b", "r1", "x"), ("b", "r2", "y"),  # 1 - 1
            ("c", "r1", "y"), ("c", "r2", "y"), ("c", "r3", "y"),  # unanimous
            ("d", "r3", "x")]  # one answer
    a = pd.DataFrame(rows, columns=["item_id", "reviewer", "label"])
    maj = ReviewAggregator("majority").fit(a)
    assert maj.status_.to_dict() == {"a": "resolved", "b": "requeued", "c": "resolved", "d": "resolved"}
    assert maj.support_["a"] == pytest.approx(0.6667, abs=1e-4)
    una = ReviewAggregator("unanimous", min_answers=2).fit(a)
    assert una.status_.to_dict() == {"a": "requeued", "b": "requeued", "c": "resolved", "d": "pending"}
    ds = ReviewAggregator("dawid_skene").fit(a)
    assert ds.labels_["c"] == "y" and ds.labels_["a"] == "x"
    assert ((ds.support_ >= 0.5) == (ds.status_ == "resolved")).all()
    assert set(ReviewAggregator("dawid_skene", min_posterior=1.01).fit(a).requeued_) == {"a", "b", "c", "d"}
    with pytest.raises(ValueError, match="expected one of majority, unanimous, dawid_skene"):
        ReviewAggregator("plurality").fit(a)


def test_a_label_studio_project_with_overlap_keeps_every_annotation(tmp_path):
    def ann(who, lab, cancelled=False):
        return {"completed_by": who, "was_cancelled": cancelled,
                "result": [{"from_name": "label", "value": {"choices": [lab]}}]}
    tasks = [{"data": {"item_id": "p4", "audit": 0}, "annotations": [ann(1, "ambiguous"), ann(2, "solvable"),
                                                                    ann(3, "solvable", cancelled=True)]},
             {"data": {"item_id": "p7", "audit": 1}, "annotations": [ann({"email": "e@x"}, "solvable")]}]
    p = tmp_path / "project.json"
    p.write_text(json.dumps(tasks))
    got = read_answers(review_files(tmp_path), taxonomy=TAX)
    assert got[["item_id", "reviewer", "label", "audit"]].values.tolist() == [
        ["p4", "1", "ambiguous", False], ["p4", "2", "solvable", False], ["p7", "e@x", "solvable", True]]
    tasks[0]["annotations"][0]["result"][0]["value"]["choices"] = ["maybe"]
    p.write_text(json.dumps(tasks))
    with pytest.raises(ReviewError, match="task 0: label 'maybe' is not a category"):
        read_answers([p], taxonomy=TAX)


def test_one_reviewer_answering_twice_differently_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text("item_id,human_label,reviewer\np4,ambiguous,ann\n")
    (tmp_path / "b.csv").write_text("item_id,human_label,reviewer\np4,solvable,ann\n")
    with pytest.raises(ReviewError, match="reviewer 'ann' labels item 'p4' 'solvable', but 'ambiguous'"):
        read_answers(review_files(tmp_path), taxonomy=TAX)
    (tmp_path / "b.csv").write_text("item_id,human_label\np4,solvable\n")  # no reviewer cell: the file's name
    assert read_answers(review_files(tmp_path), taxonomy=TAX)["reviewer"].tolist() == ["ann", "b"]
    with pytest.raises(ReviewError, match="does not exist"):
        review_files(tmp_path / "nothing*.csv")


def test_03_resolve_exposes_the_parameters_and_the_metrics():
    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "03_resolve.ipynb").read_text())
    params = "".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])
    review = inspect_params(Path(__file__).resolve().parents[1] / "notebooks" / "03_resolve.ipynb")["review"]
    assert review.type_name == "dict" and '"per_item": 1' in params and '"resolution": "majority"' in params
    keys = {k: (default, bound) for k, _, default, bound, _ in group_rows("review", review.default)}
    assert keys["review.per_item"] == (1, "1 <= per_item") and keys["review.reviewers"] == ([], "")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    stages = Path(__file__).resolve().parents[1] / "flywheel_lib" / "stages"
    code += "".join((stages / f).read_text() for f in ("resolve.py", "resolve_review.py"))  # the notebook's steps
    assert 'st.metric(f"review_{key}"' in code and '"review_requeued"' in code
    assert '("alpha", "alpha_lo", "alpha_hi", "kappa_fleiss", "kappa_fleiss_lo", "kappa_fleiss_hi")' in code
    assert 'st.write("review_answers"' in code and "review_requeue.csv" in code and "export_assigned(" in code
