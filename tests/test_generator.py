"""The segments data generator: determinism, counts, disjoint eval families, conflicts, signals, valid gold queries."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flywheel_lib import load_taxonomy
from flywheel_lib.data import match_key
from flywheel_lib.domains import get_domain
from flywheel_lib.domains.segments.generator import CATEGORIES, SIGNALS, generate
from flywheel_lib.records import check_table

SMALL = dict(n_production=3000, n_seed_solvable=200, n_seed_refusal=200, n_eval=120, n_conflicts=40)


@pytest.fixture(scope="module")
def dom():
    return get_domain("segments")


@pytest.fixture(scope="module")
def full(dom):
    return generate(dom.catalog, seed=7)


def _digest(df: pd.DataFrame) -> str:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return hashlib.sha256(buf.getvalue() + df.to_csv(index=False).encode()).hexdigest()


def test_same_seed_gives_byte_identical_tables(dom):
    a = generate(dom.catalog, seed=11, **SMALL)
    b = generate(dom.catalog, seed=11, **SMALL)
    c = generate(dom.catalog, seed=12, **SMALL)
    for part in ("production", "seed", "eval"):
        assert _digest(a[part]) == _digest(b[part])
        assert _digest(a[part]) != _digest(c[part])


_DIGEST_SCRIPT = """
import hashlib, io
from flywheel_lib.domains import get_domain
from flywheel_lib.domains.segments.generator import generate
d = generate(get_domain("segments").catalog, seed=5, n_production=2000, n_seed_solvable=100, n_seed_refusal=100,
             n_eval=60, n_conflicts=20)
h = hashlib.sha256()
for k in ("production", "seed", "eval"):
    buf = io.BytesIO(); d[k].to_parquet(buf, index=False); h.update(buf.getvalue())
