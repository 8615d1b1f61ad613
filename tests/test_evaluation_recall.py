"""Per-category refusal recall with Wilson intervals, and the manifest metric names of 05, on hand-made predictions."""

from __future__ import annotations

import pandas as pd
import pytest

from flywheel_lib.evaluation import category_recall, compute_metrics, item_outcomes, manifest_metrics, seed_tables


def _pred(variant, rows):
    return pd.DataFrame([{"item_id": i, "variant": variant, "label": lab, "refused": cat is not None,
                          "refusal_category": None if cat in (None, "?") else cat, "passed": passed,
                          "valid": valid, "executed": valid, "n_selected": nsel}
                         for i, (lab, cat, passed, valid, nsel) in enumerate(rows)])


# 4 solvable (1 refused), 3 missing_capability (2 right, 1 as wrong_skill), 2 wrong_skill (1 right, 1 answered with a
# query that selects nobody), 1 needs_context refused with an unknown category.
ROWS = [("solvable", None, True, True, 5), ("solvable", None, False, True, 3), ("solvable", None, False, False, None),
        ("solvable", "wrong_skill", False, False, None),
        ("missing_capability", "missing_capability", True, False, None),
        ("missing_capability", "missing_capability", True, False, None),
        ("missing_capability", "wrong_skill", False, False, None),
        ("wrong_skill", "wrong_skill", True, False, None), ("wrong_skill", None, False, True, 0),
        ("needs_context", "?", False, False, None)]


def test_category_recall_counts_the_diagonal_with_intervals():
    r = category_recall(_pred("curated", ROWS)).set_index("category")
    assert list(r.index) == ["solvable", "missing_capability", "needs_context", "wrong_skill"]
    assert (r.loc["missing_capability", "k"], r.loc["missing_capability", "n"]) == (2, 3)
    assert r.loc["missing_capability", "top_error"] == "wrong_skill"
    assert (r.loc["wrong_skill", "k"], r.loc["wrong_skill", "n"]) == (1, 2)
    assert r.loc["wrong_skill", "top_error"] == "solvable"
    assert r.loc["needs_context", "k"] == 0 and r.loc["needs_context", "top_error"] == "refuse_unknown"
    assert (r.loc["solvable", "k"], r.loc["solvable", "n"]) == (3, 4)
    # Wilson 2/3: (0.2077, 0.9385)
    assert r.loc["missing_capability", "lo"] == pytest.approx(0.2077, abs=1e-4)
    assert r.loc["missing_capability", "hi"] == pytest.approx(0.9385, abs=1e-4)
    fixed = category_recall(_pred("curated", ROWS), categories=["ambiguous", "wrong_skill"])
    assert list(fixed["category"]) == ["ambiguous", "wrong_skill"] and int(fixed["n"].iloc[0]) == 0


def test_refusal_recall_and_manifest_names():
    pred = pd.concat([_pred("curated", ROWS), _pred("naive_merge", [(r[0], None, False, True, 0) for r in ROWS]),
                      _pred("production_only", [(r[0], None, False, True, 1) for r in ROWS])], ignore_index=True)
    m = compute_metrics(pred)
    cur = m[m["variant"] == "curated"].set_index("metric")
    assert (cur.loc["refusal_recall", "k"], cur.loc["refusal_recall", "n"]) == (3, 6)
    assert cur.loc["false_refusal_rate", "value"] == pytest.approx(0.25)
    assert cur.loc["zero_result_rate", "value"] == pytest.approx(1 / 6)
    assert cur.loc["valid_rate", "value"] == pytest.approx(3 / 4)
    names = manifest_metrics(m, seed_tables(item_outcomes(pred)))
    for v in ("curated", "naive_merge", "production_only"):
        for k in ("refusal_recall", "false_refusal_rate", "query_pass_rate", "valid_rate", "zero_result_rate",
                  "pass_rate"):
            assert f"{k}_{v}" in names
    assert names["pass_rate_curated"] == pytest.approx(0.4)
    assert names["diff_pass_rate_curated_vs_naive_merge"] == pytest.approx(0.4)
    assert 0 < names["p_pass_rate_curated_vs_naive_merge"] < 1
    assert "p_pass_rate_curated_vs_production_only" in names
