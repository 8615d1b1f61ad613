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
    texts = (data["production"]["text"].tolist()[:50] + data["seed"]["text"].tolist()[:20]
             + data["eval"]["text"].tolist()[:10])
    assert len(texts) == 80
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


def _feed(proc, dec, texts: list[str], vocab: int):
    """Drive ``proc`` as ``generate`` would: one call per step, each row's next token taken from its text (a row
    whose text is used up repeats the stop token). Returns the scores of the last call."""
    import torch

    ids = [dec.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    eos = min(dec.eos_ids)
    seq = torch.zeros((len(texts), 1), dtype=torch.long)
    scores = proc(seq, torch.zeros((len(texts), vocab)))
    for step in range(max(map(len, ids))):
        nxt = torch.tensor([[r[step] if step < len(r) else eos] for r in ids])
        seq = torch.cat([seq, nxt], dim=1)
        scores = proc(seq, torch.zeros((len(texts), vocab)))
    return scores


def test_a_high_bound_that_cannot_reach_the_low_one_ends_instead_of_leaving_no_token(decoder):
    import torch

    # The whole part can no longer reach the low bound: a decimal point may not follow, digits may ...
    dots = [t for t, lead in decoder._dotted if lead.startswith(".")]
    digit = decoder.tokenizer("5", add_special_tokens=False)["input_ids"][0]
    proc = decoder.processor()
    scores = _feed(proc, decoder, ["amount_spent BETWEEN 4000000 AND 150000"], decoder.vocab_size)
    assert dots and bool(torch.isinf(scores[0, dots]).all()) and bool(torch.isfinite(scores[0, digit]))
    # ... and once no digit may follow (seven is the most a whole part has), the number ends there, the answer
    # invalid, rather than dragging decimals along.
    proc = decoder.processor()
    scores = _feed(proc, decoder, ["amount_spent BETWEEN 4000000 AND 1500000"], decoder.vocab_size)
    assert bool(torch.isinf(scores[0, dots]).all())
    assert all(bool(torch.isfinite(scores[0, e])) for e in decoder.eos_ids if e < decoder.vocab_size)
    # ... and where one was written anyway, with every decimal used, the number may end (the validator rejects
    # the answer) instead of the row having no token left: the dead end that stopped a stage.
    proc = decoder.processor()
    scores = _feed(proc, decoder, ["amount_spent BETWEEN 4000000.00 AND 1500000.00"], decoder.vocab_size)
    assert bool(torch.isfinite(scores[0]).any())
    assert all(bool(torch.isfinite(scores[0, e])) for e in decoder.eos_ids if e < decoder.vocab_size)
    assert proc.dead_ == {}


def test_a_row_that_leaves_the_grammar_ends_as_invalid_and_the_batch_goes_on(decoder, dom):
    import torch

    proc = decoder.processor()
    bad = "amount_spent > 100 }} not"
    good = "amount_spent > 100 AND number_of_orders > 2 AND amount_spent < 5000"
    scores = _feed(proc, decoder, [bad, good], decoder.vocab_size)
    assert list(proc.dead_) == [0] and "left the grammar" in proc.dead_[0]
    assert any("left the grammar" in d for d in decoder.dead_ends_)
    # The dead row may only stop; the live one is still masked by its grammar, with more than the stop token open.
    finite0 = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    assert finite0 and set(finite0) <= decoder.eos_ids
    assert int(torch.isfinite(scores[1]).sum()) > 1
    assert "after 'amount_spent > 100'" in proc.dead_[0]


@pytest.mark.slow
def test_generation_with_a_dead_row_finishes_the_batch(dom, data):
    """Real generation: a saboteur forces one row off the grammar mid-answer; that row ends as an invalid answer
    and the other rows finish valid answers (before, the logits processor raised for the whole batch)."""
    import torch

    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import ConstrainedDecoder, query_grammar
    from flywheel_lib.training.targets import SYSTEM_PROMPT

    gen = VariantGenerator("smollm2-135m", {}, grammar=answer_grammar(dom, REFUSAL_IDS))
    dec = ConstrainedDecoder(gen.tok, query_grammar(gen.decoder_.grammar), vocab_size=gen.model.config.vocab_size)
    off = gen.tok("}}", add_special_tokens=False)["input_ids"][0]

    class Saboteur:
        step = 0

        def __call__(self, input_ids, scores):
            self.step += 1
            if self.step == 4:
                scores[0] = float("-inf")
                scores[0, off] = 0.0
            return scores

    texts = data["eval"]["text"].tolist()[:3]
    prompts = [gen.tok.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                            {"role": "user", "content": t}], tokenize=False,
                                           add_generation_prompt=True) for t in texts]
    gen.tok.padding_side = "left"
    enc = gen.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    proc = dec.processor(64)
    with torch.no_grad():
        out = gen.model.generate(**enc, max_new_tokens=64, do_sample=False, pad_token_id=gen.tok.pad_token_id,
                                 eos_token_id=gen.tok.eos_token_id, logits_processor=[proc, Saboteur()])
    answers = [gen.tok.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for o in out]
    assert list(proc.dead_) == [0]
    assert not dom.check_output(answers[0]).valid
    assert all(dom.check_output(a).valid for a in answers[1:]), answers
