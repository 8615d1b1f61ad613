"""Prompt rendering and verdict parsing: every malformed answer is a ParseError that says why."""

import json

import pytest

from flywheel_lib.judges import JudgeConfig, make_judge
from flywheel_lib.judges.prompt import ParseError, canonical_reason, parse_verdict, render_messages
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_items, toy_seed

IDS = ["solvable", "needs_context", "missing_capability", "wrong_skill", "ambiguous"]


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


@pytest.mark.parametrize("text, expected", [
    ('{"category": "wrong_skill", "reason_key": "Analytics", "rationale": "sales"}', ("wrong_skill", "analytics")),
    ('Sure! ```json\n{"category": "Ambiguous", "reason_key": "best customers"}\n```', ("ambiguous", "best_customers")),
    ('{"category": "solvable", "reason_key": "number_of_orders, amount_spent"}', ("solvable", "amount_spent,number_of_orders")),
    ('verdict: {"category": "needs_context", "reason_key": "the product"} done', ("needs_context", "the_product")),
])
def test_parse_good_answers(text, expected):
    p = parse_verdict(text, IDS, solvable_id="solvable")
    assert (p.category, p.reason_key) == expected


@pytest.mark.parametrize("text, finish, why", [
    ("", "stop", "empty answer"),
    ("I think it is solvable", "stop", "no JSON object"),
    ('{"category": "solvable", "reason_key": ', "length", "truncated at max_tokens"),
    ("{'category': 'solvable'}", "stop", "malformed JSON"),
    ('{"reason_key": "x"}', "stop", "no category"),
    ('{"category": "maybe", "reason_key": "x"}', "stop", "'maybe' is not one of"),
    ('["solvable"]', "stop", "no JSON object"),
])
def test_parse_bad_answers_say_why(text, finish, why):
    with pytest.raises(ParseError, match=why):
        parse_verdict(text, IDS, finish_reason=finish)


def test_canonical_reason():
    assert canonical_reason("Best Customers") == "best_customers"
    assert canonical_reason("customer_tags; Amount-Spent", solvable=True) == "amount_spent,customer_tags"
    assert canonical_reason(None) == ""


def test_prompt_has_definitions_catalog_examples_and_item(tax):
    ex = [{"text": "customers who are doctors", "label": "missing_capability", "reason_key": "occupation"}]
    sys_msg, user = render_messages(tax, {"text": "shoppers older than 40", "context": ""}, examples=ex)
    assert sys_msg["role"] == "system" and user["role"] == "user"
    for cid in IDS:
        assert f"- {cid}:" in sys_msg["content"]
    assert "amount_spent (money)" in sys_msg["content"] and "occupation" in sys_msg["content"]
    assert 'Answer: {"category": "missing_capability", "reason_key": "occupation"' in user["content"]
    assert user["content"].endswith("Request: shoppers older than 40\nAnswer:")


def test_a_per_item_schema_replaces_the_catalog(tax):
    schema = json.dumps({"tables": {"t": ["a", "b"]}})
    sys_msg, user = render_messages(tax, {"text": "rows of t", "context": schema})
    assert "Schema catalog:" not in sys_msg["content"]
    assert f"Schema for this request: {schema}" in user["content"]


def test_fewshot_strategies_and_prompt_hash(tax):
    seed, items = toy_seed(), toy_items().to_dict("records")
    strat = make_judge(JudgeConfig(name="f", backend="fake", fewshot={"strategy": "stratified", "per_category": 1}),
                       taxonomy=tax).fit(seed)
    reqs = strat.requests(items)
    labels = [c for c in ("solvable", "needs_context", "missing_capability", "wrong_skill", "ambiguous")
              if f'"category": "{c}"' in reqs[0].messages[1]["content"]]
    assert len(labels) == 5  # one example per category
    assert len({r.key for r in reqs}) == len(items)
    near = make_judge(JudgeConfig(name="f", backend="fake", fewshot={"strategy": "nearest", "k": 2}),
                      taxonomy=tax).fit(seed)
    r = near.requests([{"item_id": "x", "text": "customers who are nurses"}])[0]
    assert "customers who are doctors" in r.messages[1]["content"]
    # the key changes with options, not with the timeout
    hot = make_judge(JudgeConfig(name="f", backend="fake", options={"temperature": 0.7},
                                 fewshot={"strategy": "stratified", "per_category": 1}), taxonomy=tax).fit(seed)
    slow = make_judge(JudgeConfig(name="f", backend="fake", options={"timeout_s": 5},
                                  fewshot={"strategy": "stratified", "per_category": 1}), taxonomy=tax).fit(seed)
    assert hot.requests(items[:1])[0].key != reqs[0].key
    assert slow.requests(items[:1])[0].key == reqs[0].key


def test_cache_key_is_the_hash_of_the_whole_prompt(tax):
    import hashlib

    from flywheel_lib.io import text_hash

    j = make_judge(JudgeConfig(name="f", backend="fake", fewshot={"strategy": "stratified", "per_category": 1}),
                   taxonomy=tax).fit(toy_seed())
    items = [{"item_id": "a", "text": "customers who spent over $5 ☕", "context": ""},
             {"item_id": "b", "text": "rows of t", "context": '{"tables": {"t": ["a"]}}'}]
    for r in j.requests(items):
        h = hashlib.sha256(text_hash(j.key_parts(), n=64).encode())
        for m in r.messages:
            h.update(b"\0" + m["role"].encode() + b"\0" + m["content"].encode())
        assert r.key == h.hexdigest()[:32]
