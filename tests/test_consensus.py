"""Consensus strategies on small hand-readable verdict tables, expected outputs beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.curation import DawidSkene, KOfN, MajorityVote, Unanimous, make_strategy, precision_coverage
from flywheel_lib.curation._votes import normalize_reason_key
from flywheel_lib.records import VERDICTS, ContractError, check_table

FILLER = {c: None for c in VERDICTS if c not in ("item_id", "judge", "category", "reason_key", "rationale")}


def verdicts(rows: str) -> pd.DataFrame:
    """``item judge category reason_key [| rationale]`` per line; ``-`` = abstention / no key."""
    out = []
    for line in rows.strip().splitlines():
        head, _, rationale = line.partition("|")
        item, judge, cat, *key = head.split(maxsplit=3)
        key = key[0].strip() if key else "-"
        out.append({"item_id": item, "judge": judge, "category": None if cat == "-" else cat,
                    "reason_key": None if key == "-" else key, "rationale": rationale.strip(), **FILLER})
    return pd.DataFrame(out, columns=list(VERDICTS))


TABLE = verdicts("""
a j1 wrong_skill analytics
a j2 wrong_skill Analytics
a j3 wrong_skill  analytics
b j1 solvable amount_spent
b j2 solvable amount_spent
b j3 ambiguous best_customers
c j1 missing_capability occupation
c j2 - -
c j3 missing_capability occupation
d j1 ambiguous best_customers
d j2 ambiguous best-customers
e j1 solvable amount_spent,number_of_orders
e j2 solvable number of orders, amount_spent
e j3 solvable amount_spent , number_of_orders
f j1 missing_capability age
f j2 missing_capability occupation
f j3 missing_capability age
g j1 solvable x
g j2 ambiguous y
g j3 wrong_skill z
""")
# d: j3 has no row at all (a judge missing an item).


@pytest.mark.parametrize(
    "raw, expected",
    [("  Best Customers ", "best_customers"), ("best-customers", "best_customers"), ("a,  B c", "a,b_c"),
     ("number of orders, amount_spent", "amount_spent,number_of_orders"), ("", None), (None, None), (" , ", None)],
)
def test_normalize_reason_key(raw, expected):
    assert normalize_reason_key(raw) == expected


def test_unanimous_decision_and_reasoning():
    u = Unanimous().fit(TABLE)
    expected = [  # item  label                status          detail             reason
            ("a", "wrong_skill", "accepted", "unanimous", "analytics"),
            ("b", None, "disagreement", "category_split", None),
            ("c", None, "abstained", "abstention", None),
            ("d", None, "abstained", "abstention", None),  # j3 never judged d
            ("e", "solvable", "accepted", "unanimous", "amount_spent,number_of_orders"),
            ("f", None, "disagreement", "reason_mismatch", None),
            ("g", None, "disagreement", "category_split", None),
    ]
    got = list(zip(u.labels_.index, u.labels_, u.status_, u.detail_, u.reason_keys_))
    assert got == expected
    assert u.coverage_ == pytest.approx(2 / 7)


def test_unanimous_table_meets_the_contract():
    t = Unanimous().fit(TABLE).table()
    check_table(t, "consensus", "test")
    assert t.loc[t.item_id == "d", "votes"].item() == '{"j1": "ambiguous", "j2": "ambiguous", "j3": null}'


def test_unanimous_with_explicit_panel_ignores_other_judges():
    u = Unanimous(judges=["j1", "j2"]).fit(TABLE)
    # d is now complete and consistent once keys are normalised (best-customers == best_customers)
    assert u.labels_["d"] == "ambiguous" and u.reason_keys_["d"] == "best_customers"
    assert u.status_["c"] == "abstained"


def test_unanimous_accepts_similar_rationales_when_asked():
    v = verdicts("""
x j1 missing_capability age | filters on the customer's age, which the store does not record
x j2 missing_capability birth_year | filters on the customer's age, which the store does not record
y j1 missing_capability age | the store has no age data
y j2 missing_capability occupation | asks for doctors: occupation is unknown
""")

    def toy_embedder(texts):  # bag-of-words unit vectors: identical texts -> 1.0, disjoint -> 0.0
        vocab = sorted({w for t in texts for w in t.split()})
        m = np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    strict = Unanimous().fit(v)
    loose = Unanimous(rationale_similarity=0.9, embedder=toy_embedder).fit(v)
    assert strict.status_.tolist() == ["disagreement", "disagreement"]
    assert loose.status_.tolist() == ["accepted", "disagreement"]
    assert loose.detail_["x"] == "rationale_similar"
    assert loose.reason_keys_["x"] == "age"  # ties broken alphabetically


def test_k_of_n():
    k2 = KOfN(k=2).fit(TABLE)
    assert k2.labels_.tolist() == ["wrong_skill", "solvable", "missing_capability", "ambiguous", "solvable",
                                   "missing_capability", None]
    assert k2.status_["g"] == "disagreement" and k2.detail_["g"] == "below_threshold"
    assert k2.reason_keys_["f"] == "age"  # most common key among the agreeing judges
    k3 = KOfN(k=3).fit(TABLE)
    assert k3.status_.tolist() == ["accepted", "disagreement", "disagreement", "disagreement", "accepted",
                                   "accepted", "disagreement"]


def test_k_of_n_tie_is_never_broken():
    v = verdicts("""
