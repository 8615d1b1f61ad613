"""The audit: sample size from a target width, a stratified draw, the stratified precision estimate and its coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.curation.audit import audit_precision, audit_size, draw_audit, wilson_interval


def accepted_table(n: int, shares: list[float], precisions: list[float], *, seed: int = 1) -> pd.DataFrame:
    """``item_id, category, truth``: accepted labels of categories ``c0, c1, ...`` drawn at ``shares``; a label is
    right (truth = category) with its category's precision, else the truth is ``other``."""
    rng = np.random.default_rng(seed)
    k = rng.choice(len(shares), size=n, p=shares)
    names = np.array([f"c{i}" for i in range(len(shares))])
    right = rng.random(n) < np.asarray(precisions)[k]
    return pd.DataFrame({"item_id": [f"i{i:05d}" for i in range(n)], "category": names[k],
                         "truth": np.where(right, names[k], "other")})


def reviewed(table: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
    """A reviewer who answers every sampled item with its truth."""
    return sample.merge(table[["item_id", "truth"]], on="item_id").rename(columns={"truth": "human_label"})


def test_size_follows_the_normal_approximation_with_finite_population_correction():
    assert audit_size(100_000, half_width=0.05, max_n=0) == 383  # 1.96^2 * 0.25 / 0.05^2 = 384.1, corrected for N
    assert audit_size(100_000, half_width=0.05, max_n=200) == 200
    assert audit_size(500, half_width=0.05, max_n=0) == 218  # 384.1 / (1 + 383.1 / 500)
    assert audit_size(100_000, half_width=0.05, max_n=0, expected=0.9) == 139  # 1.96^2 * 0.09 / 0.0025
    assert audit_size(30, half_width=0.05, max_n=200) == 28
    assert audit_size(0, half_width=0.05) == 0
    with pytest.raises(ValueError, match="half_width 0"):
        audit_size(100, half_width=0.0)


def test_draw_is_stratified_proportional_seeded_and_order_free():
    t = accepted_table(1000, [0.7, 0.2, 0.09, 0.01], [0.9, 0.9, 0.9, 0.9])
    sizes = t["category"].value_counts()
    s = draw_audit(t, 100, seed=3)
    assert len(s) == 100 and s["item_id"].is_unique and set(s["item_id"]) <= set(t["item_id"])
    got = s["category"].value_counts()
    for cat, n_h in sizes.items():  # proportional, within one of its share; the smallest still gets two
        assert abs(got[cat] - max(2, 100 * n_h / 1000)) <= 1, (cat, got[cat], n_h)
    again = draw_audit(t.sample(frac=1, random_state=0), 100, seed=3)
    assert again["item_id"].tolist() == s["item_id"].tolist()
    assert draw_audit(t, 100, seed=4)["item_id"].tolist() != s["item_id"].tolist()
    assert len(draw_audit(t, 5000, seed=3)) == 1000  # never more than the accepted labels
    assert draw_audit(t, 0, seed=3).empty


def test_estimate_weights_strata_by_their_share_among_accepted_labels():
    # 90 accepted c0 (all right) and 10 accepted c1 (all wrong): true precision 0.9
    t = pd.DataFrame({"item_id": [f"i{i}" for i in range(100)], "category": ["c0"] * 90 + ["c1"] * 10})
    ans = pd.DataFrame({"item_id": ["i0", "i1", "i2", "i90", "i91", "i92"],
                        "human_label": ["c0", "c0", "c0", "x", "x", "x"]})
    est = audit_precision(t, ans)
    assert est.n == 6 and est.precision == pytest.approx(0.9)  # not 3/6: c1 was over-sampled
    assert est.lo < 0.9 < est.hi and est.unanswered_weight == 0.0
    s = est.strata.set_index("category")
    assert s.loc["c0", ["N", "n", "confirmed"]].tolist() == [90, 3, 3]
    assert s.loc["c1", "weight"] == pytest.approx(0.1)


def test_an_unanswered_stratum_widens_the_interval_by_its_weight():
    t = pd.DataFrame({"item_id": [f"i{i}" for i in range(100)], "category": ["c0"] * 80 + ["c1"] * 20})
    ans = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)], "human_label": "c0"})
    est = audit_precision(t, ans)
    assert est.precision == 1.0 and est.unanswered_weight == pytest.approx(0.2)
    assert est.lo <= 0.8 and est.hi == 1.0
    none = audit_precision(t, ans.iloc[:0])
    assert none.n == 0 and np.isnan(none.precision)
    census = audit_precision(t, pd.DataFrame({"item_id": t["item_id"], "human_label": t["category"]}))
    assert (census.precision, census.lo, census.hi) == (1.0, 1.0, 1.0)  # everything reviewed: no sampling error


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(0.8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # the textbook Wilson interval of 8/10
    assert wilson_interval(0.5, float("inf")) == (0.5, 0.5)


@pytest.mark.parametrize("n_accepted, shares, precisions", [
    (3000, [0.6, 0.25, 0.1, 0.05], [0.95, 0.85, 0.7, 0.9]),
    (400, [0.8, 0.15, 0.05], [0.98, 0.9, 0.6]),  # half the accepted labels sampled: the correction matters
])
def test_the_interval_covers_the_known_precision_in_seeded_draws(n_accepted, shares, precisions):
    t = accepted_table(n_accepted, shares, precisions)
    true = float((t["category"] == t["truth"]).mean())
    hits = []
    for draw in range(50):
        est = audit_precision(t, reviewed(t, draw_audit(t, 200, seed=draw)))
        assert est.n == 200
        hits.append(est.lo <= true <= est.hi)
    assert np.mean(hits) >= 0.85, (true, np.mean(hits))


def test_a_census_interval_holds_the_exact_precision():
    """Every accepted label reviewed: the estimate is the precision itself and its interval holds it exactly."""
    import pandas as pd

    from flywheel_lib.curation.audit import audit_precision

    cats = ["a"] * 7 + ["b"] * 11 + ["c"] * 13
    accepted = pd.DataFrame({"item_id": range(len(cats)), "category": cats, "status": "accepted"})
    human = [c if i % 3 else "x" for i, c in enumerate(cats)]
    est = audit_precision(accepted, pd.DataFrame({"item_id": range(len(cats)), "human_label": human}))
    true = sum(h == c for h, c in zip(human, cats)) / len(cats)
    assert est.lo <= true <= est.hi and est.precision == true
