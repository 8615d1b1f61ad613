"""Calibration statistics and the split on a six-item hand-made hold-out, expected values worked out beside."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_consensus import verdicts

from flywheel_lib.curation.calibration import (
    apply_gate,
    confused_pairs,
    confusion_table,
    effective_votes,
    error_correlation,
    judge_report,
    panel_agreement,
    panel_record,
    per_category,
)
from flywheel_lib.curation.split import check_disjoint, stratified_split

LABELS = ["x", "y"]
GOLD = pd.Series({"a": "x", "b": "x", "c": "x", "d": "y", "e": "y", "f": "y"})
TEXTS = pd.Series({k: f"request {k}" for k in GOLD.index})
# j1 perfect; j2 wrong on a; j3 wrong on c and abstains on f.
V = verdicts("""
a j1 x -
b j1 x -
c j1 x -
d j1 y -
e j1 y -
f j1 y -
a j2 y -
b j2 x -
c j2 x -
d j2 y -
e j2 y -
f j2 y -
a j3 x -
b j3 x -
c j3 y -
d j3 y -
e j3 y -
f j3 - -
""")


def test_confusion_table_keeps_abstentions():
    t = confusion_table(V, GOLD, "j3", labels=LABELS)
    assert t.to_dict("index") == {"x": {"x": 2, "y": 1, "<abstain>": 0}, "y": {"x": 0, "y": 2, "<abstain>": 1}}


def test_judge_report_accuracy_and_kappa():
    r = judge_report(V, GOLD, labels=LABELS).set_index("judge")
    assert r["accuracy"].tolist() == pytest.approx([1.0, 5 / 6, 4 / 6])
    # j2: po = 5/6, pe = 3/6*2/6 + 3/6*4/6 = 1/2 -> 2/3;  j3: po = 4/6, pe = 15/36 -> 3/7
    assert r["kappa"].tolist() == pytest.approx([1.0, 2 / 3, 3 / 7])
    assert r.loc["j3", "abstain_rate"] == pytest.approx(1 / 6)
    assert (r["kappa_lo"] <= r["kappa"]).all() and (r["kappa"] <= r["kappa_hi"] + 1e-12).all()
    assert r.loc["j2", "kappa_lo"] < 2 / 3 < r.loc["j2", "kappa_hi"]


def test_per_category_precision_recall():
    p = per_category(V, GOLD, labels=LABELS).set_index(["judge", "category"])
    assert p.loc[("j3", "x"), ["precision", "recall"]].tolist() == pytest.approx([1.0, 2 / 3])
    assert p.loc[("j3", "y"), ["precision", "recall"]].tolist() == pytest.approx([2 / 3, 2 / 3])


def test_panel_agreement_fleiss_and_pairwise():
    a = panel_agreement(V, labels=LABELS)
    # items a..e (f has an abstention): Pbar = 11/15, Pe = 113/225 -> (52/225)/(112/225)
    assert a["n_complete"] == 5
    assert a["fleiss_kappa"] == pytest.approx(52 / 112)
    pw = a["pairwise"]
    assert pw.loc["j1", "j2"] == pytest.approx(5 / 6)
    assert pw.loc["j1", "j3"] == pytest.approx(4 / 5)
    assert pw.loc["j2", "j3"] == pytest.approx(3 / 5)


def test_error_correlation_and_effective_votes():
    c = error_correlation(V, GOLD)
    assert math.isnan(c.loc["j1", "j2"])  # j1 never errs: no variance
    assert c.loc["j2", "j3"] == pytest.approx(-2 / math.sqrt(40))
    e = effective_votes(c)
    assert e["n"] == 3 and e["n_eff"] == pytest.approx(3.0)  # negative mean correlation is clipped to 0
    same = pd.DataFrame([[1.0, 1.0], [1.0, 1.0]])
    assert effective_votes(same)["n_eff"] == pytest.approx(1.0)
    assert effective_votes(same)["n_eff_eigen"] == pytest.approx(1.0)


def test_confused_pairs_with_examples():
    t = confused_pairs(V, GOLD, TEXTS)
    assert t[["category_a", "category_b", "judge_vs_gold", "judge_vs_judge", "total"]].values.tolist() == [["x", "y", 2, 4, 6]]
    assert t.loc[0, "examples"] == ["request a [gold: x]", "request c [gold: x]"]


def test_gate_flags_and_excludes():
    r = judge_report(V, GOLD, labels=LABELS)
    g = apply_gate(r, kappa_threshold=0.5, exclude=False)
    assert g["flagged"].tolist() == [False, False, True] and not g["excluded"].any()
    g = apply_gate(r, kappa_threshold=0.5, exclude=True)
    assert g["excluded"].tolist() == [False, False, True]
    rec = panel_record(g, {"j1": confusion_table(V, GOLD, "j1", labels=LABELS)}, kappa_threshold=0.5, exclude=True)
    assert rec["judges"] == ["j1", "j2"] and rec["excluded"] == ["j3"]
    assert rec["confusion"]["j1"]["x"] == {"x": 3, "y": 0, "<abstain>": 0}
    everyone = apply_gate(r, kappa_threshold=2.0, exclude=True)
    assert not everyone["excluded"].any() and "none excluded" in everyone["gate_note"].iloc[0]
    # a kappa floor drops a judge below it even when flagged judges are kept
    floor = float(r.set_index("judge").loc["j3", "kappa"]) + 1e-9
    g = apply_gate(r, kappa_threshold=0.5, exclude=False, min_kappa=floor)
    assert g["below_floor"].tolist() == [False, False, True] and g["excluded"].tolist() == [False, False, True]
    assert g.set_index("judge").loc["j3", "gate_note"].startswith("kappa ")
    rec = panel_record(g, {}, kappa_threshold=0.5, exclude=False, min_kappa=floor)
    assert rec["judges"] == ["j1", "j2"] and rec["below_min_kappa"] == ["j3"] and rec["min_kappa"] == floor
    nobody = apply_gate(r, kappa_threshold=0.5, exclude=False, min_kappa=2.0)
    assert not nobody["excluded"].any() and "none excluded" in nobody["gate_note"].iloc[0]


def test_stratified_split_is_seeded_stratified_and_disjoint():
    items = pd.DataFrame({"item_id": [f"s{i:02d}" for i in range(16)], "label": ["x"] * 10 + ["y"] * 5 + ["z"]})
    s = stratified_split(items, fraction=0.4, seed=7)
    counts = s.groupby(["label", "split"]).size().to_dict()
    assert counts == {("x", "fewshot"): 4, ("x", "holdout"): 6, ("y", "fewshot"): 2, ("y", "holdout"): 3,
                      ("z", "holdout"): 1}
    assert s["item_id"].tolist() == items["item_id"].tolist()  # input order kept
    again = stratified_split(items.sample(frac=1, random_state=3), fraction=0.4, seed=7)
    assert dict(zip(again.item_id, again.split)) == dict(zip(s.item_id, s.split))  # order-independent
    other = stratified_split(items, fraction=0.4, seed=8)
    assert dict(zip(other.item_id, other.split)) != dict(zip(s.item_id, s.split))
    few, hold = s[s.split == "fewshot"].item_id, s[s.split == "holdout"].item_id
    check_disjoint(few, hold)
    with pytest.raises(ValueError, match="1 hold-out items are in the few-shot pool"):
        check_disjoint(["s00", "s01"], ["s01"])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(items, fraction=1.0)
