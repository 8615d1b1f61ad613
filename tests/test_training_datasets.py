"""Dataset building: dedup, class-aware split, chat formatting, saving (hand-made rows, expected values beside them)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.taxonomy import TaxonomyError
from flywheel_lib.training import build_dataset, dedup, format_target, near_duplicate_key, parse_answer, save_dataset
from flywheel_lib.training.datasets import cap_per_class, split_validation

TAX = load_taxonomy("params/taxonomy/segments.yaml")


def rows(*specs):
    return pd.DataFrame([dict(item_id=f"i{k}", text=t, label=lab, output=o, reason_key=r)
                         for k, (t, lab, o, r) in enumerate(specs)])


def test_dedup_exact_near_and_conflicts():
    df = rows(
        ("customers who spent over $500", "solvable", "amount_spent > 500", "amount_spent"),
        ("customers who spent over $500", "solvable", "amount_spent > 500", "amount_spent"),        # exact
        ("  Please show me customers who spent over $500!", "solvable", "amount_spent > 500", "amount_spent"),  # near
        ("customers who spent over $200", "solvable", "amount_spent > 200", "amount_spent"),        # different value
        ("customers who are doctors", "solvable", "customer_tags CONTAINS 'doctor'", "customer_tags"),
        ("Customers who are doctors.", "missing_capability", None, "occupation"),                   # conflict: kept
    )
    kept, rep = dedup(df)
    assert list(kept["item_id"]) == ["i0", "i3", "i4", "i5"]
    assert (rep.n_in, rep.exact, rep.near, rep.conflicts) == (6, 1, 1, 1)


def test_near_duplicate_key_keeps_numbers_and_decimals():
    assert near_duplicate_key("Show me ALL customers who spent > $49.50!") == "customers who spent $49.50"
    assert near_duplicate_key("spent over 500") != near_duplicate_key("spent over 200")


def test_stratified_split_proportions_per_class_and_rare_class_kept():
    labels = ["solvable"] * 50 + ["wrong_skill"] * 20 + ["ambiguous"] * 3 + ["needs_context"]
    df = pd.DataFrame({"label": labels})
    split = split_validation(df, val_frac=0.2, seed=3)
    val = df[split == "validation"]["label"].value_counts().to_dict()
    assert val == {"solvable": 10, "wrong_skill": 4, "ambiguous": 1}   # round(0.2 * n); needs_context stays in train
    assert (df[split == "train"]["label"] == "needs_context").sum() == 1
    assert split.equals(split_validation(df, val_frac=0.2, seed=3))   # seeded
    assert not split.equals(split_validation(df, val_frac=0.2, seed=4))


def test_cap_per_class():
    df = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 2, "x": range(12)})
    capped = cap_per_class(df, 4, seed=1)
    assert capped["label"].value_counts().to_dict() == {"a": 4, "b": 2}


def test_targets_and_parsing_round_trip():
    t = format_target("missing_capability", None, "occupation", suggestion="Segment on purchase history.")
    assert t == "REFUSE missing_capability: The store does not record occupation. Try: Segment on purchase history."
    assert parse_answer(t, TAX.refusal_ids + TAX.clarify_ids).refusal_category == "missing_capability"
    assert parse_answer("refuse Wrong_Skill - nope").refusal_category == "wrong_skill"
    assert parse_answer("REFUSE doctors: x", ["wrong_skill"]).refused is True
    assert parse_answer("REFUSE doctors: x", ["wrong_skill"]).refusal_category is None
    assert parse_answer("amount_spent > 5").output == "amount_spent > 5"
    assert parse_answer("").refused is False
    with pytest.raises(ValueError, match="item i9"):
        format_target("solvable", None, where="item i9")


def test_build_and_save(tmp_path):
    specs = [(f"customers who spent over ${n}", "solvable", f"amount_spent > {n}", "amount_spent")
             for n in range(10, 30)]
    specs += [(f"what were my sales in week {w}", "wrong_skill", None, "analytics") for w in range(10)]
    df = rows(*specs).assign(variant="curated")
    other = df.head(3).assign(variant="naive_merge")
    ds = build_dataset(pd.concat([df, other]), variant="curated", taxonomy=TAX, val_frac=0.1, seed=1)
    assert len(ds.train) == 27 and len(ds.validation) == 3
    assert ds.validation["label"].value_counts().to_dict() == {"solvable": 2, "wrong_skill": 1}
    m = ds.train["messages"].iloc[0]
    assert [x["role"] for x in m] == ["system", "user", "assistant"]
    refusal = ds.train[ds.train["label"] == "wrong_skill"]["messages"].iloc[0][-1]["content"]
    assert refusal.startswith("REFUSE wrong_skill: This is a task for the analytics skill")
    assert "Try: Ask the assistant's other skill directly." in refusal
    paths = save_dataset(ds, tmp_path / "curated")
    lines = (tmp_path / "curated" / "train.jsonl").read_text().splitlines()
    assert len(lines) == 27 and set(json.loads(lines[0])) == {"messages"}
    import datasets as hfd

    loaded = hfd.load_from_disk(paths["hf"])
    assert loaded["train"].num_rows == 27 and loaded["validation"].num_rows == 3
    assert loaded["train"][0]["messages"][1]["content"] == ds.train["text"].iloc[0]


def test_build_rejects_unknown_labels_and_missing_variant():
    df = rows(("x", "doctor", None, None)).assign(variant="curated")
    with pytest.raises(TaxonomyError, match="doctor"):
        build_dataset(df, variant="curated", taxonomy=TAX)
    with pytest.raises(ValueError, match="no training rows"):
        build_dataset(df, variant="naive_merge")


def test_cap_refusal_share():
    from flywheel_lib.training.datasets import cap_refusal_share

    df = pd.DataFrame({"label": ["solvable"] * 30 + ["wrong_skill"] * 40 + ["ambiguous"] * 20})
    capped = cap_refusal_share(df, 0.4, seed=1)   # at most 0.4/0.6 * 30 = 20 refusals, split 2:1 like the input
    assert capped["label"].value_counts().to_dict() == {"solvable": 30, "wrong_skill": 13, "ambiguous": 7}
    assert len(cap_refusal_share(df.head(40), 0.4)) == 40   # 10 refusals of 40 rows: already under the cap


def _pool():
    rows = [dict(item_id=f"s{i}", text=f"customers who spent more than {100 + i}", label="solvable",
                 output=f"amount_spent > {100 + i}", reason_key="amount_spent") for i in range(40)]
    rows += [dict(item_id=f"m{i}", text=f"customers who are {j}", label="missing_capability", output=None,
                  reason_key="occupation") for i, j in enumerate(["doctors", "nurses", "teachers", "lawyers"])]
    rows += [dict(item_id=f"w{i}", text=f"what were my total sales in week {i}", label="wrong_skill", output=None,
                  reason_key="analytics") for i in range(20)]
    return pd.DataFrame(rows)


def test_balanced_rows_same_examples_seen_distinct_first_refusal_categories_equal():
    from flywheel_lib.training.datasets import balanced_rows

    out = balanced_rows(_pool(), 40, refusal_share=0.5, seed=3)
    counts = out["label"].value_counts().to_dict()
    assert counts == {"solvable": 20, "missing_capability": 10, "wrong_skill": 10}
    # distinct rows first: 20 of 40 solvable rows, all different; the 4-row class is repeated (whole passes)
    assert out[out.label == "solvable"]["item_id"].nunique() == 20
    assert out[out.label == "wrong_skill"]["item_id"].nunique() == 10
    assert sorted(out[out.label == "missing_capability"]["item_id"].value_counts().tolist()) == [2, 2, 3, 3]
    assert balanced_rows(_pool(), 40, refusal_share=0.5, seed=3).equals(out)  # seeded
    with pytest.raises(ValueError, match="n must be positive"):
        balanced_rows(_pool(), 0, refusal_share=0.5)


def test_head_rows_keep_every_refusal_at_the_share():
    from flywheel_lib.training.datasets import head_rows

    pool = _pool()  # 40 solvable, 4 missing_capability, 20 wrong_skill
    out = head_rows(pool, refusal_share=0.4, seed=2)
    assert out["label"].value_counts().to_dict() == {"solvable": 36, "wrong_skill": 20, "missing_capability": 4}
    assert set(pool[pool.label != "solvable"]["item_id"]) <= set(out["item_id"])  # every refusal row
    assert out["item_id"].is_unique and list(out.index) == sorted(out.index)  # distinct rows, original order
    assert head_rows(pool, refusal_share=0.4, seed=2).equals(out)  # seeded
    assert not head_rows(pool, refusal_share=0.4, seed=3).equals(out)
    assert len(head_rows(pool, refusal_share=0.2)) == len(pool)  # fewer solvable rows than the share asks: all rows
    assert len(head_rows(pool[pool.label == "solvable"], refusal_share=0.4)) == 40  # no refusals: all rows
    with pytest.raises(ValueError, match="refusal_share"):
        head_rows(pool, refusal_share=0.0)


def test_build_dataset_keeps_the_pool_it_drew_from():
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    ds = build_dataset(_pool(), taxonomy=tax, val_frac=0.1, seed=1, max_refusal_share=0.5, n_train=16)
    assert len(ds.train) == 16 and len(ds.train_pool) == len(_pool()) - len(ds.validation)
    assert set(ds.train["item_id"]) <= set(ds.train_pool["item_id"])
    assert set(ds.train_pool["item_id"]).isdisjoint(ds.validation["item_id"])
    whole = build_dataset(_pool(), taxonomy=tax, val_frac=0.1, seed=1)
    assert whole.pool is None and whole.train_pool is whole.train
    assert (ds.target_refusal_share, whole.target_refusal_share) == (0.5, 0.35)  # max_refusal_share, else 0.35
    assert whole.train["item_id"].tolist() == ds.train_pool["item_id"].tolist()


def test_build_dataset_n_train_uses_every_row_and_short_refusal_targets():
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    ds = build_dataset(_pool(), taxonomy=tax, val_frac=0.1, seed=1, max_per_class=5, max_refusal_share=0.5,
                       n_train=64, refusal_target="category")
    assert len(ds.train) == 64  # the per-class cap does not apply: all 36 training solvable rows can be drawn
    assert ds.summary()["n_distinct_train"] > 5 * 3
    assert set(ds.validation["item_id"]).isdisjoint(ds.train["item_id"])
    refusal = ds.train[ds.train.label != "solvable"]["messages"].map(lambda m: m[-1]["content"])
    assert set(refusal) == {"REFUSE missing_capability", "REFUSE wrong_skill"}
    assert all(parse_answer(t, ["missing_capability", "wrong_skill"]).refusal_category for t in refusal)
    ds2 = build_dataset(_pool(), taxonomy=tax, val_frac=0.0, refusal_target="sentence")
    t = ds2.train[ds2.train.label == "wrong_skill"]["messages"].iloc[0][-1]["content"]
    assert t.startswith("REFUSE wrong_skill: ") and "Try:" not in t
    with pytest.raises(ValueError, match="refusal_target"):
        build_dataset(_pool(), taxonomy=tax, refusal_target="tiny")


def _corpus(n_solv: int, n_ref: int, tag: str = "") -> pd.DataFrame:
    cats = ["missing_capability", "wrong_skill", "ambiguous", "needs_context"]
    solv = [dict(item_id=f"s{tag}{i}", text=f"customers {tag}with {i} orders", label="solvable",
                 output=f"order_count = {i}", reason_key="order_count") for i in range(n_solv)]
    ref = [dict(item_id=f"r{tag}{c}{i}", text=f"impossible {tag}request {c} {i}", label=c, output=None,
                reason_key="x") for c in cats for i in range(n_ref)]
    return pd.DataFrame(solv + ref)


def test_draws_are_stable_when_the_corpus_grows():
    """A corpus grown by 3% (and reordered, with new ids) keeps its validation rows, nearly all of its drawn training
    rows, and their relative order: two cycles' adapters then differ by the new data, not by a fresh draw."""
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    a = _corpus(600, 60)
    grown = pd.concat([a, _corpus(18, 2, tag="new ")]).sample(frac=1.0, random_state=5).reset_index(drop=True)
    grown["item_id"] = [f"id{i}" for i in range(len(grown))]
    kw = dict(taxonomy=tax, val_frac=0.1, max_refusal_share=0.15, n_train=320)
    da, db = build_dataset(a, seed=7, **kw), build_dataset(grown, seed=7, **kw)
    val_a, val_b = set(da.validation["text"]), set(db.validation["text"])
    assert len(val_a & val_b) >= 0.95 * len(val_a)
    tr_a, tr_b = da.train["text"].tolist(), db.train["text"].tolist()
    assert len(set(tr_a) & set(tr_b)) >= 0.9 * len(set(tr_a))
    common = set(tr_a) & set(tr_b)
    assert [t for t in tr_a if t in common] == [t for t in tr_b if t in common]  # the same relative order
    hr = [set(head_rows_of(d)) for d in (da, db)]
    assert len(hr[0] & hr[1]) >= 0.9 * len(hr[0])
    # a different seed is a different draw: about half the solvable rows in common (the quota is ~half the pool)
    other = build_dataset(a, seed=8, **kw)
    assert len(set(other.train["text"]) & set(tr_a)) < 0.75 * len(set(tr_a))
    assert len(set(other.validation["text"]) & val_a) < 0.5 * len(val_a)


def head_rows_of(ds):
    from flywheel_lib.training.datasets import head_rows

    return head_rows(ds.train_pool, refusal_share=0.35, seed=7)["text"].tolist()


def test_stable_order_ignores_position_and_tells_repeats_apart():
    from flywheel_lib.training.datasets import stable_keys, stable_order

    keys = [f"k{i}" for i in range(50)]
    o = [keys[i] for i in stable_order(keys, seed=1)]
    rev = keys[::-1] + ["extra"]
    assert [rev[i] for i in stable_order(rev, seed=1) if rev[i] != "extra"] == o
    assert o != [keys[i] for i in stable_order(keys, seed=2)]
    assert o != [keys[i] for i in stable_order(keys, seed=1, salt="other")]
    dup = stable_keys(["a", "a", "b"], seed=1)
    assert len(set(dup.tolist())) == 3 and dup.dtype.name == "uint64"
