"""Constrained decoding: the grammar built from the catalog accepts every gold answer and rejects invalid queries;
decoding under it with the real (untuned) SmolLM2-135M never yields an invalid query, and a refusal stays reachable."""

from __future__ import annotations

import os

import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.evaluation.constrained import answer_grammar
from flywheel_lib.training.targets import format_target, parse_answer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("xgrammar")

TAX = load_taxonomy("params/taxonomy/segments.yaml")
REFUSAL_IDS = [c for c in TAX.ids if c != TAX.solvable_id]


@pytest.fixture(scope="module")
def data(dom):
    return dom.generate(seed=7, n_production=600, n_seed_solvable=120, n_seed_refusal=120, n_eval=40, n_conflicts=20)


@pytest.fixture(scope="module")
def decoder(dom):
    from transformers import AutoTokenizer

    from flywheel_lib.evaluation.constrained import ConstrainedDecoder
    from flywheel_lib.models import model_dir

    tok = AutoTokenizer.from_pretrained(model_dir("smollm2-135m"))
    return ConstrainedDecoder(tok, answer_grammar(dom, REFUSAL_IDS))


def test_grammar_needs_refusal_ids_and_is_none_without_a_domain_grammar(dom):
    with pytest.raises(ValueError, match="refusal categories"):
        answer_grammar(dom, [])
    assert answer_grammar(object(), REFUSAL_IDS) is None
    g = answer_grammar(dom, REFUSAL_IDS)
    assert g.startswith("root ::= query | refusal") and '"missing_capability"' in g


def test_grammar_accepts_every_gold_answer_and_rejects_invalid_queries(dom, data, decoder):
    gold = [o for df in data.values() for lab, o in zip(df["label"], df["output"])
            if lab == "solvable" and isinstance(o, str)]
    assert len(gold) > 300
    rejected = [q for q in gold if not decoder.matches(" ".join(q.split()))]
    assert rejected == []
    for c in REFUSAL_IDS:
        assert decoder.matches(format_target(c, None, "some_reason", suggestion="Ask again."))
    invalid = ["customer_breeds_nontolerance(x: 1) = true",   # unknown function (the example)
               "amount_spent CONTAINS 'x'",                    # operator the type does not allow
               "number_of_orders > 2.5",                       # a count is whole
               "email_subscription_status = MAYBE",            # not one of the enum's values
               "last_order_date > '2026-02-30'",               # not a real day
               "products_purchased(tag: 'a', tag: 'b') = true",  # argument twice
               "REFUSE not_a_category: no",                    # unknown refusal category
               "amount_spent > 100 AND"]                       # unfinished
    for q in invalid:
        assert not dom.check_output(q).valid or q.startswith("REFUSE")
        assert not decoder.matches(q), q


@pytest.mark.slow
def test_constrained_decoding_never_emits_an_invalid_query_and_can_refuse(dom, data):
    from flywheel_lib.evaluation import VariantGenerator

    gen = VariantGenerator("smollm2-135m", {}, grammar=answer_grammar(dom, REFUSAL_IDS))
    texts = (data["production"]["text"].tolist()[:100] + data["seed"]["text"].tolist()[:40]
             + data["eval"]["text"].tolist()[:20])
    assert len(texts) == 160
    out = gen.generate(texts, variant="base", batch_size=40, max_new_tokens=40, progress=False)
    answers = [parse_answer(o, REFUSAL_IDS) for o in out]
    queries = [a.output for a in answers if not a.refused]
    invalid = [q for q in queries if not dom.check_output(q).valid]
    assert queries and invalid == []
    refusals = [a for a in answers if a.refused]
    assert refusals and all(a.refusal_category in REFUSAL_IDS for a in refusals)
    # the same untuned model without the grammar writes prose, not queries: the grammar is what makes them valid
    free = gen.generate(texts[:16], variant="base", batch_size=16, max_new_tokens=24, progress=False,
                        constrained=False)
    free_valid = [dom.check_output(a.output).valid for a in map(parse_answer, free) if not a.refused]
    assert sum(free_valid) < len(free_valid)
