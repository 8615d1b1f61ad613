"""Real LoRA steps on the real base model (SmolLM2-135M; its 2-layer cut where a test checks the machinery), on a tiny
setting: the loss falls, the adapter works."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.training import build_dataset, get_backend
from flywheel_lib.training.lora import collate_left

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMALL = "smollm2-135m-2l"  # adapters, merging and the memo need a model that learns, not the whole one


def test_collate_left_aligns_answers_at_the_end():
    b = collate_left([([5, 6, 7], [8, 9]), ([5], [8, 9, 10])], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [0, 5, 8, 9, 10]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]
    assert b["k"] == 4  # longest answer (3) + 1: logits only for the last 4 positions
    # targets are the last k-1 tokens; the mask marks answer tokens only
    assert b["targets"].tolist() == [[7, 8, 9], [8, 9, 10]]
    assert b["target_mask"].tolist() == [[False, True, True], [True, True, True]]
    assert b["tokens"] == 9


@pytest.mark.slow
def test_a_few_lora_steps_lower_the_loss_and_the_adapter_generates(tmp_path):
    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.training import parse_answer

    tax = load_taxonomy("params/taxonomy/segments.yaml")
    rows = [dict(item_id=f"w{i}", text=t, label="wrong_skill", output=None, reason_key="analytics")
            for i, t in enumerate(["what were my total sales last month", "how much revenue did I make this week",
                                   "show my average order value", "what is my conversion rate"])]
    rows += [dict(item_id=f"s{i}", text=f"customers who spent more than ${n}", label="solvable",
                  output=f"amount_spent > {n}", reason_key="amount_spent") for i, n in enumerate([100, 250, 400, 900])]
    ds = build_dataset(pd.DataFrame(rows), variant="", taxonomy=tax, val_frac=0.0, seed=1)
    ds.validation = ds.train  # score the same examples before and after: memorising them must lower the loss
    res = get_backend("local-lora", base_model=SMALL, max_steps=40, batch_size=4, lr=1e-2, lora_r=16, max_len=64,
                      warmup_steps=1, seed=3, progress=False).train(ds, out_dir=tmp_path / "adapter")
    m = res.metrics
    assert m["val_loss_after"] < 0.6 * m["val_loss_before"], m
    assert len(res.log) == 40 and list(res.log["step"]) == list(range(1, 41))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "adapter" / "train_log.csv").exists()
    gen = VariantGenerator(SMALL, {"tiny": str(tmp_path / "adapter")})
    out = gen.generate(["what were my total sales last month"], variant="tiny", max_new_tokens=12, progress=False)
    assert parse_answer(out[0]).refused, out
    base = gen.generate(["what were my total sales last month"], variant="base", max_new_tokens=12, progress=False)
    assert not base[0].startswith("REFUSE wrong_skill"), base
    # the adapter is merged into the weights only while it generates: unmerged after, the same answers next time
    assert gen.generate(["what were my total sales last month"], variant="tiny", max_new_tokens=12,
                        progress=False) == out
    assert gen.generate(["what were my total sales last month"], variant="base", max_new_tokens=12,
                        progress=False) == base
    # a memo answers what the same adapter decoded before, from another folder holding the same weights, and only
    # that: a new prompt is decoded, the base model's answer is not the adapter's
    from flywheel_lib.evaluation.memo import GenerationMemo

    shutil.copytree(tmp_path / "adapter", tmp_path / "deployed")
    memo = GenerationMemo()
    first = VariantGenerator(SMALL, {"tiny": str(tmp_path / "adapter")}, memo=memo)
    texts = ["what were my total sales last month", "customers who spent more than $250"]
    ans = first.generate(texts, variant="tiny", max_new_tokens=12, progress=False)
    assert ans[0] == out[0] and memo.decoded == 2 and memo.reused == 0
    later = VariantGenerator(SMALL, {"deployed": str(tmp_path / "deployed")},
                             memo=GenerationMemo(memo.frame()))
    again = later.generate(texts + ["show my average order value"], variant="deployed", max_new_tokens=12,
                           progress=False)
    assert again[:2] == ans and (later.memo_.reused, later.memo_.decoded) == (2, 1)
    assert later.generate(texts[:1], variant="base", max_new_tokens=12, progress=False) == base
    assert later.memo_.reused == 2
    # training continues from a saved adapter (a later cycle's <candidate>_continued): it starts where that one
    # ended, far below a fresh adapter's loss, and is saved as a folder of its own
    more = get_backend("local-lora", base_model=SMALL, max_steps=2, batch_size=4, lr=1e-2, lora_r=16, max_len=64,
                       warmup_steps=1, seed=3, progress=False, init_adapter=str(tmp_path / "adapter")).train(
        ds, out_dir=tmp_path / "continued")
    assert more.metrics["val_loss_before"] < 0.7 * m["val_loss_before"], (more.metrics, m)
    assert (tmp_path / "continued" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_the_recipe_lowers_validation_loss_on_held_out_rows(tmp_path):
    """The default recipe of 04 (adapters on every linear layer, cosine schedule, class-balanced rows drawn from the
    whole pool, short refusal targets off) at smoke size: the loss on *held-out* seed rows falls."""
    from flywheel_lib.domains.segments import SegmentsDomain

    tax = load_taxonomy("params/taxonomy/segments.yaml")
    seed_rows = SegmentsDomain(n_customers=300).generate(seed=7, n_production=600, n_seed_solvable=120,
                                                         n_seed_refusal=120, n_eval=40, n_conflicts=20)["seed"]
    ds = build_dataset(seed_rows, taxonomy=tax, val_frac=0.2, seed=7, n_train=12 * 8, max_refusal_share=0.35)
    assert len(ds.train) == 96 and set(ds.validation["item_id"]).isdisjoint(ds.train["item_id"])
    res = get_backend("local-lora", max_steps=8, batch_size=8, lr=1e-3, lora_r=16, target_modules=("all-linear",),
                      lr_schedule="cosine", max_len=96, warmup_steps=2, val_batches=4, seed=7,
                      progress=False).train(ds, out_dir=tmp_path / "adapter")
    m = res.metrics
    assert m["val_loss_after"] < 0.7 * m["val_loss_before"], m
    assert m["trainable_params"] > 4_000_000  # r=16 on all 7 projections of 30 layers, not attention only
    assert m["attention"] == "eager"  # on a CPU the loop trains with eager attention (LoRAConfig.attention auto)
    assert res.log["lr"].iloc[-1] < 0.05 * 1e-3  # cosine decays to ~0


@pytest.mark.slow
def test_eager_and_sdpa_attention_give_the_same_loss_and_gradients_on_a_left_padded_batch():
    """The training loop picks eager attention on a CPU (faster there): on a left-padded batch of unequal lengths it
    must compute what the fused kernel computes, padding masked the same way, or the switch would change the model."""
    import torch

    from flywheel_lib.models import load_base_model
    from flywheel_lib.training.lora import answer_loss, tokenize_chats

    model, tok = load_base_model("smollm2-135m")
    chats = [[{"role": "user", "content": t}, {"role": "assistant", "content": a}] for t, a in
             [("customers who spent more than $100", "amount_spent > 100"),
              ("what were my total sales last month", "REFUSE wrong_skill: This is a task for analytics."),
              ("vip", "REFUSE ambiguous: 'vip' could mean several different segments.")]]
    batch = collate_left(tokenize_chats(tok, chats, max_len=96), tok.pad_token_id)
    assert batch["attention_mask"].min() == 0  # unequal lengths: the batch is padded
    model.train()
    out = {}
    for kind in ("sdpa", "eager"):
        model.set_attn_implementation(kind)
        model.zero_grad()
        loss = answer_loss(model, batch)
        loss.backward()
        out[kind] = (float(loss), model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert out["eager"][0] == pytest.approx(out["sdpa"][0], rel=1e-4)
    torch.testing.assert_close(out["eager"][1], out["sdpa"][1], rtol=1e-3, atol=1e-5)


def test_batches_keep_their_rows_when_a_few_examples_are_added():
    """The first pass's batches come from a stable order of the examples: when 2 of 160 examples are added, each
    batch keeps nearly all of its examples (a length-sorted chunk gains a row, so some batches shift by one);
    a reshuffle (the old first pass) keeps about a third."""
    import numpy as np

    from flywheel_lib.training.datasets import stable_order
    from flywheel_lib.training.lora import _batches

    def first_pass(keys, stable=True):
        lengths = np.array([10 + (int(k[1:]) % 7) for k in keys])
        first = stable_order(keys, seed=7, salt="batches") if stable else None
        gen = _batches(lengths, 8, np.random.default_rng(7), group=4, first=first)
        return [set(keys[i] for i in next(gen)) for _ in range(int(np.ceil(len(keys) / 8)))]

    def kept(x, y):  # the mean share of a batch of x found together in one batch of y
        return float(np.mean([max(len(p & q) for q in y) / len(p) for p in x]))

    a = [f"e{i}" for i in range(160)]
    b = a[:40] + ["e1000", "e1001"] + a[40:]
    assert kept(first_pass(a), first_pass(b)) >= 0.85
    assert kept(first_pass(a, stable=False), first_pass(b, stable=False)) < 0.6
    assert sorted(i for batch in first_pass(a) for i in batch) == sorted(a)  # one pass covers every example once
    with pytest.raises(ValueError, match="permutation"):
        next(_batches(np.ones(4), 2, np.random.default_rng(0), first=np.array([0, 0, 1, 2])))
