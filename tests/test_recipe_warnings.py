"""Warnings where a recipe cannot do what it seems to, on small hand-made tables; and reports that say in words
when a table or plot has nothing to show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from flywheel_lib.curation import plots
from flywheel_lib.curation.warnings import recipe_warnings
from flywheel_lib.data.stats import UNLABELLED, class_balance, nothing_to_show, zero_result_rate
from flywheel_lib.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/triagesql.yaml")  # answerable (solvable), ambiguous, two refusals


def test_a_healthy_recipe_has_no_warnings(tax):
    seed = pd.DataFrame({"label": tax.ids * 2})
    consensus = pd.DataFrame({"item_id": ["p1", "p2"], "status": ["accepted", "disagreement"]})
    res = pd.DataFrame({"rule": ["solvable_keep", "solvable_output_invalid"], "action": ["keep", "opt_out"]})
    sets = pd.DataFrame({"variant": "curated", "label": tax.ids})
    assert recipe_warnings(tax, seed_items=seed, consensus=consensus, resolutions=res, train_sets=sets) == []


def test_a_class_without_seed_rows_is_named(tax):
    seed = pd.DataFrame({"label": ["answerable", "ambiguous", "wrong_skill"]})
    (w,) = recipe_warnings(tax, seed_items=seed)
    assert w.startswith("taxonomy class 'missing_capability' (refusal) has no seed rows")


def test_a_gate_that_accepts_nothing(tax):
    consensus = pd.DataFrame({"item_id": ["p1", "p2", "p3"], "status": ["disagreement", "abstained", "disagreement"]})
    (w,) = recipe_warnings(tax, consensus=consensus)
    assert "accepted none of the 3 judged items" in w and "'disagreement': 2" in w
    assert recipe_warnings(tax, consensus=consensus.iloc[:0])[0].startswith("the consensus gate judged no items")


def test_every_solvable_row_opted_out_for_an_invalid_output(tax):
    # the shape of a domain without an executor under the default check_outputs: every answerable row opts out
    res = pd.DataFrame({"rule": ["solvable_output_invalid"] * 3 + ["unsolvable_to_refusal"],
                        "action": ["opt_out"] * 3 + ["refusal"]})
    (w,) = recipe_warnings(tax, resolutions=res)
    assert w.startswith("every solvable production row opted out: 3 rows left under solvable_output_invalid")
    assert "check_outputs: false" in w
    res.loc[0, ["rule", "action"]] = ["solvable_keep", "keep"]  # one kept: the recipe still learns answers
    assert recipe_warnings(tax, resolutions=res) == []


def test_a_curated_set_with_an_empty_class(tax):
    sets = pd.DataFrame({"variant": ["curated"] * 3 + ["naive_merge"],
                         "label": ["ambiguous", "wrong_skill", "missing_capability", "answerable"]})
    sets.attrs["solvable_without_query"] = ["p1", "p2"]
    (w,) = recipe_warnings(tax, train_sets=sets)
    assert w.startswith("the curated training set has 0 answerable rows (class 'answerable')")
    assert "2 solvable rows were left out for having no query" in w
    two = recipe_warnings(tax, train_sets=sets[sets["label"] != "wrong_skill"])
    assert len(two) == 2 and "no rows of class 'wrong_skill' (refusal)" in two[1]
    assert recipe_warnings(tax, train_sets=sets[sets["variant"] != "curated"]) == [
        "the curated training set is empty: there is nothing to fine-tune on"]


def test_precision_coverage_plot_draws_a_perfect_strategy():
    # precision 1.0 whose Wilson upper end comes out a hair below it: the error bar is clipped at 0
    t = pd.DataFrame({"strategy": ["unanimous", "judge:a", "majority"], "coverage": [0.4, 1.0, 0.0],
                      "precision": [1.0, 0.8, float("nan")], "precision_lo": [0.9, 0.7, float("nan")],
                      "precision_hi": [1.0 - 1e-12, 0.9, float("nan")]})
    fig = plots.plot_precision_coverage(t)
    assert len(fig.axes[0].get_legend().get_texts()) == 2  # the strategy that accepted nothing has no point


def test_plots_with_nothing_to_show_say_so():
    for fig, words in [
        (plots.plot_precision_coverage(pd.DataFrame(columns=["strategy", "coverage", "precision", "precision_lo",
                                                            "precision_hi"])), "no strategy accepted any item"),
        (plots.plot_kappa(pd.DataFrame({"judge": ["a"], "kappa": [float("nan")], "kappa_lo": [float("nan")],
                                        "kappa_hi": [float("nan")]})), "no judge has a defined kappa"),
        (plots.plot_confusions({}), "no judge to show"),
        (plots.plot_actions(pd.DataFrame(columns=["label_after", "evidence", "action"])), "no production item"),
    ]:
        assert words in fig.axes[0].texts[0].get_text()


def test_user_data_tables_say_why_instead_of_none(tax):
    items = pd.DataFrame({"source": ["seed", "seed", "production"], "label": ["answerable", "ambiguous", None],
                          "text": ["a", "b", "c"], "output": [None, None, None]})
    bal = class_balance(items)
    assert UNLABELLED in bal.index and "(none)" not in bal.index
    zr = zero_result_rate(items, None, tax)
    assert zr["zero_rate"] is None and "no true_label" in zr["why"]
    zr = zero_result_rate(items.assign(true_label=["answerable", "ambiguous", "wrong_skill"]), None, tax)
    assert "cannot execute" in zr["why"]
    assert nothing_to_show(pd.DataFrame(), "signals") == "no signals to show"
    assert nothing_to_show(pd.DataFrame({"a": [None]}), "signals") == "no signals to show"
    assert nothing_to_show(pd.DataFrame({"a": [1]}), "signals") is None