print(h.hexdigest())
"""


def test_byte_identical_across_processes_and_hash_seeds():
    root = Path(__file__).resolve().parents[1]
    outs = {subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT], capture_output=True, text=True, check=True, cwd=root,
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout.strip() for h in ("1", "2")}
    assert len(outs) == 1 and len(next(iter(outs))) == 64


def test_default_counts_and_contract(full):
    prod, seed, ev = full["production"], full["seed"], full["eval"]
    assert (len(prod), len(seed), len(ev)) == (20000, 1200, 400)
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    assert set(CATEGORIES) == set(tax.ids)
    for name in ("production", "seed", "eval"):
        df = check_table(full[name], "items", name)
        tax.check_labels(df["label"], where=name, ids=df["item_id"])
        tax.check_labels(df["true_label"], where=name, ids=df["item_id"], allow_missing=False)
        assert df["text"].str.strip().str.len().gt(0).all()
        assert set(df["source"]) == {name}
    # production: every row a logged success with a query; 10-15% should have been refused
    assert (prod["label"] == "solvable").all() and prod["output"].notna().all()
    share = (prod["true_label"] != "solvable").mean()
    assert 0.10 <= share <= 0.15
    # seed: 600 solvable + 600 refusals spread evenly over the four refusal categories
    truth = seed["true_label"].value_counts()
    assert truth["solvable"] == 600 and all(truth[c] == 150 for c in CATEGORIES[1:])
    assert seed.loc[seed["true_label"] == "solvable", "gold_output"].notna().all()
    # annotation errors: exactly the rate, and only there does the label differ from the truth
    assert seed["annotation_error"].sum() == round(0.03 * 1200)
    assert ((seed["label"] != seed["true_label"]) == seed["annotation_error"]).all()
    assert seed.loc[seed["label"] != "solvable", "output"].isna().all()
    # eval: stratified 40/15/15/15/15
    assert ev["true_label"].value_counts().to_dict() == {"solvable": 160, "needs_context": 60,
                                                         "missing_capability": 60, "wrong_skill": 60, "ambiguous": 60}
    assert (ev["label"] == ev["true_label"]).all() and (ev["split"] == "eval").all()


def test_eval_families_and_texts_never_seen_in_training(full):
    train_fam = set(full["production"]["family"]) | set(full["seed"]["family"])
    eval_fam = set(full["eval"]["family"])
    assert eval_fam and not (eval_fam & train_fam)
    train_text = set(full["production"]["text"].map(match_key)) | set(full["seed"]["text"].map(match_key))
    assert not (set(full["eval"]["text"].map(match_key)) & train_text)
    assert full["eval"]["text"].map(match_key).is_unique and full["seed"]["text"].map(match_key).is_unique


def test_planted_conflicts_point_at_seed_refusals(full):
    prod, seed = full["production"], full["seed"].set_index("item_id")
    planted = prod[prod["conflict_with"] != ""]
    assert len(planted) == 150
    src = seed.loc[planted["conflict_with"]]
    assert (src["label"] != "solvable").all()
    assert (planted["true_label"].to_numpy() == src["true_label"].to_numpy()).all()
    verbatim = (planted["text"].to_numpy() == src["text"].to_numpy()).mean()
    assert 0.3 < verbatim < 0.7  # the rest are close paraphrases (casing, punctuation, a filler word, a typo)


def test_signals_correlate_with_wrong_queries(full):
    prod = full["production"]
    wrong = (prod["true_label"] != "solvable") | (prod["output"] != prod["gold_output"])
    for s in SIGNALS:
        rate_wrong, rate_right = prod.loc[wrong, s].astype(float).mean(), prod.loc[~wrong, s].astype(float).mean()
        if s == "signal_copy":
            assert rate_wrong < rate_right - 0.2
        else:
            assert rate_wrong > rate_right + 0.1
    assert full["seed"][list(SIGNALS)].isna().all().all()


def test_reason_keys(full, dom):
    seed = full["seed"]
    solv = seed[seed["true_label"] == "solvable"]
    for q, key in zip(solv["gold_output"], solv["reason_key"]):
        assert ",".join(dom.check_output(q).attributes) == key
    miss = seed[seed["true_label"] == "missing_capability"]["reason_key"]
    assert set(miss) <= set(dom.catalog["unknown_attributes"])
    assert set(seed[seed["true_label"] == "wrong_skill"]["reason_key"]) <= set(dom.catalog["other_skills"])
    assert "best_customers" in set(seed[seed["true_label"] == "ambiguous"]["reason_key"])
    assert "product" in set(seed[seed["true_label"] == "needs_context"]["reason_key"])


def test_every_gold_query_parses_validates_executes_and_is_canonical(full, dom):
    golds = set()
    for name in ("seed", "eval", "production"):
        golds |= set(full[name]["gold_output"].dropna())
    nonempty = 0
    for q in sorted(golds):
        check = dom.check_output(q)
        assert check.valid, f"{q}: {check.error}"
        assert dom.canonical(q) == q
        nonempty += bool(dom.execute(q))
    assert nonempty / len(golds) > 0.8


def test_production_outputs_valid_and_many_refusals_select_nobody(full, dom):
    prod = full["production"]
    outs = prod["output"].unique()
    sizes = {}
    for q in outs:
        assert dom.check_output(q).valid, q
        sizes[q] = len(dom.execute(q))
    refuse = prod[prod["true_label"] != "solvable"]
    zero = refuse["output"].map(sizes).eq(0)
    assert 0.2 < zero.mean() < 0.9  # some, not all, of the made-up answers select zero customers
    assert refuse.loc[refuse["true_label"] == "missing_capability", "output"].map(sizes).eq(0).mean() > 0.5


def test_planted_pii_spans_match_text(full):
    prod = full["production"]
    with_pii = prod[prod["pii_spans"] != "[]"]
    assert abs(len(with_pii) / len(prod) - 0.05) < 0.01
    for text, spans in zip(with_pii["text"], with_pii["pii_spans"]):
        for s in json.loads(spans):
            assert text[s["start"]:s["end"]] == s["text"]


def test_phrasing_is_varied(full):
    prod = full["production"]
    assert prod["text"].map(match_key).nunique() / len(prod) > 0.8
    assert (prod["text"] == prod["text"].str.lower()).mean() < 0.8  # casing varies
    assert prod["family"].nunique() >= 10


def test_bad_sizes_are_refused(dom):
    with pytest.raises(ValueError, match="n_conflicts"):
        generate(dom.catalog, n_seed_refusal=10, n_conflicts=20, n_production=1000)


def test_triagesql_domain_has_no_generator():
    dom = get_domain("triagesql")
    assert dom.catalog == {}
    assert not dom.check_output("SELECT 1").valid and "no executor" in dom.check_output("SELECT 1").error
    with pytest.raises(NotImplementedError, match="user data"):
        dom.generate(seed=1)
