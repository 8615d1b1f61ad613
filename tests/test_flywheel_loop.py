"""The loop's small parts on hand-made tables: budgeted sampling, traffic logging, lineage verdicts, patterns."""

from __future__ import annotations

import pandas as pd

from flywheel_lib import load_taxonomy
from flywheel_lib.flywheel import budget_sample, cycle_verdict, log_traffic
from flywheel_lib.flywheel.traffic import answer_correct


def test_budget_sample_takes_failure_signals_first_then_equal_strata():
    df = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(12)],
        "predicted_category": ["solvable"] * 9 + ["wrong_skill"] * 3,
        "workload_id": "seg",
        "signal_retry": [True, True] + [False] * 10,
        "signal_correction": [False] * 11 + [True],
    })
    out = budget_sample(df, 6, seed=0, signal_share=0.5)
    assert len(out) == 6 and out["item_id"].is_unique
    assert set(out.loc[out["sample_reason"] == "signal", "item_id"]) == {"i0", "i1", "i11"}
    rest = out[out["sample_reason"] != "signal"]
    # the rest goes round-robin over the strata: solvable, wrong_skill, solvable
    assert rest["predicted_category"].value_counts().to_dict() == {"solvable": 2, "wrong_skill": 1}
    assert len(budget_sample(df, 50)) == 12 and budget_sample(df, 0).empty


def test_the_budget_goes_to_what_is_new_against_the_corpus(dom):
    """Traffic of a cycle whose new scenario the corpus has never seen: under a tight budget, the requests of that
    scenario are judged before familiar ones (after the failure signals)."""
    from flywheel_lib.domains.segments.drift import load_drift_schedule
    from flywheel_lib.flywheel.sampling import novelty_against

    sched = load_drift_schedule("params/drift/segments.yaml")
    corpus = dom.traffic_requests(seed=1, cycle=1, n=600, schedule=sched)["text"]
    t2 = dom.traffic_requests(seed=7, cycle=2, n=400, schedule=sched)
    new = sched.scenarios(upto=2).query("cycle == 2 and category != 'solvable'")["scenario_id"]
    fresh = t2["scenario_id"].isin(new)  # requests of the refusal scenarios that first appear in cycle 2
    t2 = t2.assign(novelty=novelty_against(t2["text"], corpus), predicted_category="solvable")
    assert t2.loc[fresh, "novelty"].median() > t2.loc[~fresh, "novelty"].median()
    out = budget_sample(t2, 80, seed=0, novelty_share=0.5)
    by_novelty = out[out["sample_reason"] == "novelty"]
    assert len(by_novelty) == 40
    assert fresh[by_novelty.index].mean() > 1.5 * fresh.mean()  # the new scenarios, over-represented
    assert "novelty" not in set(budget_sample(t2.drop(columns="novelty"), 80, seed=0)["sample_reason"])
    assert (novelty_against(t2["text"].head(3), pd.Series(dtype=str)) == 1.0).all()


class _Dom:
    """A two-query toy domain: queries select by their text."""

    def same_result(self, a, b):
        return a.strip() == b.strip()


def test_log_traffic_labels_what_the_model_did_and_signals_follow_correctness():
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    req = pd.DataFrame({
        "item_id": ["t0", "t1", "t2", "t3"], "text": ["a", "b", "c", "d"], "workload_id": "seg",
        "timestamp": pd.Timestamp("2026-07-01", tz="UTC"),
        "true_label": ["solvable", "missing_capability", "wrong_skill", "solvable"],
        "gold_output": ["amount_spent > 5", None, None, "number_of_orders > 1"],
        "reason_key": ["amount_spent", "age", "analytics", "number_of_orders"],
        "family": "f", "scenario": ["known", "new", "known", "known"],
    })
    answers = ["amount_spent > 5", "REFUSE missing_capability: no age. Try: x", "amount_spent > 1",
               "REFUSE: no idea"]
    logs, truth = log_traffic(req, answers, domain=_Dom(), taxonomy=tax, seed=1)
    assert logs["label"].iloc[:3].tolist() == ["solvable", "missing_capability", "solvable"]
    assert pd.isna(logs["label"].iloc[3])  # a refusal naming no category is logged unlabelled
    assert logs["output"].tolist()[0] == "amount_spent > 5" and logs["output"].isna().tolist()[1]
    assert truth["correct"].tolist() == [True, True, False, False]
    assert "true_label" not in logs.columns and (logs["source"] == "traffic").all()
    assert logs["predicted_category"].iloc[3] == "refused_without_category"
    assert not answer_correct("solvable", "x > 1", False, None, None, domain=_Dom(), solvable_id="solvable")


def _summary(winners):
    return pd.DataFrame({"cycle": [1, 2], "winner": winners})


def _metrics(v1, v2, half):
    return pd.DataFrame({"cycle": [1, 2], "variant": ["curated", "curated"], "metric": "pass_rate",
                         "value": [v1, v2], "lo": [v1 - half, v2 - half], "hi": [v1 + half, v2 + half]})


def test_cycle_verdict_is_honest_about_noise():
    text, delta = cycle_verdict(_summary(["curated", "curated"]), _metrics(0.50, 0.52, 0.05))
    assert round(delta, 3) == 0.02 and "nothing we can tell apart from noise" in text
    text, delta = cycle_verdict(_summary(["curated", "curated"]), _metrics(0.40, 0.60, 0.05))
    assert "gain beyond the intervals" in text
    text, delta = cycle_verdict(_summary(["curated", "curated"]).iloc[:1], _metrics(0.4, 0.6, 0.05))
    assert delta is None and "first cycle" in text


def test_cycles_after_a_run_that_did_not_succeed_says_why(runs):
    import json

    import pytest

    from flywheel_lib.flywheel.cycles import run_cycles
    from flywheel_lib.runner import RecipeError

    bad = runs / "20261201-000000_smoke_aaaaaa"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text(json.dumps({"status": "failed", "stages": []}))
    with pytest.raises(RecipeError, match="did not succeed \\(status 'failed'\\); a next cycle needs"):
        run_cycles("params/smoke.yaml", 1, progress=False, after=bad.name)
    assert sorted(p.name for p in runs.iterdir()) == [bad.name]  # nothing ran, nothing was written
