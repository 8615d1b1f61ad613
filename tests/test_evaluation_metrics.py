"""Evaluation metrics on hand-made predictions, with the expected values worked out beside the fixture."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flywheel_lib.evaluation import compute_metrics, confusion, item_outcomes, score_predictions, wilson

# Ten items for variant "v": 6 solvable (s*), 4 impossible (r*).
#   s1..s3 passed; s4 answered a valid query with the wrong customers; s5 refused (false refusal); s6 invalid query.
#   r1 refused, right category; r2 refused, wrong category; r3 answered with a query selecting nobody (zero-result
#   hallucination); r4 answered with a query selecting 12 customers.
PRED = pd.DataFrame([
    # item, label,            passed, refused, refusal_category,   valid, executed, n_selected
    ("s1", "solvable",           True,  False, None,                 True,  True,  40),
    ("s2", "solvable",           True,  False, None,                 True,  True,  3),
    ("s3", "solvable",           True,  False, None,                 True,  True,  0),
    ("s4", "solvable",           False, False, None,                 True,  True,  7),
    ("s5", "solvable",           False, True,  "wrong_skill",        False, False, None),
    ("s6", "solvable",           False, False, None,                 False, False, None),
    ("r1", "missing_capability", True,  True,  "missing_capability", False, False, None),
    ("r2", "wrong_skill",        False, True,  "ambiguous",          False, False, None),
    ("r3", "missing_capability", False, False, None,                 True,  True,  0),
    ("r4", "needs_context",      False, False, None,                 True,  True,  12),
], columns=["item_id", "label", "passed", "refused", "refusal_category", "valid", "executed", "n_selected"]).assign(
    variant="v")

EXPECTED = {  # metric: (k, n)
    "pass_rate": (4, 10),            # s1 s2 s3 r1
    "query_pass_rate": (3, 6),       # s1 s2 s3
    "refusal_accuracy": (6, 10),     # s1 s2 s3 s4 s6 (did not refuse) + r1
    "false_refusal_rate": (1, 6),    # s5
    "zero_result_rate": (1, 4),      # r3
    "valid_rate": (6, 7),            # 7 non-refused answers (s1-s4 s6 r3 r4); all but s6 valid
}


def test_metrics_match_hand_counts():
    m = compute_metrics(PRED).set_index("metric")
    for metric, (k, n) in EXPECTED.items():
        assert (m.loc[metric, "k"], m.loc[metric, "n"]) == (k, n), metric
        assert m.loc[metric, "value"] == pytest.approx(k / n)
        assert m.loc[metric, "lo"] < k / n < m.loc[metric, "hi"]


def test_wilson_interval_known_values():
    # Wilson (1927) 95% interval for 4/10: [0.1682, 0.6873]; for 0/10 the lower bound is exactly 0.
    p, lo, hi = wilson(4, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.1682, 0.6873)
    assert wilson(0, 10)[1] == 0.0 and round(wilson(0, 10)[2], 4) == 0.2775
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_confusion_counts():
    conf = confusion(PRED, "v", labels=["solvable", "missing_capability", "wrong_skill", "needs_context"])
    assert conf.loc["solvable", "solvable"] == 5 and conf.loc["solvable", "wrong_skill"] == 1
    assert conf.loc["wrong_skill", "ambiguous"] == 1
    assert conf.loc["missing_capability", "missing_capability"] == 1
    assert conf.loc["missing_capability", "solvable"] == 1 and conf.loc["needs_context", "solvable"] == 1
    assert int(conf.to_numpy().sum()) == 10


def test_item_outcomes_denominators():
    oc = item_outcomes(PRED).set_index("item_id")
    assert math.isnan(oc.loc["r1", "false_refusal_rate"]) and math.isnan(oc.loc["s1", "zero_result_rate"])
    assert oc.loc["r3", "zero_result_rate"] == 1.0 and oc.loc["r4", "zero_result_rate"] == 0.0


def test_score_predictions_by_execution_on_the_segments_domain():
    from flywheel_lib.domains import get_domain

    dom = get_domain("segments")
    items = pd.DataFrame([
        ("a", "solvable", "amount_spent > 500"),
        ("b", "solvable", "amount_spent > 500"),
        ("c", "solvable", "number_of_orders >= 2"),
        ("d", "missing_capability", None),
        ("e", "wrong_skill", None),
        ("f", "missing_capability", None),
    ], columns=["item_id", "label", "output"])
    answers = [
        "amount_spent>500",                                 # same customers: passes
        "amount_spent > 100",                               # valid, other customers: fails
        "number_of_orders >>= 2",                           # does not parse
        "REFUSE missing_capability: no occupation data.",   # right refusal
        "REFUSE ambiguous: which one?",                     # wrong category
        "amount_spent > 100000000",                         # zero-result hallucination
    ]
    p = score_predictions(items, answers, variant="v", domain=dom,
                          refusal_ids=["needs_context", "missing_capability", "wrong_skill", "ambiguous"])
    assert list(p["passed"]) == [True, False, False, True, False, False]
    assert list(p["valid"]) == [True, True, False, False, False, True]
    assert list(p["refused"]) == [False, False, False, True, True, False]
    assert p.loc[5, "n_selected"] == 0
    m = compute_metrics(p).set_index("metric")
    assert m.loc["zero_result_rate", "value"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="6 items but 2 answers"):
        score_predictions(items, answers[:2], variant="v", domain=dom)


def test_plots_draw_with_zero_and_empty_denominators(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from flywheel_lib.evaluation import plot_confusion, plot_metric_bars, plot_training_loss

    none_refused = PRED.assign(refused=False, refusal_category=None, variant="w")
    m = compute_metrics(pd.concat([PRED, none_refused]))   # "w" has 0/6 false refusals: lo == value == 0
    for fig in (plot_metric_bars(m), plot_confusion(confusion(PRED, "v"), title="v"),
                plot_training_loss(pd.DataFrame({"variant": ["a"] * 3, "step": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}))):
        fig.savefig(tmp_path / "f.png")
        assert (tmp_path / "f.png").stat().st_size > 1000
