"""The taxonomy lab: edit a category, re-judge the calibration hold-out, see what moved.

A researcher changes a category's description, rule or examples (:meth:`Taxonomy.edited`), the panel re-judges the
calibration hold-out with the new taxonomy (through the verdict cache: only prompts that changed cost a call), and
:func:`compare_versions` lays the two versions side by side: kappa per judge, confusion between categories, and the
items whose verdict moved. Saving writes a new taxonomy version file.

    before = judge_holdout(tax, panel_path, fewshot, holdout, cache_dir=...)
    after = judge_holdout(tax.edited("ambiguous", "add_positive", ["customers who are sort of loyal"]), ...)
    report = compare_versions(before, after, holdout.set_index("item_id")["label"], labels=tax.ids)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .curation.calibration import confusion_table, judge_report
from .taxonomy import Taxonomy

__all__ = ["judge_holdout", "compare_versions", "LabReport", "fit_pool"]


def fit_pool(fewshot: pd.DataFrame, tax: Taxonomy, exclude=()) -> pd.DataFrame:
    """What offline judges fit on: the seed's few-shot pool plus the taxonomy's own examples.

    ``exclude``: texts that must never be fitted on (the calibration hold-out); an example equal to one of them
    after normalisation is left out, so no hold-out item reaches a judge through the taxonomy either.
    """
    from .data.stats import match_key

    ex = tax.example_items()
    banned = {match_key(t) for t in exclude}
    ex = ex[~ex["text"].map(match_key).isin(banned)]
    return pd.concat([fewshot, ex[[c for c in ex.columns if c in fewshot.columns or c == "reason_key"]]],
                     ignore_index=True)


def judge_holdout(tax: Taxonomy, panel_path: str, fewshot: pd.DataFrame, holdout: pd.DataFrame, *, domain=None,
                  cache_dir: str = "outputs/cache", progress: bool = False,
                  folds: pd.DataFrame | None = None) -> pd.DataFrame:
    """The panel's verdicts on the hold-out under taxonomy ``tax`` (cached per prompt).

    With ``folds`` (01_calibrate's ``calibration_split`` of a cross-fitted run: ``item_id, fold``), ``fewshot`` is
    the whole seed and each hold-out item is judged out of fold, as in 01_calibrate."""
    from .judges import load_panel

    if folds is not None:
        from .judges.crossfit import cross_fit

        return cross_fit(lambda: load_panel(panel_path, taxonomy=tax, domain=domain), fewshot, folds,
                         judge_ids=holdout["item_id"], pool=lambda tr, te: fit_pool(tr, tax, exclude=te["text"]),
                         cache_dir=cache_dir, progress=progress).verdicts
    pan = load_panel(panel_path, taxonomy=tax, domain=domain).fit(fit_pool(fewshot, tax, exclude=holdout["text"]))
    return pan.judge(holdout, cache_dir=cache_dir, progress=progress)


@dataclass
class LabReport:
    kappa: pd.DataFrame
    """One row per judge: kappa and accuracy before and after, and the change."""
    moved: pd.DataFrame
    """Items whose verdict changed: item_id, judge, before, after, gold."""
    confusion_before: dict
    confusion_after: dict


def compare_versions(before: pd.DataFrame, after: pd.DataFrame, gold: pd.Series, *, labels: list[str]) -> LabReport:
    """Kappa per judge, confusion per judge and the moved items between two verdict tables on the same items."""
    rb = judge_report(before, gold, labels=labels).set_index("judge")
    ra = judge_report(after, gold, labels=labels).set_index("judge")
    kappa = pd.DataFrame({"kappa_before": rb["kappa"], "kappa_after": ra["kappa"],
                          "accuracy_before": rb["accuracy"], "accuracy_after": ra["accuracy"]})
    kappa["kappa_change"] = kappa["kappa_after"] - kappa["kappa_before"]
    m = before.merge(after, on=["item_id", "judge"], suffixes=("_before", "_after"))
    changed = m["category_before"].fillna("(abstain)") != m["category_after"].fillna("(abstain)")
    moved = m.loc[changed, ["item_id", "judge", "category_before", "category_after"]].rename(
        columns={"category_before": "before", "category_after": "after"})
    moved["gold"] = moved["item_id"].map(gold)
    judges = sorted(set(before["judge"]))
    conf_b = {j: confusion_table(before, gold, j, labels=labels) for j in judges}
    conf_a = {j: confusion_table(after, gold, j, labels=labels) for j in judges}
    return LabReport(kappa.reset_index(), moved.reset_index(drop=True), conf_b, conf_a)