t j1 solvable -
t j2 ambiguous -
t j3 - -
t j4 - -
""")
    k1 = KOfN(k=1).fit(v)
    assert k1.status_["t"] == "disagreement" and k1.detail_["t"] == "tie" and k1.labels_["t"] is None


def test_majority_strict_and_plurality():
    strict = MajorityVote().fit(TABLE)  # needs 2 of 3
    assert strict.labels_.tolist() == ["wrong_skill", "solvable", "missing_capability", "ambiguous", "solvable",
                                       "missing_capability", None]
    v = verdicts("""
m j1 solvable -
m j2 solvable -
m j3 ambiguous -
m j4 -
n j1 - -
n j2 - -
n j3 - -
n j4 - -
""".replace("m j4 -", "m j4 - -"))
    assert MajorityVote().fit(v).status_.tolist() == ["disagreement", "abstained"]  # 2 of 4 is not > half
    assert MajorityVote(strict=False).fit(v).labels_.tolist() == ["solvable", None]


def test_dawid_skene_downweights_a_noisy_judge():
    # j1 and j2 are reliable on 'x'/'y'; j3 always says 'x'. On item q, j1 and j2 say 'y', j3 says 'x'.
    rows = []
    for i in range(10):
        truth = "x" if i % 2 == 0 else "y"
        rows += [f"i{i} j1 {truth} -", f"i{i} j2 {truth} -", f"i{i} j3 x -"]
    rows += ["q j1 y -", "q j2 y -", "q j3 x -", "r j1 - -", "r j2 - -"]
    v = verdicts("\n".join(rows))
    ds = DawidSkene().fit(v)
    assert ds.labels_["q"] == "y"
    assert ds.status_["r"] == "abstained"
    assert ds.confusions_["j3"].loc["y", "x"] > 0.9  # j3 learned to be a constant 'x'
    assert ds.probas_.loc["q", "y"] > 0.95
    strict = DawidSkene(min_posterior=0.999999).fit(v)
    assert (strict.status_ == "disagreement").any()


def test_dawid_skene_initialised_from_calibration_confusions():
    v = verdicts("""
s j1 x -
s j2 y -
""")
    # calibration says j1 is perfect and j2 is random
    conf = {"j1": pd.DataFrame([[50, 0], [0, 50]], index=["x", "y"], columns=["x", "y"]),
            "j2": pd.DataFrame([[25, 25], [25, 25]], index=["x", "y"], columns=["x", "y"])}
    ds = DawidSkene(init_confusion=conf, n_iter=1, labels=["x", "y"]).fit(v)
    assert ds.labels_["s"] == "x"
    # the same votes with the calibration turned round: now j2 is the one to trust. Without the initialisation
    # the two judges are symmetric and both fits would give the same label, so one of the two asserts would fail.
    swapped = {"j1": conf["j2"], "j2": conf["j1"]}
    ds = DawidSkene(init_confusion=swapped, n_iter=1, labels=["x", "y"]).fit(v)
    assert ds.labels_["s"] == "y"


def test_make_strategy_and_unknown_name():
    assert isinstance(make_strategy("k_of_n", k=2), KOfN)
    with pytest.raises(KeyError, match="unknown consensus strategy 'vote'; known: unanimous"):
        make_strategy("vote")


def test_precision_coverage_table():
    gold = pd.Series({"a": "wrong_skill", "b": "ambiguous", "c": "missing_capability", "d": "ambiguous",
                      "e": "solvable", "f": "missing_capability", "g": "solvable"})
    t = precision_coverage({"unanimous": Unanimous().fit(TABLE), "k2": KOfN(k=2).fit(TABLE)}, gold).set_index("strategy")
    assert t.loc["unanimous", ["n", "accepted", "correct"]].tolist() == [7, 2, 2]
    assert t.loc["unanimous", "precision"] == 1.0
    # k2 labels 6 items; b is wrong (solvable vs ambiguous)
    assert t.loc["k2", ["accepted", "correct"]].tolist() == [6, 5]
    assert t.loc["k2", "coverage"] == pytest.approx(6 / 7)
    assert 0 < t.loc["k2", "precision_lo"] < 5 / 6 < t.loc["k2", "precision_hi"] <= 1


def test_consensus_rejects_a_broken_verdicts_table():
    with pytest.raises(ContractError, match="verdicts table .* lacks columns"):
        Unanimous().fit(pd.DataFrame({"item_id": ["a"], "judge": ["j"], "category": ["x"]}))
