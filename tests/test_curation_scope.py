"""What the gate governs (gate_scope), the review queue's order, the simulated reviewer and the selection-bias
diagnostics, on hand-made tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib.curation.diagnostics import resolution_summary, selection_bias
from flywheel_lib.curation.resolve import resolve
from flywheel_lib.curation.review import review_queue
from flywheel_lib.curation.reviewer import review_effect, simulate_review
from flywheel_lib.domains.segments.complexity import query_complexity
from flywheel_lib.taxonomy import load_taxonomy

TAX = load_taxonomy("params/taxonomy/segments.yaml")

ITEMS = pd.DataFrame(
    [  # item_id text                                                   source        label      output
        ("p1", "customers who spent over $500 and live in Paris", "production", "solvable",
         "amount_spent > 500 AND city = 'Paris'"),
        ("p2", "customers who are doctors", "production", "solvable", "customer_tags CONTAINS 'doctor'"),
        ("p3", "customers who are dentists", "production", "solvable", "customer_tags CONTAINS 'dentist'"),
        ("p4", "customers with more than 3 orders", "production", "solvable", "number_of_orders > 3"),
        ("p5", "customers who are nurses", "production", "solvable", "customer_tags CONTAINS 'nurse'"),
        ("p6", "customers in Lyon", "production", "solvable", "city = 'Lyon'"),
        ("s1", "customers who are nurses", "seed", "missing_capability", None),
    ],
    columns=["item_id", "text", "source", "label", "output"],
).assign(reason_key=None)


def _cons(iid, cat, status, votes):
    return {"item_id": iid, "category": cat, "status": status, "votes": json.dumps(votes), "reason_key": None,
            "detail": ""}


CONSENSUS = pd.DataFrame([
    # p1: all say solvable but name different attributes (reason mismatch): nothing contradicts the logged label
    _cons("p1", None, "disagreement", {"j1": "solvable", "j2": "solvable", "j3": "solvable"}),
    # p2: two judges would refuse, one keeps: a label change without a unanimous panel
    _cons("p2", None, "disagreement", {"j1": "missing_capability", "j2": "missing_capability", "j3": "solvable"}),
    # p3: every vote says missing capability, but the reasons differ: contradicted, yet no accepted change
    _cons("p3", None, "disagreement", {"j1": "missing_capability", "j2": "missing_capability", "j3": "missing_capability"}),
    # p4: one judge abstained, the others keep the logged label
    _cons("p4", None, "abstained", {"j1": None, "j2": "solvable", "j3": "solvable"}),
    # p5: supports the logged label but conflicts with an annotated refusal
    _cons("p5", None, "disagreement", {"j1": "solvable", "j2": "missing_capability", "j3": "solvable"}),
    # p6: everyone abstained
    _cons("p6", None, "abstained", {"j1": None, "j2": None, "j3": None}),
])
CONFLICTS = pd.DataFrame(
    [("p5", "s1", "exact", 1.0, "solvable", "missing_capability", "customers who are nurses",
      "customers who are nurses", "production", "seed")],
    columns=["item_id", "other_id", "match", "similarity", "label", "other_label", "text", "other_text", "source",
             "other_source"],
)


def test_changes_keeps_uncontradicted_labels_and_blocks_non_unanimous_changes():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes").set_index("item_id")
    assert r.loc["p1", ["action", "label_after", "rule"]].tolist() == ["keep", "solvable", "uncontradicted_keeps_production"]
    assert r.loc["p1", "output_after"] == "amount_spent > 500 AND city = 'Paris'"
    assert r.loc["p4", ["action", "label_after"]].tolist() == ["keep", "solvable"]  # an abstention does not contradict
    # p2: no label change without the gate; the logged label stands, marked contested for the review queue
    assert r.loc["p2", ["action", "label_after"]].tolist() == ["keep", "solvable"]
    assert json.loads(r.loc["p2", "evidence"])["contested"] is True
    assert json.loads(r.loc["p1", "evidence"])["contested"] is False
    assert r.loc["p3", ["action", "rule"]].tolist() == ["opt_out", "panel_contradicts_production"]
    assert r.loc["p5", ["action", "rule"]].tolist() == ["opt_out", "conflict_not_unanimous"]  # not silently kept
    assert r.loc["p6", ["action", "rule"]].tolist() == ["opt_out", "no_consensus"]


def test_all_drops_every_item_without_consensus():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="all")
    assert set(r["action"]) == {"opt_out"} and set(r["rule"]) == {"no_consensus"}


def test_changes_checks_the_logged_output():
    r = resolve(ITEMS, CONSENSUS, TAX, gate_scope="changes", output_valid=pd.Series({"p1": False}))
    assert r.set_index("item_id").loc["p1", ["action", "rule"]].tolist() == ["opt_out", "solvable_output_invalid"]


def test_unknown_gate_scope_is_named():
    with pytest.raises(ValueError, match="gate_scope 'some' is not one of all, changes"):
        resolve(ITEMS, CONSENSUS, TAX, gate_scope="some")


def test_queue_puts_conflicts_then_refusal_votes_then_entropy():
    r = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes")
    q = review_queue(r, ITEMS, taxonomy=TAX)
    # p5 conflict; p2 (contested keep) and p3 have refusal votes, p2 the higher entropy; p6 a plain abstention
    assert q["item_id"].tolist() == ["p5", "p2", "p3", "p6"]
    assert q["priority"].tolist() == [0, 1, 1, 2]
    assert q.set_index("item_id").loc["p2", "action"] == "keep"
    assert "p2" not in review_queue(r, ITEMS, taxonomy=TAX, include_contested=False)["item_id"].tolist()


def test_simulated_reviewer_answers_with_the_truth_at_its_error_rate():
    n = 2000
    ids = [f"i{k}" for k in range(n)]
    cats = list(TAX.ids)
    truth = pd.DataFrame({"item_id": ids, "true_label": [cats[k % len(cats)] for k in range(n)],
                          "gold_output": ["amount_spent > 1" if cats[k % len(cats)] == TAX.solvable_id else None
                                          for k in range(n)]})
    queue = pd.DataFrame({"item_id": ids, "human_label": "", "human_output": "", "note": "", "reviewer": ""})
    exact = simulate_review(queue, truth, budget=50, taxonomy=TAX, error_rate=0.0)
    assert len(exact) == 50 and (exact["human_label"].to_numpy() == truth["true_label"][:50].to_numpy()).all()
    solv = exact[exact["human_label"] == TAX.solvable_id]
    assert (solv["human_output"] == "amount_spent > 1").all()
    noisy = simulate_review(queue, truth, budget=n, taxonomy=TAX, error_rate=0.2, seed=3)
    wrong = (noisy["human_label"].to_numpy() != truth["true_label"].to_numpy()).mean()
    assert 0.17 < wrong < 0.23
    assert set(noisy["human_label"]) <= set(TAX.ids)


def test_reviewed_answers_fix_the_curated_set():
    truth = pd.DataFrame({"item_id": ["p2", "p3", "p6"], "true_label": ["missing_capability", "missing_capability",
                                                                        "solvable"],
                          "gold_output": [None, None, "city = 'Lyon'"]})
    before = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes")
    q = review_queue(before, ITEMS, taxonomy=TAX)
    answered = simulate_review(q, truth, budget=3, taxonomy=TAX)
    assert answered["item_id"].tolist() == ["p2", "p3", "p6"]  # p5 has no truth here: skipped
    after = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes", reviewed=answered)
    by = after.set_index("item_id")
    assert by.loc["p2", ["action", "label_after", "decided_by"]].tolist() == ["refusal", "missing_capability", "human"]
    eff = review_effect(before, after, truth, answered["item_id"])
    assert eff == {"reviewed": 3, "fixed": 3, "broken": 0, "added": 2, "removed": 0, "fixed_per_item": 1.0,
                   "net_per_item": 1.0}
    s = resolution_summary(after, truth)
    assert s["kept missing_capability"] == 2 and s["precision vs truth"] == 1.0


def _pool():
    rows = []
    for k in range(40):
        fam = ["plain", "compound"][k % 2]
        out = "amount_spent > 5" if fam == "plain" else "amount_spent > 5 AND (city = 'a' OR city = 'b')"
        rows.append((f"x{k}", "spent a lot" if fam == "plain" else "spent a lot and lives in a or b", out, fam))
    return pd.DataFrame(rows, columns=["item_id", "text", "output", "family"]).assign(category="solvable")


def test_diagnostics_flag_a_lost_family():
    pool = _pool()
    kept = pool[pool["family"] == "plain"].assign(label="solvable")
    rep = selection_bias(kept, pool, complexity=query_complexity, curated_category="label", min_region_rows=5)
    assert rep.metric("solvable", "region") == 0.0
    assert rep.metric("solvable", "clauses", "curated_mean") == 0.0
    assert rep.metric("solvable", "clauses", "pool_mean") == 1.0  # (0 + 2) / 2
    assert any("region 'compound'" in w for w in rep.warnings)
    balanced = pool.iloc[:20].assign(label="solvable")
    ok = selection_bias(balanced, pool, complexity=query_complexity, curated_category="label", min_region_rows=5)
    assert ok.warnings == [] and ok.metric("solvable", "region") == 1.0 and ok.metric("solvable", "clauses") == 1.0


def test_diagnostics_cluster_when_there_are_no_families():
    pool = _pool().drop(columns="family")
    kept = pool[pool["text"] == "spent a lot"].assign(label="solvable")
    rep = selection_bias(kept, pool, curated_category="label", n_clusters=2, min_region_rows=5)
    assert rep.region_source == "tfidf_kmeans" and rep.metric("solvable", "region") == 0.0


def test_query_complexity():
    assert query_complexity("a = 1 AND (b = 2 OR c = 3) AND d > -3m") == {"clauses": 3, "functions": 0,
                                                                         "relative_dates": 1}
    assert query_complexity("products_purchased(tag: 'x', date: -30d) = true") == {"clauses": 0, "functions": 1,
                                                                                   "relative_dates": 1}
    assert query_complexity(None) is None and query_complexity("a = = 1") is None


def test_contradiction_majority_and_any_are_stricter():
    maj = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes", contradiction="majority")
    by = maj.set_index("item_id")
    assert by.loc["p2", ["action", "rule"]].tolist() == ["opt_out", "panel_contradicts_production"]  # 2 against 1
    assert by.loc["p1", "action"] == "keep" and by.loc["p4", "action"] == "keep"
    strict = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes", contradiction="any")
    assert strict.set_index("item_id").loc["p2", "action"] == "opt_out"
    one_against = CONSENSUS.copy()
    one_against.loc[one_against.item_id == "p1", "votes"] = json.dumps({"j1": "solvable", "j2": "solvable",
                                                                        "j3": "ambiguous"})
    kept = resolve(ITEMS, one_against, TAX, gate_scope="changes", contradiction="majority").set_index("item_id")
    dropped = resolve(ITEMS, one_against, TAX, gate_scope="changes", contradiction="any").set_index("item_id")
    assert kept.loc["p1", "action"] == "keep" and dropped.loc["p1", "action"] == "opt_out"
    with pytest.raises(ValueError, match="contradiction 'most' is not one of unanimous, majority, any"):
        resolve(ITEMS, CONSENSUS, TAX, gate_scope="changes", contradiction="most")


def test_selection_bias_plot_draws_both_panels():
    import matplotlib

    matplotlib.use("Agg")
    from flywheel_lib.curation.plots import plot_selection_bias

    pool = _pool()
    rep = selection_bias(pool[pool["family"] == "plain"].assign(label="solvable"), pool, complexity=query_complexity,
                         curated_category="label", min_region_rows=5)
    fig = plot_selection_bias(rep)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_xticklabels()] == ["plain", "compound"] or \
        [t.get_text() for t in left.get_xticklabels()] == ["compound", "plain"]
    assert "clauses" in [t.get_text() for t in right.get_xticklabels()]


@pytest.mark.parametrize("gate_scope", ["all", "changes"])
def test_a_solvable_row_without_a_logged_query_is_never_kept(gate_scope):
    """A logged success with no query (e.g. a traffic answer that was not a query) cannot teach a query: opted out."""
    items = pd.DataFrame([("t1", "customers in Lyon", "traffic", "solvable", None)],
                         columns=["item_id", "text", "source", "label", "output"]).assign(reason_key=None)
    for cons in (_cons("t1", "solvable", "accepted", {"j1": "solvable", "j2": "solvable", "j3": "solvable"}),
                 _cons("t1", None, "disagreement", {"j1": "solvable", "j2": "solvable", "j3": "solvable"})):
        checked = pd.Series([], dtype=bool, name="valid")  # the domain checked the logged queries: t1 had none
        r = resolve(items, pd.DataFrame([cons]), TAX, gate_scope=gate_scope, output_valid=checked).set_index("item_id")
        assert r.loc["t1", "action"] == "opt_out" and r.loc["t1", "output_after"] is None, (gate_scope, cons["status"])
    # user data whose domain cannot check queries (no executor): an accepted label stands without one
    r = resolve(items, pd.DataFrame([_cons("t1", "solvable", "accepted", {"j1": "solvable", "j2": "solvable",
                                                                       "j3": "solvable"})]), TAX,
                gate_scope=gate_scope, output_valid=None).set_index("item_id")
    assert r.loc["t1", "action"] == "keep"


def test_another_policy_becomes_a_train_set_variant_of_its_own():
    from flywheel_lib.curation.datasets import build_train_sets, parse_policy, policy_variant

    assert parse_policy("all") == ("all", "unanimous", "curated_all")
    assert parse_policy("changes/any") == ("changes", "any", "curated_changes_any")
    for bad in ("some", "all/majority", "changes/most", "changes"):
        with pytest.raises(ValueError, match="gate policy"):
            parse_policy(bad)
    changes = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes")
    alt = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="all")
    sets = build_train_sets(ITEMS, changes, TAX)
    v = policy_variant(ITEMS, alt, TAX, policy="all")
    assert set(v["variant"]) == {"curated_all"}
    # `all` opts every production item out here, so its curated set is the seed alone; `changes` keeps p1, p2, p4
    assert v["item_id"].tolist() == ["s1"]
    cur = sets[sets["variant"] == "curated"]
    assert set(cur["item_id"]) == {"p1", "p2", "p4", "s1"}


def test_a_reviewed_solvable_label_without_any_query_stays_out_of_the_training_sets():
    """A reviewer says "solvable" about a request the model refused but writes no query: the resolution keeps the
    label, and the curated training set leaves the row out (it would teach an empty query) and names it."""
    from flywheel_lib.curation.datasets import build_train_sets

    items = pd.DataFrame([("t1", "buyers who feel like VIPs", "traffic", "ambiguous", None),
                          ("t2", "customers in Lyon", "traffic", "solvable", "customer_cities CONTAINS 'Lyon'")],
                         columns=["item_id", "text", "source", "label", "output"]).assign(reason_key=None)
    cons = pd.DataFrame([_cons("t1", None, "disagreement", {"j1": "solvable", "j2": "ambiguous", "j3": "solvable"}),
                         _cons("t2", "solvable", "accepted", {"j1": "solvable", "j2": "solvable", "j3": "solvable"})])
    reviewed = pd.DataFrame([{"item_id": "t1", "human_label": "solvable", "human_output": "", "note": "",
                              "reviewer": "r"}])
    r = resolve(items, cons, TAX, gate_scope="changes", reviewed=reviewed).set_index("item_id")
    assert r.loc["t1", "label_after"] == "solvable" and r.loc["t1", "output_after"] is None
    sets = build_train_sets(items, r.reset_index(), TAX, reviewed=reviewed)
    cur = sets[sets["variant"] == "curated"]
    assert cur["item_id"].tolist() == ["t2"] and sets.attrs["solvable_without_query"] == ["t1"]
    assert not sets.loc[sets["label"] == "solvable", "output"].isna().any()
    # the logged variants keep the logged refusal as it was
    assert sets.loc[(sets["variant"] == "naive_merge") & (sets["item_id"] == "t1"), "label"].tolist() == ["ambiguous"]


def test_curated_only_train_sets_and_policy_summary_match_the_full_build():
    """build_train_sets(variants=("curated",)) is the curated slice of the full build (what the policy comparison
    reads, without stacking a large corpus three times); compare_policies is policy_summary per column, and
    compare_gate_policies the same over every policy."""
    from flywheel_lib.curation.datasets import build_train_sets
    from flywheel_lib.curation.diagnostics import (
        compare_gate_policies,
        compare_policies,
        policy_summary,
        production_pool,
    )

    res = resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="changes", contradiction="majority")
    full = build_train_sets(ITEMS, res, TAX)
    only = build_train_sets(ITEMS, res, TAX, variants=("curated",))
    assert set(full["variant"]) == {"production_only", "naive_merge", "curated"}
    pd.testing.assert_frame_equal(only, full[full["variant"] == "curated"].reset_index(drop=True))
    with pytest.raises(ValueError, match="unknown variants"):
        build_train_sets(ITEMS, res, TAX, variants=("curated", "cureted"))
    pols = {"all": resolve(ITEMS, CONSENSUS, TAX, conflicts=CONFLICTS, gate_scope="all"), "changes/majority": res}
    table = compare_policies(pols, ITEMS, TAX, complexity=query_complexity)
    pool = production_pool(ITEMS)
    for name, r in pols.items():
        one = pd.Series(policy_summary(r, ITEMS, TAX, complexity=query_complexity, pool=pool))
        assert table[name].dropna().to_dict() == one.dropna().to_dict()
    assert table.loc["in curated set", "all"] != table.loc["in curated set", "changes/majority"]
    # every policy, one table at a time: the same columns, and the kept policy's resolutions
    every, kept = compare_gate_policies(ITEMS, CONSENSUS, TAX, keep="changes/majority", conflicts=CONFLICTS,
                                        complexity=query_complexity)
    assert list(every.columns) == ["all", "changes/unanimous", "changes/majority", "changes/any"]
    pd.testing.assert_frame_equal(every[list(pols)], table)
    pd.testing.assert_frame_equal(kept, res)
    with pytest.raises(ValueError, match="keep must be one of"):
        compare_gate_policies(ITEMS, CONSENSUS, TAX, keep="changes/most")
