"""A simulated reviewer for generated data, and what a review changed.

On a generated domain the hidden truth knows every item's label, so a person working through the top of the review
queue can be simulated: :func:`simulate_review` answers the first ``budget`` rows of a
:func:`~flywheel_lib.curation.review.review_queue` with the truth, wrong at ``error_rate`` (a wrong answer is
another category, drawn uniformly with a seeded generator). Its answers are a filled-in queue that goes through the
same path as a real reviewer's file (:func:`~flywheel_lib.curation.review.export_review`, then
:func:`~flywheel_lib.curation.review.import_review`, then ``resolve(..., reviewed=...)``). :func:`review_effect`
compares the resolutions before and after against the truth, so a researcher can size a real review.

>>> import pandas as pd
>>> from flywheel_lib.taxonomy import load_taxonomy
>>> q = pd.DataFrame({"item_id": ["a", "b"], "human_label": "", "human_output": "", "note": "", "reviewer": ""})
>>> t = pd.DataFrame({"item_id": ["a", "b"], "true_label": ["ambiguous", "solvable"], "gold_output": [None, "x > 1"]})
>>> simulate_review(q, t, budget=1, taxonomy=load_taxonomy("params/taxonomy/segments.yaml"))[["item_id", "human_label"]].values.tolist()
[['a', 'ambiguous']]
"""

from __future__ import annotations

import random

import pandas as pd

from ..taxonomy import Taxonomy
from ._votes import is_missing

__all__ = ["simulate_review", "review_effect"]


def simulate_review(queue: pd.DataFrame, truth: pd.DataFrame, *, budget: int, taxonomy: Taxonomy,
                    error_rate: float = 0.0, seed: int = 7, reviewer: str = "simulated") -> pd.DataFrame:
    """The first ``budget`` rows of ``queue`` with ``human_label`` (and, for a solvable answer that is right,
    ``human_output`` = the truth's ``gold_output`` when it has one) filled in; rows the truth does not know are
    skipped. ``truth``: ``item_id, true_label`` (+ ``gold_output``)."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"simulate_review: error_rate {error_rate} is not in [0, 1]")
    if budget < 0:
        raise ValueError(f"simulate_review: budget {budget} is negative")
    if "true_label" not in truth.columns:
        raise ValueError("simulate_review: the truth table has no true_label column")
    t = truth.drop_duplicates("item_id").set_index("item_id")
    gold = t["gold_output"] if "gold_output" in t.columns else pd.Series(dtype=object)
    rng = random.Random(seed)
    top = queue[queue["item_id"].isin(t.index)].head(budget).copy()
    labels, outputs, notes = [], [], []
    for iid in top["item_id"]:
        true = t.at[iid, "true_label"]
        wrong = rng.random() < error_rate
        label = rng.choice([c for c in taxonomy.ids if c != true]) if wrong else true
        g = gold.get(iid)
        labels.append(label)
        outputs.append(g if label == taxonomy.solvable_id and not wrong and not is_missing(g) else "")
        notes.append("simulated error" if wrong else "")
    top["human_label"], top["human_output"], top["note"], top["reviewer"] = labels, outputs, notes, reviewer
    return top.reset_index(drop=True)


def review_effect(before: pd.DataFrame, after: pd.DataFrame, truth: pd.DataFrame, reviewed_ids) -> dict:
    """What the review did to the reviewed items, against the truth (``item_id, true_label``).

    A row counts as *right* when it is in the curated set (action other than ``opt_out``) with the true label.
    ``fixed``: wrong or left out before, right after; ``broken``: right before, wrong after (reviewer errors);
    ``added``: left out before, in the set after; ``removed``: the other way; ``fixed_per_item``: ``fixed`` per
    reviewed item; ``net_per_item``: ``(fixed - broken)`` per reviewed item.
    """
    ids = list(dict.fromkeys(reviewed_ids))
    t = truth.drop_duplicates("item_id").set_index("item_id")["true_label"]

    def state(res):
        r = res.drop_duplicates("item_id").set_index("item_id").reindex(ids)
        inset = (r["action"] != "opt_out") & r["action"].notna()
        right = inset & (r["label_after"] == t.reindex(ids))
        return inset, right

    in0, ok0 = state(before)
    in1, ok1 = state(after)
    n = len(ids)
    fixed, broken = int((~ok0 & ok1).sum()), int((ok0 & ~ok1).sum())
    return {"reviewed": n, "fixed": fixed, "broken": broken, "added": int((~in0 & in1).sum()),
            "removed": int((in0 & ~in1).sum()), "fixed_per_item": round(fixed / n, 4) if n else 0.0,
            "net_per_item": round((fixed - broken) / n, 4) if n else 0.0}
