"""McNemar comparisons and the promotion rule, on hand-made per-item outcomes with both outcomes of the rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.evaluation import compare_variants, decide_promotion, item_outcomes, mcnemar_pair, seed_tables


def outcomes(base_pass, cand_pass, base_fr, cand_fr):
    """Per-item outcomes for variants 'base' and 'cand' (false-refusal NaN on items it does not count)."""
    n = len(base_pass)
    ids = [f"i{k}" for k in range(n)]
    return pd.DataFrame({
        "item_id": ids * 2, "variant": ["base"] * n + ["cand"] * n,
        "pass_rate": np.r_[base_pass, cand_pass].astype(float),
        "false_refusal_rate": np.r_[base_fr, cand_fr].astype(float),
    })


def test_mcnemar_counts_and_exact_p():
    # 20 items: both pass 5, only cand passes 10, only base passes 1, neither 4.
    base = [1] * 5 + [0] * 10 + [1] + [0] * 4
    cand = [1] * 5 + [1] * 10 + [0] + [0] * 4
    r = mcnemar_pair(outcomes(base, cand, [0] * 20, [0] * 20), "base", "cand", "pass_rate")
    assert (r["both"], r["a_only"], r["b_only"], r["neither"]) == (5, 1, 10, 4)
    assert (r["rate_a"], r["rate_b"], r["diff"]) == (0.3, 0.75, 0.45)
    # exact binomial test, 1 success in 11 discordant pairs: 2 * P(X <= 1 | n=11, p=.5) = 24/2048
    assert r["p_value"] == pytest.approx(24 / 2048)


def test_promoted_when_better_and_no_false_refusal_rise():
    base = [1] * 5 + [0] * 10 + [1] + [0] * 4
    cand = [1] * 5 + [1] * 10 + [0] + [0] * 4
    fr = [0] * 20
    d = decide_promotion(outcomes(base, cand, fr, fr), candidate="cand", baseline="base")
    assert d["promoted"] is True and d["winner"] == "cand"
    assert "0.750 vs 0.300" in d["reason"]


def test_kept_when_false_refusals_rise_significantly():
    base = [0] * 20
    cand = [1] * 14 + [0] * 6          # passes far more ...
    base_fr = [0] * 20
    cand_fr = [1] * 12 + [0] * 8       # ... but refuses 12 of 20 solvable items the baseline answered
    d = decide_promotion(outcomes(base, cand, base_fr, cand_fr), candidate="cand", baseline="base")
    assert d["promoted"] is False and d["winner"] == "base"
    assert "false-refusal rate rises significantly" in d["reason"]


def test_kept_when_not_better_or_not_significant():
    same = [1, 0] * 10
    d = decide_promotion(outcomes(same, same, [0] * 20, [0] * 20), candidate="cand", baseline="base")
    assert d["promoted"] is False and "does not beat" in d["reason"]
    base = [0] * 20
    cand = [1] * 3 + [0] * 17          # better, but 3 discordant pairs are not significant (p = 0.25)
    d = decide_promotion(outcomes(base, cand, [0] * 20, [0] * 20), candidate="cand", baseline="base")
    assert d["promoted"] is False and "not significantly" in d["reason"]
    d = decide_promotion(outcomes(base, cand, [0] * 20, [0] * 20), candidate="cand", baseline="base",
                         require_significant=False)
    assert d["promoted"] is True


def test_seed_tables_from_predictions():
    pred = pd.DataFrame({
        "item_id": ["a", "b"] * 3, "variant": ["production_only"] * 2 + ["naive_merge"] * 2 + ["curated"] * 2,
        "label": ["solvable", "wrong_skill"] * 3, "passed": [True, False, True, False, True, True],
        "refused": [False, False, False, True, False, True],
        "refusal_category": [None, None, None, "ambiguous", None, "wrong_skill"],
        "valid": [True, True, True, False, True, False], "executed": [True, True, True, False, True, False],
        "n_selected": [4, 0, 4, None, 4, None]})
    tables = seed_tables(item_outcomes(pred))
    assert set(tables) == {"production_vs_curated", "naive_vs_curated"}
    t = tables["naive_vs_curated"].set_index("metric")
    assert t.loc["refusal_accuracy", "rate_a"] == 0.5 and t.loc["refusal_accuracy", "rate_b"] == 1.0
    t = tables["production_vs_curated"].set_index("metric")
    assert t.loc["zero_result_rate", "rate_a"] == 1.0 and t.loc["zero_result_rate", "rate_b"] == 0.0
    assert len(compare_variants(item_outcomes(pred), "naive_merge", "curated", ("pass_rate",))) == 1


def test_false_refusal_tolerance_admits_a_small_rise_and_still_blocks_a_large_one():
    n = 100
    base, cand = [0] * n, [1] * 40 + [0] * 60            # the candidate passes far more
    small = [1] * 8 + [0] * 92                            # 8% false refusals where the baseline had none (p = 0.008)
    large = [1] * 20 + [0] * 80
    d = decide_promotion(outcomes(base, cand, [0] * n, small), candidate="cand", baseline="base")
    assert d["promoted"] is False                        # the strict rule: any significant rise blocks
    d = decide_promotion(outcomes(base, cand, [0] * n, small), candidate="cand", baseline="base",
                         false_refusal_tolerance=0.10)
    assert d["promoted"] is True and "within the tolerance of 0.10" in d["reason"]
    assert d["false_refusal_tolerance"] == 0.10
    d = decide_promotion(outcomes(base, cand, [0] * n, large), candidate="cand", baseline="base",
                         false_refusal_tolerance=0.10)
    assert d["promoted"] is False and "above the tolerance of 0.10" in d["reason"]
    with pytest.raises(ValueError, match="false_refusal_tolerance"):
        decide_promotion(outcomes(base, cand, [0] * n, small), candidate="cand", baseline="base",
                         false_refusal_tolerance=1.5)
