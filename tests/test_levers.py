"""Levers 1 and 4 and the arena: the example store, preference pairs, pairwise judging, Bradley-Terry ratings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.domains import get_domain
from flywheel_lib.levers import (
    BradleyTerry,
    ExampleRetriever,
    LLMPairwiseJudge,
    OfflinePairwiseJudge,
    append_examples,
    build_preference_pairs,
    fewshot_prompts,
    judge_battles,
    known_queries,
    parse_pairwise,
    position_bias,
    store_growth,
    to_hf_folder,
    to_openai_jsonl,
)

TAX = "params/taxonomy/segments.yaml"


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy(TAX)


@pytest.fixture(scope="module")
def dom():
    return get_domain("segments")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path / "cache"))


def _rows(specs):
    return pd.DataFrame([dict(item_id=i, text=t, label=lab, output=o, reason_key=rk, source=src)
                         for i, t, lab, o, rk, src in specs])


CYCLE1 = _rows([
    ("a1", "customers who spent over 500 dollars", "solvable", "amount_spent > 500", "amount_spent", "seed"),
    ("a2", "customers with more than three orders", "solvable", "number_of_orders > 3", "number_of_orders", "seed"),
    ("a3", "customers by their favourite colour", "missing_capability", None, "favourite_colour", "seed"),
])
CYCLE2 = _rows([
    ("b1", "shoppers by shoe size", "missing_capability", None, "shoe_size", "traffic"),
    ("a1", "customers who spent over 500 dollars", "solvable", "amount_spent > 500", "amount_spent", "seed"),
])


def test_store_appends_per_cycle_and_never_edits(tax):
    s1 = append_examples(None, CYCLE1, cycle=1, taxonomy=tax, run_id="r1", added_at="2026-01-01T00:00:00+00:00")
    s2 = append_examples(s1, CYCLE2, cycle=2, taxonomy=tax, run_id="r2", added_at="2026-02-01T00:00:00+00:00")
    assert len(s1) == 3 and len(s2) == 4                       # a1 is already stored: only b1 is new
    pd.testing.assert_frame_equal(s2.iloc[:3].reset_index(drop=True), s1)   # cycle 1's rows unchanged, first
    new = s2.iloc[3]
    assert (new.item_id, new.cycle, new.source, new.run_id) == ("b1", 2, "traffic", "r2")
    assert new.added_at == "2026-02-01T00:00:00+00:00" and new.taxonomy_version == tax.version_id
    assert new.target.startswith("REFUSE missing_capability: The store does not record shoe size.")
    assert s2.loc[s2.item_id == "a1", "target"].item() == "amount_spent > 500"
    g = store_growth(s2).set_index(["cycle", "label"])
    assert g.loc[(2, "missing_capability"), "added"] == 1 and g.loc[(2, "missing_capability"), "total"] == 2
    assert g.loc[(2, "solvable"), "added"] == 0 and g.loc[(2, "solvable"), "total"] == 2


def test_label_origins_name_who_decided_each_label():
    from flywheel_lib.levers.cycle import label_origins

    consensus = pd.DataFrame({"item_id": ["p", "h", "t", "k"], "status": ["accepted", "accepted", "disagreement",
                                                                        "disagreement"]})
    res = pd.DataFrame({"item_id": ["h", "t", "k"], "decided_by": ["human", "tree", "tree"],
                        "label_before": ["solvable", "solvable", "solvable"],
                        "label_after": ["missing_capability", "missing_capability", "solvable"]})
    got = label_origins(pd.Series(["p", "h", "t", "k", "s"]), consensus, res)
    # a person outranks the panel; the tree changed t's label; k kept its logged label; s was never questioned
    assert got == ["panel", "review", "tree", "logged", "corpus"]
    assert label_origins(pd.Series(["p"]), None, None) == ["corpus"]


def test_the_decision_consults_agreed_labels_of_the_new_rows_only(tax):
    from flywheel_lib.levers.cycle import consulted_rows

    s1 = append_examples(None, CYCLE1, cycle=1, taxonomy=tax)
    traffic = _rows([("b1", "shoppers by shoe size", "missing_capability", None, "shoe_size", "traffic"),
                     ("b2", "shoppers by hat size", "solvable", "amount_spent > 0", None, "traffic"),
                     ("b3", "shoppers by glove size", "missing_capability", None, "glove_size", "traffic")])
    traffic["label_origin"] = ["review", "logged", "panel"]
    s2 = append_examples(s1, traffic, cycle=2, taxonomy=tax)
    assert list(s2["label_origin"]) == ["", "", "", "review", "logged", "panel"]
    assert set(consulted_rows(s2)["item_id"]) == {"b1", "b3"}            # the model's own kept log is left out
    assert set(consulted_rows(s2, admit="all")["item_id"]) == {"b1", "b2", "b3"}
    assert len(consulted_rows(s2, scope="all")) == 5
    old = s2.drop(columns="label_origin")                                 # a store from before the column
    assert len(consulted_rows(old)) == 3
    assert list(append_examples(old, CYCLE2, cycle=3, taxonomy=tax)["label_origin"]) == [""] * 6
    with pytest.raises(ValueError, match="unknown label_origin .'judge'."):
        append_examples(s1, traffic.assign(label_origin="judge"), cycle=2, taxonomy=tax)
    with pytest.raises(ValueError, match="admit 'agreed' or 'all'"):
        consulted_rows(s2, admit="panel")


def test_retrieval_returns_nearest_and_never_the_item_itself(tax):
    store = append_examples(None, pd.concat([CYCLE1, CYCLE2.iloc[:1]]), cycle=1, taxonomy=tax)
    ret = ExampleRetriever(store, k=2)
    queries = pd.DataFrame({"item_id": ["q1", "a1", "q3"],
                            "text": ["clients who spent more than 500 dollars",
                                     "customers who spent over 500 dollars",          # a stored item itself
                                     "customers grouped by shoe size"]})
    shots = ret.neighbours(queries)
    assert shots[0]["item_id"].iloc[0] == "a1"
    assert "a1" not in set(shots[1]["item_id"]) and len(shots[1]) == 2
    assert shots[2]["item_id"].iloc[0] == "b1"
    assert all(list(s["score"]) == sorted(s["score"], reverse=True) for s in shots)
    # The same text under another id is the item itself too.
    same = ret.neighbours(pd.DataFrame({"item_id": ["zz"], "text": ["Customers who spent over 500 dollars "]}))
    assert "a1" not in set(same[0]["item_id"])
    prompts = fewshot_prompts(queries, shots)
    assert prompts[0].endswith("Request: clients who spent more than 500 dollars")
    assert "Answer: amount_spent > 500" in prompts[0]


TRAFFIC = pd.DataFrame([
    # item, text, what the model did (label, output, raw answer)
    dict(item_id="t1", text="customers by shoe size", label="solvable", output="amount_spent > 100000000",
         answer="amount_spent > 100000000"),                          # refusal accepted; empty query
    dict(item_id="t2", text="customers by zodiac sign", label="solvable", output="amount_spent > 500",
         answer="amount_spent > 500"),                                # refusal accepted; query that selects some
    dict(item_id="t3", text="revenue last week", label="ambiguous", output=None,
         answer="REFUSE ambiguous: unclear."),                        # wrong_skill accepted; wrong category
    dict(item_id="t4", text="customers who spent over 500 dollars", label="wrong_skill", output=None,
         answer="REFUSE wrong_skill: no."),                           # solvable accepted, query known; refused
    dict(item_id="t5", text="customers with more than three orders", label="solvable", output="amount_spent > 500",
         answer="amount_spent > 500"),                                # solvable, known query; wrong query
    dict(item_id="t6", text="customers by eye colour", label="missing_capability", output=None,
         answer="REFUSE missing_capability: no."),                    # right refusal: no pair
    dict(item_id="t7", text="customers in paris", label="needs_context", output=None,
         answer="REFUSE needs_context: which?"),                      # solvable accepted, no known query: no pair
    dict(item_id="t8", text="customers by height", label="solvable", output="amount_spent > 100000000",
         answer="amount_spent > 100000000"),                          # disagreement in the panel: no pair
]).assign(source="traffic")
CONSENSUS = pd.DataFrame([
    dict(item_id="t1", category="missing_capability", status="accepted", reason_key="shoe_size"),
    dict(item_id="t2", category="missing_capability", status="accepted", reason_key="zodiac_sign"),
    dict(item_id="t3", category="wrong_skill", status="accepted", reason_key="analytics"),
    dict(item_id="t4", category="solvable", status="accepted", reason_key="amount_spent"),
    dict(item_id="t5", category="solvable", status="accepted", reason_key="number_of_orders"),
    dict(item_id="t6", category="missing_capability", status="accepted", reason_key="eye_colour"),
    dict(item_id="t7", category="solvable", status="accepted", reason_key="city"),
    dict(item_id="t8", category=None, status="disagreement", reason_key=None),
])


def test_pairs_from_hand_made_traffic(tax, dom):
    pairs = build_preference_pairs(TRAFFIC, CONSENSUS, taxonomy=tax, domain=dom, queries=known_queries(CYCLE1))
    got = {r.item_id: (r.kind, r.chosen, r.rejected) for r in pairs.itertuples()}
    sugg = tax["missing_capability"].suggestion
    assert got == {
        "t1": ("refusal_vs_empty_query",
               f"REFUSE missing_capability: The store does not record shoe size. Try: {sugg}",
               "amount_spent > 100000000"),
        "t2": ("refusal_vs_query",
               f"REFUSE missing_capability: The store does not record zodiac sign. Try: {sugg}",
               "amount_spent > 500"),
        "t3": ("refusal_vs_wrong_category",
               f"REFUSE wrong_skill: This is a task for the analytics skill, not a segment. Try: "
               f"{tax['wrong_skill'].suggestion}",
               "REFUSE ambiguous: unclear."),
        "t4": ("query_vs_refusal", "amount_spent > 500", "REFUSE wrong_skill: no."),
        "t5": ("query_vs_wrong_query", "number_of_orders > 3", "amount_spent > 500"),
    }
    # Seed rows are not the model's answers: never paired. A later cycle's sampled traffic (source production)
    # without the raw answer text: the rejected side is the logged query, or the logged refusal's decision.
    assert build_preference_pairs(TRAFFIC.assign(source="seed"), CONSENSUS, taxonomy=tax).empty
    logged = build_preference_pairs(TRAFFIC.drop(columns="answer").assign(source="production"), CONSENSUS,
                                    taxonomy=tax, domain=dom, queries=known_queries(CYCLE1))
    assert dict(zip(logged["item_id"], logged["rejected"])) == {
        "t1": "amount_spent > 100000000", "t2": "amount_spent > 500", "t3": "REFUSE ambiguous",
        "t4": "REFUSE wrong_skill", "t5": "amount_spent > 500"}


def test_dpo_pairs_leave_the_refusal_decision_to_a_decision_head(tax, dom):
    from flywheel_lib.levers import dpo_pairs

    pairs = build_preference_pairs(TRAFFIC, CONSENSUS, taxonomy=tax, domain=dom, queries=known_queries(CYCLE1))
    assert dpo_pairs(pairs, "auto", has_head=False).equals(pairs)
    assert dpo_pairs(pairs, "all", has_head=True).equals(pairs)
    with_head = dpo_pairs(pairs, "auto", has_head=True)
    assert with_head["item_id"].tolist() == ["t4", "t5"]  # chosen: a query; the refusal pairs are the head's business
    assert dpo_pairs(pairs, "query").equals(with_head)
    with pytest.raises(ValueError, match="dpo_pairs must be one of"):
        dpo_pairs(pairs, "refusals")


def test_pair_exports(tax, dom, tmp_path):
    from datasets import load_from_disk

    pairs = build_preference_pairs(TRAFFIC, CONSENSUS, taxonomy=tax, domain=dom, queries=known_queries(CYCLE1))
    lines = [json.loads(x) for x in to_openai_jsonl(pairs, tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == len(pairs) == 5
    assert lines[0]["input"]["messages"][-1] == {"role": "user", "content": pairs["prompt"].iloc[0]}
    assert lines[0]["preferred_output"] == [{"role": "assistant", "content": pairs["chosen"].iloc[0]}]
    assert lines[0]["non_preferred_output"] == [{"role": "assistant", "content": pairs["rejected"].iloc[0]}]
    ds = load_from_disk(str(to_hf_folder(pairs, tmp_path / "hf")))
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and ds[4]["chosen"] == "number_of_orders > 3"


class Scripted:
    """A pairwise judge answering from a script keyed by (first answer, second answer)."""

    def __init__(self, name, script):
        self.name, self.script = name, script

    def compare(self, request, first, second):
        return self.script[(first, second)]


def test_order_swap_and_tie_rule():
    req = pd.DataFrame({"item_id": ["r1"], "text": ["x"], "label": ["solvable"]})
    answers = {"m1": ["A"], "m2": ["B"]}
    consistent = Scripted("consistent", {("A", "B"): "first", ("B", "A"): "second"})   # prefers A both times
    first_bias = Scripted("first_bias", {("A", "B"): "first", ("B", "A"): "first"})    # always position 1
    half = Scripted("half", {("A", "B"): "tie", ("B", "A"): "first"})                   # tie one way, B the other
    b = judge_battles(req, answers, [consistent, first_bias, half]).set_index("judge")
    assert b.loc["consistent", "winner"] == "m1" and not b.loc["consistent", "flipped"]
    assert b.loc["first_bias", "winner"] == "tie" and b.loc["first_bias", "flipped"]
    assert b.loc["half", "winner"] == "tie" and not b.loc["half", "flipped"]
    bias = position_bias(b.reset_index()).set_index("judge")
    assert bias.loc["first_bias", "position_bias"] == 1.0 and bias.loc["consistent", "position_bias"] == 0.0
    assert bias.loc["first_bias", "first_won_share"] == 1.0 and bias.loc["consistent", "first_won_share"] == 0.5


def test_offline_pairwise_judge_prefers_what_the_label_asks(tax, dom):
    j = OfflinePairwiseJudge(domain=dom, taxonomy=tax)
    refuse = {"item_id": "x", "text": "customers by shoe size", "label": "missing_capability"}
    assert j.compare(refuse, "REFUSE missing_capability: no", "amount_spent > 100000000") == "first"
    assert j.compare(refuse, "REFUSE wrong_skill: no", "REFUSE missing_capability: no") == "second"
    solv = {"item_id": "y", "text": "spent over 500", "label": "solvable", "output": "amount_spent > 500"}
    assert j.compare(solv, "number_of_orders > 3", "amount_spent > 500") == "second"
    assert j.compare(solv, "amount_spent > 100000000", "REFUSE wrong_skill: x") == "first"
    assert j.compare(solv, "amount_spent >> 3", "REFUSE wrong_skill: x") == "tie"


def test_heldout_arena_reuses_scored_answers_and_judges_against_the_truth(tax, dom):
    from flywheel_lib.levers.cycle import heldout_battles

    original = pd.DataFrame({"item_id": [f"e{i}" for i in range(6)], "text": [f"request {i}" for i in range(6)],
                             "label": ["solvable"] * 3 + ["missing_capability"] * 3,
                             "output": ["amount_spent > 500"] * 3 + [None] * 3})
    drift = pd.DataFrame({"item_id": ["d0", "d1"], "text": ["shoe size 9", "shoe size 10"],
                          "label": ["missing_capability"] * 2, "output": [None, None]})

    def preds(items, variant, answers):
        return pd.DataFrame({"item_id": items["item_id"], "variant": variant, "text": answers})

    good = ["amount_spent > 500"] * 3 + ["REFUSE missing_capability: no"] * 3
    logged = ["number_of_orders > 3"] * 3 + ["REFUSE missing_capability: no"] * 3  # runs, selects someone else
    p_orig = pd.concat([preds(original, "candidate", good), preds(original, "deployed_prev", logged),
                        preds(original, "lever_on_eval_only", good)])
    p_drift = pd.concat([preds(drift, "candidate", ["REFUSE missing_capability: no"] * 2),
                         preds(drift, "deployed_prev", ["customer_tags CONTAINS 'size 9'"] * 2)])
    req, answers = heldout_battles({"original": (original, p_orig), "drift": (drift, p_drift)}, n=0)
    assert len(req) == 8 and set(req["slice"]) == {"original", "drift"}
    assert set(answers) == {"candidate", "deployed_prev"}   # a model that skipped a slice does not battle
    assert req["item_id"].str.match(r"^(original|drift):").all()
    row = req.index[req["item_id"] == "drift:d1"][0]
    assert answers["deployed_prev"][row] == "customer_tags CONTAINS 'size 9'"   # the scored answer, reused
    b = judge_battles(req, answers, [OfflinePairwiseJudge(domain=dom, taxonomy=tax)])
    assert (b["winner"] == "candidate").sum() == 5 and (b["winner"] == "tie").sum() == 3
    sampled, _ = heldout_battles({"original": (original, p_orig), "drift": (drift, p_drift)}, n=4, seed=1)
    assert len(sampled) == 4 and sampled["slice"].value_counts().to_dict() == {"original": 3, "drift": 1}


def test_traffic_arena_takes_no_logged_query_as_the_truth(tax):
    from flywheel_lib.levers.cycle import arena_requests

    items = pd.DataFrame({"item_id": ["t1", "t2"], "text": ["spent over 500", "ordered more than 3 times"],
                          "source": ["traffic", "traffic"]})
    consensus = pd.DataFrame({"item_id": ["t1", "t2"], "status": ["accepted"] * 2, "category": ["solvable"] * 2})
    store = append_examples(None, pd.DataFrame({
        "item_id": ["t1", "s2"], "text": ["spent over 500", "ordered more than 3 times"],
        "label": ["solvable", "solvable"], "output": ["amount_spent > 50", "number_of_orders > 3"],
        "source": ["traffic", "seed"]}), cycle=1, taxonomy=tax)
    req = arena_requests(items, consensus, store, n=0, sources=("production", "traffic")).set_index("item_id")
    assert pd.isna(req.loc["t1", "output"])                     # the deployed model's own logged query is no gold
    assert req.loc["t2", "output"] == "number_of_orders > 3"    # a person's labelled query is


def test_llm_pairwise_judge_prompt_and_parser(tax):
    seen = []
    j = LLMPairwiseJudge(lambda p: seen.append(p) or "Answer 2 is better: 2", taxonomy=tax)
    assert j.compare({"text": "shoe size", "label": "missing_capability"}, "q1", "q2") == "second"
    assert "Request: shoe size" in seen[0] and "Answer 1: q1" in seen[0] and "missing_capability" in seen[0]
    assert [parse_pairwise(t) for t in ("1", "Tie.", "second", "no idea", None)] == \
        ["first", "tie", "second", "tie", "tie"]


def test_bradley_terry_orders_a_toy_tournament():
    rows = []
    for a, b, wa, wb, ties in (("a", "b", 8, 2, 1), ("b", "c", 8, 2, 1), ("a", "c", 9, 1, 0)):
        rows += [(a, b, a)] * wa + [(a, b, b)] * wb + [(a, b, "tie")] * ties
    battles = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    battles["item_id"] = range(len(battles))
    bt = BradleyTerry(n_boot=100, seed=1).fit(battles)
    r = bt.ratings_.set_index("model")
    assert list(bt.ratings_["model"]) == ["a", "b", "c"]
    assert r.loc["a", "elo"] - r.loc["b", "elo"] > 100 and r.loc["b", "elo"] - r.loc["c", "elo"] > 100
    assert abs(r["elo"].mean() - 1000) < 1e-6
    assert (r["elo_lo"] <= r["elo"]).all() and (r["elo"] <= r["elo_hi"]).all() and (r["elo_hi"] > r["elo_lo"]).all()
    assert (r.loc["a", "wins"], r.loc["a", "losses"], r.loc["a", "ties"]) == (17, 3, 1)
    anchored = BradleyTerry(n_boot=0, anchor="b", anchor_elo=1200).fit(battles).ratings_.set_index("model")
    assert anchored.loc["b", "elo"] == pytest.approx(1200)
    assert anchored.loc["a", "elo"] - 1200 == pytest.approx(r.loc["a", "elo"] - r.loc["b", "elo"])
