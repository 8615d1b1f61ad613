"""A world that drifts: the schedule changes traffic across cycles, the drift slice holds no traffic row, labels
accumulate into the corpus, the example store changes a head's decision, and the two-slice promotion rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from flywheel_lib.curation.datasets import carry_corpus
from flywheel_lib.domains.segments.drift import DriftScheduleError, load_drift_schedule
from flywheel_lib.evaluation.drift import (
    SliceReport,
    choose_candidate,
    decide_promotion_slices,
    scenario_patterns,
    slice_pass_rates,
)
from flywheel_lib.training.datasets import near_duplicate_key

SCHEDULE = "params/drift/segments.yaml"


@pytest.fixture(scope="module")
def sched():
    return load_drift_schedule(SCHEDULE)


def test_the_default_schedule_has_three_cycles_of_new_scenarios(sched):
    seen = sched.scenarios(upto=3)
    assert sched.n_cycles == 3 and sorted(seen["cycle"].unique()) == [1, 2, 3]
    for c in (1, 2, 3):  # every cycle brings refusal scenarios of every kind and new frames
        cats = set(seen.loc[seen["cycle"] == c, "category"])
        assert cats == {"missing_capability", "ambiguous", "needs_context", "solvable"}
    shares = [sched.cycles[c].new_share for c in (1, 2, 3)]
    assert shares == sorted(shares) and shares[0] < shares[-1]


def _write(tmp_path, data) -> str:
    p = tmp_path / "drift.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["cycles"].pop(2), "cycles"),                                               # a gap: 1, 3
    (lambda d: d["cycles"][3]["unknown_attributes"].update(
        shoe_size=d["cycles"][1]["unknown_attributes"]["shoe_size"]), "already appeared"),  # a scenario twice
    (lambda d: d["cycles"][1]["frames"].append({"id": "tr_x", "text": "no slot"}), "frames"),
    (lambda d: d["slice_frames"].append({"id": "tr_any", "text": "x {c}"}), "held out"),    # slice reuses traffic
    (lambda d: d["cycles"][1].update(new_share=1.5), "new_share"),
    (lambda d: d["cycles"][1].update(surprise=1), "surprise"),
    (lambda d: d["cycles"][1].update(capability_changes={"shoe_size": {"queries": {"x": "y"}}}),  # not earlier
     "capability_changes.shoe_size: not an unknown attribute of an earlier cycle"),
    (lambda d: d["cycles"][3]["capability_changes"]["shoe_size"]["queries"].pop("have small feet"),
     "missing \\['have small feet'\\]"),
    (lambda d: d["cycles"][3].update(capability_changes={"vip_ish": {"queries": {"are sort of VIP": "x"}}}),
     "capability_changes.vip_ish: not an unknown"),  # a vague word is no attribute to support
])
def test_a_bad_schedule_names_its_file_and_key(tmp_path, edit, where):
    data = yaml.safe_load(Path(SCHEDULE).read_text())
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(DriftScheduleError, match=where) as e:
        load_drift_schedule(path)
    assert "drift.yaml" in str(e.value)


def test_the_schedule_changes_traffic_across_cycles(dom, sched):
    t = {c: dom.traffic_requests(seed=7, cycle=c, n=600, schedule=sched) for c in (1, 2, 3)}
    by = {c: set(x.loc[x["scenario"] == "new", "scenario_id"]) for c, x in t.items()}
    seen = sched.scenarios(upto=3).set_index("scenario_id")["cycle"]
    for c in (1, 2, 3):  # cycle c's traffic holds its own new scenarios and none from later cycles
        assert {s for s in seen.index if seen[s] == c and not s.startswith("frame:")} <= by[c]
        assert all(seen[s] <= c for s in by[c])
    new_share = [float((t[c]["scenario"] == "new").mean()) for c in (1, 2, 3)]
    assert new_share[0] < new_share[1] < new_share[2]
    frames = {c: set(t[c]["family"]) for c in t}
    assert "tr_who_all" in frames[3] and "tr_who_all" not in frames[1] | frames[2]
    # a schedule the workbench was not tuned on: one cycle, one scenario, every request new
    data = {"name": "tiny", "slice_frames": [{"id": "sl_x", "text": "all clients who {c}"}],
            "cycles": {1: {"new_share": 0.9, "fresh_share": 1.0, "frames": [{"id": "tr_y", "text": "ppl who {c}"}],
                           "unknown_attributes": {"blood_type": {"phrasings": ["have blood type O", "are type A+"],
                                                                 "emitted": "customer_tags CONTAINS 'o'"}}}}}
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = f"{d}/tiny.yaml"
        Path(p).write_text(yaml.safe_dump(data))
        tiny = dom.traffic_requests(seed=7, cycle=1, n=200, schedule=p)
    new = tiny[tiny["scenario"] == "new"]
    assert len(new) > 150 and set(new["scenario_id"]) == {"missing_capability:blood_type"}
    assert set(new["true_label"]) == {"missing_capability"}


def test_the_drift_slice_holds_no_traffic_row_and_grows_by_cycle(dom, sched):
    traffic = pd.concat([dom.traffic_requests(seed=7, cycle=c, n=800, schedule=sched) for c in (1, 2)])
    s1 = dom.drift_slice(seed=7, upto=1, schedule=sched, n_per_cycle=60, exclude=traffic["text"])
    s2 = dom.drift_slice(seed=7, upto=2, schedule=sched, n_per_cycle=60, exclude=traffic["text"])
    keys = set(map(near_duplicate_key, traffic["text"]))
    assert not keys & set(map(near_duplicate_key, s2["text"]))
    assert s2["text"].map(near_duplicate_key).is_unique
    assert len(s1) == 60 and len(s2) == 120
    pd.testing.assert_frame_equal(s2[s2["scenario_cycle"] == 1].reset_index(drop=True), s1)
    assert set(s2["scenario_id"]) == set(sched.scenarios(upto=2)["scenario_id"])
    assert (s2["label"] == s2["true_label"]).all()
    solv = s2[s2["label"] == "solvable"]
    assert len(solv) and all(dom.check_output(q).valid for q in solv["output"])
    slice_frames = {f.id for f in sched.slice_frames}
    refusals = s2[~s2["scenario_id"].str.startswith("frame:")]
    assert set(refusals["family"]) <= slice_frames  # refusal scenarios appear in frames no traffic uses


def test_a_capability_change_switches_the_truth_from_its_cycle_on(dom, sched):
    """Shoe sizes become supported in cycle 3: the same requests, refusals before, answerable with a query after."""
    assert sched.capability_changes(upto=2).empty
    assert sched.capability_changes(upto=3)["key"].tolist() == ["shoe_size"]
    t = {c: dom.traffic_requests(seed=7, cycle=c, n=600, schedule=sched) for c in (2, 3)}
    before = t[2][t[2]["scenario_id"] == "missing_capability:shoe_size"]
    after = t[3][t[3]["scenario_id"] == "missing_capability:shoe_size"]
    assert len(before) and len(after)
    assert set(before["true_label"]) == {"missing_capability"} and before["gold_output"].isna().all()
    assert set(after["true_label"]) == {"solvable"} and (after["gold_output"] == after["supported_output"]).all()
    assert all(dom.check_output(q).valid for q in after["gold_output"])
    assert before["supported_output"].str.contains("shoe-size-").all()  # the meaning once supported, kept as truth
    # the drift slice's truth is the world's as of the cycle it scores; its texts do not change
    s2 = dom.drift_slice(seed=7, upto=2, schedule=sched, n_per_cycle=60)
    s3 = dom.drift_slice(seed=7, upto=3, schedule=sched, n_per_cycle=60)
    shoe2 = s2[s2["scenario_id"] == "missing_capability:shoe_size"]
    shoe3 = s3[s3["scenario_id"] == "missing_capability:shoe_size"]
    assert shoe2["text"].tolist() == shoe3["text"].tolist()
    assert set(shoe2["label"]) == {"missing_capability"} and set(shoe3["label"]) == {"solvable"}
    other = s3[s3["scenario_id"] == "missing_capability:zodiac_sign"]
    assert set(other["label"]) == {"missing_capability"}  # what did not change keeps its truth


def test_a_capability_change_relabels_the_old_refusals(dom, sched):
    """A later cycle's corpus holds refusals of shoe-size requests from cycle 1's traffic: once the product supports
    shoe sizes they are stale; the curated sets get them back answerable with their query (from the reviewer's
    answers), the naive merge keeps them as they were, and with nobody to answer they wait out of training."""
    from flywheel_lib.curation.datasets import TRAIN_COLUMNS
    from flywheel_lib.curation.stale import find_stale, relabel_stale, truth_answers

    t1 = dom.traffic_requests(seed=7, cycle=1, n=400, schedule=sched)
    refusals = t1[t1["true_label"] != "solvable"].head(60)
    assert (refusals["reason_key"] == "shoe_size").sum() >= 3
    rows = refusals.assign(label=refusals["true_label"], output=None).reindex(columns=TRAIN_COLUMNS)
    corpus = pd.concat([rows.assign(variant="curated"), rows.assign(variant="naive_merge")], ignore_index=True)
    changes = sched.capability_changes(upto=3)
    stale = find_stale(corpus, changes)
    shoe = corpus["reason_key"] == "shoe_size"
    assert stale.equals(shoe & (corpus["variant"] == "curated"))
    # the phrasing alone finds a stale row too (user data has no reason keys)
    assert find_stale(corpus.assign(reason_key=""), changes).equals(stale)

    answers = truth_answers(corpus.loc[stale, "item_id"], t1, changes, solvable_id="solvable")
    new, summary = relabel_stale(corpus, changes, answers, solvable_id="solvable")
    assert summary.found == int(stale.sum()) == summary.relabelled and summary.waiting == 0
    cur = new[(new["variant"] == "curated") & (new["reason_key"] == "shoe_size")]
    assert set(cur["label"]) == {"solvable"}
    truth = t1.set_index("item_id")["supported_output"]
    assert (cur["output"].to_numpy() == truth.reindex(cur["item_id"]).to_numpy()).all()
    naive = new[(new["variant"] == "naive_merge") & (new["reason_key"] == "shoe_size")]
    assert set(naive["label"]) == {"missing_capability"} and len(naive) == len(cur)
    assert len(new) == len(corpus)
    untouched = new[new["reason_key"] != "shoe_size"].sort_values(["variant", "item_id"]).reset_index(drop=True)
    expected = corpus[~shoe].sort_values(["variant", "item_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(untouched, expected)

    # people, no answers yet: the stale rows leave the curated set and wait for review
    waiting, summary = relabel_stale(corpus, changes, None, solvable_id="solvable")
    assert summary.relabelled == 0 and summary.waiting == int(stale.sum())
    assert not ((waiting["variant"] == "curated") & (waiting["reason_key"] == "shoe_size")).any()
    assert set(summary.waiting_rows["item_id"]) == set(corpus.loc[stale, "item_id"])
    # an answer of solvable without a query cannot teach anything: still waiting
    blank = answers.assign(output="")
    _, summary = relabel_stale(corpus, changes, blank, solvable_id="solvable")
    assert summary.waiting == int(stale.sum())


def test_a_scenario_labelled_in_cycle_k_is_in_cycle_k_plus_1s_corpus():
    cols = ["item_id", "variant", "text", "label", "output", "source", "reason_key"]
    parent = pd.DataFrame([["s1", "curated", "customers who spent $10", "solvable", "amount_spent > 10", "seed", ""],
                           ["t1", "curated", "any customers who wear shoe size 9?", "missing_capability", None,
                            "production", "shoe_size"]], columns=cols)
    new = pd.DataFrame([["t2", "curated", "folks that are Catholic, please", "missing_capability", None,
                         "production", "religion"]], columns=cols)
    from flywheel_lib.curation.datasets import TRAIN_COLUMNS

    grown = carry_corpus(new.reindex(columns=TRAIN_COLUMNS), parent.reindex(columns=TRAIN_COLUMNS))
    assert {"s1", "t1", "t2"} == set(grown["item_id"])  # accumulated, never replaced


@pytest.mark.slow
def test_the_store_changes_a_head_decision_for_a_stored_neighbour(dom):
    from flywheel_lib.levers import ExampleRetriever
    from flywheel_lib.levers.store import append_examples
    from flywheel_lib.levers.store_head import StoreConsultedHead, consult_store
    from flywheel_lib.training.head import DecisionHead

    data = dom.generate(seed=7, n_production=200, n_seed_solvable=80, n_seed_refusal=80, n_eval=20, n_conflicts=5)
    head = DecisionHead(encoder="minilm").fit(data["seed"]["text"].tolist(), data["seed"]["label"].tolist())
    asks = ["customers who drive a Tesla", "show me customers who own an electric car"]
    control = "customers who spent more than $500"
    labels, _, _ = head.decide(asks + [control])
    stored = pd.DataFrame({"item_id": ["t1", "t2"], "text": ["any customers who drive a Tesla?",
                                                            "customers that own an electric car"],
                           "label": ["missing_capability"] * 2, "output": [None, None]})
    store = append_examples(None, stored, cycle=2)
    sh = StoreConsultedHead(head, ExampleRetriever(store, k=3), min_score=0.7, min_share=0.6)
    got, p_refuse, best = sh.decide(asks + [control])
    assert got[:2] == ["missing_capability"] * 2 and all(p_refuse[:2] == 1.0)
    assert sh.consulted_[2] is None and got[2] == labels[2]  # an unrelated request: the head decides as before
    assert sh.summary()["decided_by_store"] == 2
    # a stored answerable neighbour does not withdraw the head's refusal ("refusals", the default); with "both" it does
    seed_refusals = data["seed"].loc[data["seed"]["label"] != "solvable", "text"].tolist()
    refused = next(t for t, y in zip(seed_refusals, head.decide(seed_refusals)[0]) if y != "solvable")
    answerable = append_examples(None, pd.DataFrame({"item_id": ["s1"], "text": [f"show me {refused} now"],
                                                     "label": ["solvable"],
                                                     "output": ["amount_spent > 0"]}), cycle=2)
    keep = StoreConsultedHead(head, ExampleRetriever(answerable, k=3), min_score=0.7, min_share=0.6)
    both = StoreConsultedHead(head, ExampleRetriever(answerable, k=3), min_score=0.7, min_share=0.6, overrule="both")
    assert both.decide([refused])[0] == ["solvable"] and both.summary()["decided_by_store"] == 1
    assert keep.decide([refused])[0] == head.decide([refused])[0] != ["solvable"]
    assert keep.consulted_ == [None] and keep.summary()["decided_by_store"] == 0
    with pytest.raises(ValueError, match="overrule"):
        StoreConsultedHead(head, ExampleRetriever(answerable, k=3), overrule="answers")

    class Gen:  # consult_store swaps a generator's head and gives it back
        heads_ = {"deployed_prev": head}
    g = Gen()
    with consult_store(g, "deployed_prev", sh):
        assert g.heads_["deployed_prev"] is sh
    assert g.heads_["deployed_prev"] is head


def _outcomes(variant_rates: dict[str, list[float]], frr: dict[str, list[float]] | None = None) -> pd.DataFrame:
    rows = []
    for v, xs in variant_rates.items():
        for i, x in enumerate(xs):
            rows.append({"item_id": i, "variant": v, "pass_rate": x,
                         "false_refusal_rate": (frr or {}).get(v, [0.0] * len(xs))[i]})
    return pd.DataFrame(rows)


def test_the_store_gap_share_is_also_measured_on_the_newest_scenarios():
    from flywheel_lib.evaluation.drift import SliceReport, slice_manifest_metrics

    # items 0-9 come from the scenarios of the cycle before, 10-19 from older ones the deployed model learned
    drift = _outcomes({"deployed_prev": [0.0] * 10 + [1.0] * 10, "curated": [1.0] * 10 + [1.0] * 10,
                       "deployed_store": [1.0] * 6 + [0.0] * 4 + [1.0] * 8 + [0.0] * 2})
    report = SliceReport(predictions=drift.assign(passed=drift["pass_rate"].astype(bool)), outcomes=drift,
                         pass_rates=pd.DataFrame(columns=["variant", "value", "lo", "hi", "k", "n"]),
                         by_scenario=pd.DataFrame())
    original = _outcomes({"deployed_prev": [1.0] * 5, "curated": [1.0] * 5})
    m = slice_manifest_metrics(original, report, candidate="curated", newest=set(range(10)))
    assert m["store_gap_share"] == pytest.approx(0.4)       # (6 - 2) / 10 over the whole slice
    assert m["store_gap_share_new"] == pytest.approx(0.6)   # 6 / 10 where the scenarios are new
    assert "store_gap_share_new" not in slice_manifest_metrics(original, report, candidate="curated")


def test_promotion_weighs_both_slices():
    n = 60
    original = _outcomes({"deployed_prev": [1.0] * 40 + [0.0] * 20, "curated": [1.0] * 40 + [0.0] * 20})
    drift_better = _outcomes({"deployed_prev": [0.0] * n, "curated": [1.0] * 30 + [0.0] * 30})
    d = decide_promotion_slices(original, drift_better, candidate="curated", baseline="deployed_prev", margin=0.02)
    assert d["promoted"] and d["drift"]["diff"] == 0.5
    worse = _outcomes({"deployed_prev": [1.0] * 40 + [0.0] * 20, "curated": [1.0] * 36 + [0.0] * 24})
    d = decide_promotion_slices(worse, drift_better, candidate="curated", baseline="deployed_prev", margin=0.02)
    assert not d["promoted"] and "original" in d["reason"]
    same = _outcomes({"deployed_prev": [1.0] * 30 + [0.0] * 30, "curated": [1.0] * 31 + [0.0] * 29})
    d = decide_promotion_slices(original, same, candidate="curated", baseline="deployed_prev", margin=0.02)
    assert not d["promoted"] and "drift slice" in d["reason"]
    d = decide_promotion_slices(original, None, candidate="curated", baseline="deployed_prev")
    assert not d["promoted"] and "rule" not in d  # no drift slice: the first cycle's rule


def test_scenario_patterns_say_what_the_candidate_fixed():
    items = pd.DataFrame({"item_id": range(8), "scenario_id": ["a"] * 4 + ["b"] * 4, "scenario_cycle": 1})
    pred = pd.DataFrame({"item_id": list(range(8)) * 2, "variant": ["dep"] * 8 + ["cand"] * 8,
                         "passed": [False] * 4 + [True] * 4 + [True] * 3 + [False] + [False] * 4})
    p = scenario_patterns(pred, items, deployed="dep", candidate="cand").set_index("scenario_id")
    assert p.loc["a", "status"] == "fixed" and p.loc["b", "status"] == "broken"
    assert p.loc["a", "candidate"] == 0.75 and p.loc["a", "n"] == 4


def test_the_better_of_two_candidates_is_kept_and_the_choice_says_why():
    original = _outcomes({"curated": [1.0] * 30 + [0.0] * 30, "curated_continued": [1.0] * 20 + [0.0] * 40})
    pred = pd.DataFrame({"item_id": list(range(10)) * 2, "variant": ["curated"] * 10 + ["curated_continued"] * 10,
                         "passed": [True] * 4 + [False] * 6 + [True] * 7 + [False] * 3})
    drift = SliceReport(pred, pd.DataFrame(), slice_pass_rates(pred), pd.DataFrame())
    chosen, why = choose_candidate(original, drift, ["curated", "curated_continued"])
    assert chosen == "curated_continued" and why["by"] == "drift" and why["pass_rates"]["curated"] == 0.4
    chosen, why = choose_candidate(original, None, ["curated", "curated_continued"])  # no drift slice
    assert chosen == "curated" and why["by"] == "original"


def test_the_oracle_relabels_the_candidates_rows_with_the_truth():
    from flywheel_lib.curation.datasets import oracle_train_set

    ts = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "text": ["w", "x", "y", "z"],
                       "label": ["solvable", "solvable", "ambiguous", "solvable"],
                       "output": ["amount_spent > 1", "amount_spent > 2", None, "amount_spent > 4"],
                       "reason_key": [""] * 4, "variant": "curated"})
    older = pd.DataFrame({"item_id": ["c"], "true_label": ["solvable"], "gold_output": ["number_of_orders = 1"]})
    newer = pd.DataFrame({"item_id": ["b"], "true_label": ["missing_capability"], "gold_output": [None]})
    o = oracle_train_set(ts, [newer, older]).set_index("item_id")
    assert (o["variant"] == "oracle").all() and list(o.index) == ["a", "b", "c", "d"]
    assert o.loc["b", "label"] == "missing_capability" and o.loc["b", "output"] is None
    assert o.loc["c", "label"] == "solvable" and o.loc["c", "output"] == "number_of_orders = 1"
    assert o.loc["a", "label"] == "solvable" and o.loc["a", "output"] == "amount_spent > 1"  # unknown: kept
    with pytest.raises(ValueError, match="no truth table"):
        oracle_train_set(ts, [pd.DataFrame({"item_id": ["a"]})])


def test_the_gain_since_the_first_cycle_and_the_oracles_share():
    from flywheel_lib.evaluation.drift import versus_first_cycle

    oc = _outcomes({"first_cycle": [0.0] * 40, "deployed_prev": [1.0] * 10 + [0.0] * 30,
                    "curated": [1.0] * 20 + [0.0] * 20, "oracle": [1.0] * 30 + [0.0] * 10})
    rep = SliceReport(pd.DataFrame({"variant": ["x"]}), oc, pd.DataFrame(), pd.DataFrame())
    g = versus_first_cycle(rep, "curated")
    assert g["diff_drift_vs_first_cycle"] == 0.5 and g["p_drift_vs_first_cycle"] < 0.001
    assert g["oracle_gap"] == 0.75 and g["oracle_gap_closed"] == pytest.approx(0.6667, abs=1e-4)
    cycle2 = SliceReport(pd.DataFrame({"variant": ["x"]}), oc[oc["variant"] != "first_cycle"], pd.DataFrame(),
                         pd.DataFrame())
    assert versus_first_cycle(cycle2, "curated")["diff_drift_vs_first_cycle"] == 0.25  # vs the deployed model
    assert versus_first_cycle(cycle2, "deployed_prev") == {}  # kept the deployed model: no gain to state


def test_scenario_entry_says_how_each_scenario_entered_the_corpus():
    from flywheel_lib.flywheel.slices import scenario_entry

    truth = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "true_label": ["ambiguous"] * 3 + ["solvable"],
                          "scenario_id": ["ambiguous:x"] * 3 + [""]})
    truth = pd.concat([truth, pd.DataFrame({"item_id": ["e"], "true_label": ["ambiguous"],
                                            "scenario_id": ["ambiguous:x"]})], ignore_index=True)
    consensus = pd.DataFrame({"item_id": ["a", "b", "c", "e"],
                              "status": ["accepted", "disagreement", "disagreement", "disagreement"]})
    corpus = pd.DataFrame({"item_id": ["a", "b", "e"], "label": ["ambiguous", "solvable", "ambiguous"]})
    e = scenario_entry(truth, consensus, corpus, reviewed={"e"}).set_index("scenario_id").loc["ambiguous:x"]
    # a: the panel; e: a person; b: the logged label kept without either; c: left out
    assert (e["judged"], e["panel"], e["review"], e["kept"], e["left_out"], e["label_right"]) == (4, 1, 1, 1, 1, 2)
    assert scenario_entry(truth.drop(columns="scenario_id"), consensus, corpus).empty
