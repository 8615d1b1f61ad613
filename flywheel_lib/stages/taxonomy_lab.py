"""The taxonomy lab's steps: the seed as 01 judged it, one edit, both versions re-judged on the seed (out of fold)
and on a production slice, and the figures. The building blocks are in :mod:`flywheel_lib.taxonomy_lab`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd


@dataclass
class LabSeed:
    """The seed rows as 01_calibrate split them: what the judges are fitted on, what they judge, the human labels,
    and the folds where 01 cross-fitted (None for one few-shot / hold-out split)."""

    items: pd.DataFrame
    fewshot: pd.DataFrame
    holdout: pd.DataFrame
    folds: pd.DataFrame | None

    @property
    def gold(self) -> pd.Series:
        return self.holdout.set_index("item_id")["label"]

    def describe(self, version: str) -> str:
        folds = f" out of fold ({self.folds['fold'].nunique()} folds)" if self.folds is not None else ""
        return f"{version}: {len(self.fewshot)} fit items, {len(self.holdout)} items judged{folds}"


@dataclass
class Rejudged:
    """Kappa before and after per slice and judge, and the seed slice's comparison (confusions, moved items)."""

    scores: pd.DataFrame
    report: Any


def lab_seed(st) -> LabSeed:
    """The lab run's items and 01's ``calibration_split``: the cross-fitted design where 01 used one."""
    items = st.read("items", contract="items")
    split = st.read("calibration_split")
    seed_items = items[items["source"] == "seed"].copy()
    if "reason_key" not in seed_items.columns:
        seed_items["reason_key"] = None
    cross_fitted = "fold" in split.columns and split["fold"].ge(0).all()  # 01_calibrate's out-of-fold design
    in_split = seed_items["item_id"].isin
    fewshot = seed_items if cross_fitted else seed_items[in_split(split.loc[split["split"] == "fewshot", "item_id"])]
    holdout = seed_items[in_split(split.loc[split["split"] == "holdout", "item_id"])]
    return LabSeed(items, fewshot, holdout, split if cross_fitted else None)


def edited_taxonomy(tax, category: str, field: str, value: list):
    """``tax`` with one field of ``category`` changed (``value``'s first item, or the examples to add); ``tax``
    itself without a category."""
    if not category:
        return tax
    text = value if field.startswith(("add_", "examples.")) else (value[0] if value else "")
    return tax.edited(category, field, text)


def rejudge(st, seed: LabSeed, before, after, *, panel: str, domain, cache_dir: str, production_slice: int,
            seed_value: int) -> Rejudged:
    """The panel judges the seed's hold-out under both versions (through the verdict cache), and where the run has a
    hidden truth a production slice no judge fits on; records kappa before and after per judge and the items that
    moved. Returns the scores per slice and judge (written as ``lab_scores``) and the seed slice's comparison."""
    from flywheel_lib.taxonomy_lab import compare_versions, judge_holdout, scores_table
    from flywheel_lib.taxonomy_lab import production_slice as draw

    kw = dict(domain=domain, cache_dir=cache_dir)
    v_before = judge_holdout(before, panel, seed.fewshot, seed.holdout, folds=seed.folds, **kw)
    v_after = judge_holdout(after, panel, seed.fewshot, seed.holdout, folds=seed.folds, **kw)
    st.write("lab_verdicts_before", v_before, contract="verdicts")
    st.write("lab_verdicts_after", v_after, contract="verdicts")
    print(f"cached: before {v_before['cached'].mean():.0%}, after {v_after['cached'].mean():.0%} of verdicts")
    report = compare_versions(v_before, v_after, seed.gold, labels=before.ids)
    for r in report.kappa.itertuples():
        st.metric(f"kappa_before_{r.judge}", round(float(r.kappa_before), 4))
        st.metric(f"kappa_after_{r.judge}", round(float(r.kappa_after), 4), headline=True)
    st.metric("items_moved", int(report.moved["item_id"].nunique()), headline=True)
    truth = st.read("truth") if st.exists("truth") else None
    rows, gold, why = draw(seed.items, truth, production_slice, seed=seed_value)
    st.note("production_slice", why)
    print(why)
    prod_report = None
    if len(rows):  # fitted on the seed as above; no production row is fitted on
        p_before = judge_holdout(before, panel, seed.fewshot, rows, **kw)
        p_after = judge_holdout(after, panel, seed.fewshot, rows, **kw)
        st.write("lab_production_verdicts_before", p_before, contract="verdicts")
        st.write("lab_production_verdicts_after", p_after, contract="verdicts")
        prod_report = compare_versions(p_before, p_after, gold, labels=before.ids)
        for r in prod_report.kappa.itertuples():
            st.metric(f"production_kappa_before_{r.judge}", round(float(r.kappa_before), 4))
            st.metric(f"production_kappa_after_{r.judge}", round(float(r.kappa_after), 4), headline=True)
        st.metric("production_items_moved", int(prod_report.moved["item_id"].nunique()))
    st.metric("production_slice_n", int(len(rows)))
    scores = scores_table(report, prod_report, n_seed=len(seed.holdout), n_production=len(rows))
    st.write("lab_scores", scores)
    return Rejudged(scores, report)


def moved_items(report, holdout: pd.DataFrame) -> pd.DataFrame:
    """The items whose verdict moved, with their text and whether the new verdict is right."""
    texts = holdout.set_index("item_id")["text"]
    moved = report.moved.assign(text=report.moved["item_id"].map(texts))
    moved["now_right"] = moved["after"] == moved["gold"]
    return moved


def plot_kappa_before_after(scores: pd.DataFrame, title: str):
    """Kappa before and after per judge, one panel per slice."""
    slices = list(scores["slice"].unique())
    fig, axes = plt.subplots(1, len(slices), figsize=(6 * len(slices), 3), squeeze=False)
    for ax, name in zip(axes[0], slices):
        scores[scores["slice"] == name].set_index("judge")[["kappa_before", "kappa_after"]].plot.bar(ax=ax)
        ax.set_ylabel("Cohen's kappa")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
