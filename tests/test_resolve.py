"""The decision tree on a ten-item hand-made table; the three training sets built from it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib.curation.datasets import TRAIN_COLUMNS, build_train_sets
from flywheel_lib.curation.resolve import resolve
from flywheel_lib.records import check_table
from flywheel_lib.taxonomy import load_taxonomy

TAX = load_taxonomy("params/taxonomy/segments.yaml")

ITEMS = pd.DataFrame(
    [  # item_id text                                  source        label                 output
        ("p1", "customers who are doctors", "production", "solvable", "customer_tags CONTAINS 'doctor'"),
        ("p2", "customers who spent over $500", "production", "solvable", "amount_spent > 500"),
        ("p3", "my best customers", "production", "solvable", "amount_spent > 1000"),
        ("p4", "customers kind of active", "production", "solvable", "number_of_orders > 2"),
        ("p5", "customers who are nurses", "production", "solvable", "customer_tags CONTAINS 'nurse'"),
        ("p6", "customers with more than 3 orders", "production", "solvable", "number_of_orders >>> 3"),
        ("p7", "customers in Paris", "production", "solvable", "city = "),
        ("p8", "never judged", "production", "solvable", "amount_spent > 1"),
        ("p9", "customers who bought it", "production", "solvable", "products_purchased(tag: 'it') = true"),
        ("p10", "subscribers who are doctors", "production", "solvable", "email_subscription_status = 'SUBSCRIBED'"),
        ("s1", "customers who are doctors", "seed", "missing_capability", None),
        ("s2", "Customers with more than 3 orders!", "seed", "solvable", "number_of_orders > 3"),
    ],
    columns=["item_id", "text", "source", "label", "output"],
).assign(reason_key=None)

CONSENSUS = pd.DataFrame(
    [  # item_id category              status          reason_key
        ("p1", "missing_capability", "accepted", "occupation"),
        ("p2", "solvable", "accepted", "amount_spent"),
        ("p3", "ambiguous", "accepted", "best_customers"),
        ("p4", None, "disagreement", None),
        ("p5", "wrong_skill", "accepted", "analytics"),
        ("p6", "solvable", "accepted", "number_of_orders"),
        ("p7", "solvable", "accepted", "city"),
        ("p9", "needs_context", "accepted", "product"),
        ("p10", "solvable", "accepted", "email_subscription_status"),
    ],
    columns=["item_id", "category", "status", "reason_key"],
).assign(votes='{"j1": "x"}', detail="")

CONFLICTS = pd.DataFrame(
    [("p1", "s1", "exact", 1.0, "solvable", "missing_capability", "customers who are doctors",
      "customers who are doctors", "production", "seed"),
     ("p5", "s1", "paraphrase", 0.93, "solvable", "missing_capability", "customers who are nurses",
      "customers who are doctors", "production", "seed"),
     ("p10", "s1", "paraphrase", 0.91, "solvable", "missing_capability", "subscribers who are doctors",
      "customers who are doctors", "production", "seed")],
    columns=["item_id", "other_id", "match", "similarity", "label", "other_label", "text", "other_text", "source",
             "other_source"],
)
VALID = pd.Series({"p6": False, "p7": False})

EXPECTED = [  # item  action     label_after            rule
    ("p1", "refusal", "missing_capability", "unsolvable_to_refusal+conflict_to_reference"),
    ("p2", "keep", "solvable", "solvable_keeps_production"),
    ("p3", "clarify", "ambiguous", "ambiguous_first"),
    ("p4", "opt_out", None, "no_consensus"),
    ("p5", "opt_out", None, "consensus_matches_neither_source"),
    ("p6", "replace", "solvable", "solvable_output_replaced"),
    ("p7", "opt_out", None, "solvable_output_invalid"),
    ("p8", "opt_out", None, "not_judged"),
    ("p9", "refusal", "needs_context", "unsolvable_to_refusal"),
    ("p10", "keep", "solvable", "solvable_keeps_production+conflict_to_production"),
]


def test_decision_tree():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID)
    check_table(r, "resolutions", "test")
    assert list(zip(r.item_id, r.action, r.label_after, r.rule)) == EXPECTED
    by = r.set_index("item_id")
    assert by.loc["p6", "output_after"] == "number_of_orders > 3"  # the annotated query replaced the broken one
    assert by.loc["p2", "output_after"] == "amount_spent > 500"
    assert by.loc["p1", "output_after"] is None
    assert by.loc["p1", "suggestion"] == TAX["missing_capability"].suggestion
    ev = json.loads(by.loc["p1", "evidence"])
    assert ev["rule"] == by.loc["p1", "rule"]
    assert ev["conflict"]["other_id"] == "s1" and ev["consensus"]["category"] == "missing_capability"
    assert set(r.decided_by) == {"tree"}


def test_human_review_overrides_everything():
    reviewed = pd.DataFrame({"item_id": ["p4", "p2"], "human_label": ["ambiguous", "solvable"],
                             "human_output": [None, "amount_spent >= 500"], "note": ["vague", None],
                             "reviewer": ["ann", "ann"]})
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID, reviewed=reviewed).set_index("item_id")
    assert r.loc["p4", ["action", "label_after", "decided_by", "rule"]].tolist() == ["clarify", "ambiguous", "human",
                                                                                   "human_review"]
    assert r.loc["p2", ["action", "output_after"]].tolist() == ["replace", "amount_spent >= 500"]
    assert json.loads(r.loc["p4", "evidence"])["human"] == {"label": "ambiguous", "output": None, "note": "vague",
                                                            "reviewer": "ann"}


def test_unknown_consensus_category_is_named():
    bad = CONSENSUS.assign(category=CONSENSUS.category.replace({"ambiguous": "vague"}))
    with pytest.raises(ValueError, match="item 'p3' has category 'vague', which is not in taxonomy 'segments'"):
        resolve(ITEMS, bad, TAX)


def test_train_sets():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, output_valid=VALID)
    reviewed = pd.DataFrame({"item_id": ["s1"], "human_label": ["wrong_skill"], "human_output": [None]})
    t = build_train_sets(ITEMS, r, TAX, reviewed=reviewed)
    assert list(t.columns) == TRAIN_COLUMNS
    assert t.groupby("variant").size().to_dict() == {"curated": 6 + 2, "naive_merge": 12, "production_only": 10}
    naive = t[t.variant == "naive_merge"].set_index("item_id")
    assert naive.loc["p1", "label"] == "solvable" and naive.loc["s1", "label"] == "missing_capability"  # conflict kept
    cur = t[t.variant == "curated"].set_index("item_id")
    assert sorted(cur.index) == ["p1", "p10", "p2", "p3", "p6", "p9", "s1", "s2"]
    assert cur.loc["p1", ["label", "output", "reason_key"]].tolist() == ["missing_capability", None, "occupation"]
    assert cur.loc["p6", "output"] == "number_of_orders > 3"
    assert cur.loc["s1", "label"] == "wrong_skill"  # the human decision wins over the seed annotation
    assert cur.loc["s2", "output"] == "number_of_orders > 3"
