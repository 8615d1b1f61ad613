"""Evaluation metrics over the predictions table, each a proportion with a Wilson score interval.

The predictions table (``item_id, variant, output, valid, executed, passed, refused, refusal_category`` plus the gold
``label`` and ``n_selected``, as :func:`~flywheel_lib.evaluation.generate.score_predictions` writes it) gives, per
variant:

``pass_rate``
    Items answered correctly, over all items: a solvable item by a query selecting the gold query's customers, a
    refusal item by refusing with the gold category. (The seed's "evaluation score".)
``query_pass_rate``
    The same, over solvable items only.
``refusal_accuracy``
    Items where the model refuses exactly when it should, with the right category when it refuses.
``false_refusal_rate``
    Solvable items the model refused.
``zero_result_rate``
    Non-solvable (impossible) items answered with a query that runs and selects nobody: the silent failure the seed
    describes.
``valid_rate``
    Non-refused answers that parse and validate.
``refusal_recall``
    Non-solvable (impossible) items refused with the gold category: right-category refusal recall.

:func:`category_recall` splits that recall by gold category (the confusion's diagonal over its row sums), each with
its interval, and says which wrong answer each category most often gets instead.

Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference. JASA 22(158).

>>> toy = pd.DataFrame({"variant": ["v"] * 4, "label": ["solvable", "solvable", "wrong_skill", "wrong_skill"],
...                     "passed": [True, False, True, False], "refused": [False, True, True, False],
...                     "refusal_category": [None, "wrong_skill", "wrong_skill", None],
...                     "valid": [True, False, False, True], "executed": [True, False, False, True],
...                     "n_selected": [3, None, None, 0]})
>>> m = compute_metrics(toy).set_index("metric")
>>> [float(m.loc[k, "value"]) for k in ("pass_rate", "false_refusal_rate", "zero_result_rate")]
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["METRICS", "wilson", "item_outcomes", "compute_metrics", "confusion", "predicted_label",
           "category_recall", "manifest_metrics"]

METRICS = ("pass_rate", "query_pass_rate", "refusal_accuracy", "refusal_recall", "false_refusal_rate",
           "zero_result_rate", "valid_rate")


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float, float]:
    """Proportion ``k/n`` with its Wilson score interval; ``(nan, nan, nan)`` when ``n == 0``.

    >>> tuple(round(x, 4) for x in wilson(8, 10))
    (0.8, 0.4902, 0.9433)
    """
    if n == 0:
        return (float("nan"),) * 3
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return k / n, float(lo), float(hi)


def predicted_label(pred: pd.DataFrame, solvable_id: str = "solvable") -> pd.Series:
    """The category each answer amounts to: the solvable id, the refusal category, or ``refuse_unknown``."""
    cat = pred["refusal_category"].where(pred["refusal_category"].notna(), "refuse_unknown")
    return cat.where(pred["refused"].astype(bool), solvable_id)


def item_outcomes(pred: pd.DataFrame, solvable_id: str = "solvable") -> pd.DataFrame:
    """Per-item 0/1 outcomes behind every metric (NaN where an item is outside a metric's denominator)."""
    solv = pred["label"] == solvable_id
    refused = pred["refused"].astype(bool)
    right_cat = pred["refusal_category"] == pred["label"]
    zero = pred["executed"].astype(bool) & (pd.to_numeric(pred["n_selected"], errors="coerce") == 0)
    out = pd.DataFrame({"item_id": pred["item_id"], "variant": pred["variant"]})
    out["pass_rate"] = pred["passed"].astype(float)
    out["query_pass_rate"] = pred["passed"].astype(float).where(solv)
    out["refusal_accuracy"] = np.where(solv, ~refused, refused & right_cat).astype(float)
    out["false_refusal_rate"] = refused.astype(float).where(solv)
    out["zero_result_rate"] = (~refused & zero).astype(float).where(~solv)
    out["refusal_recall"] = (refused & right_cat).astype(float).where(~solv)
    out["valid_rate"] = pred["valid"].astype(float).where(~refused)
    return out


def compute_metrics(pred: pd.DataFrame, *, solvable_id: str = "solvable", alpha: float = 0.05) -> pd.DataFrame:
    """Long table ``variant, metric, value, lo, hi, k, n`` with Wilson intervals at level ``1 - alpha``."""
    need = ["variant", "label", "passed", "refused", "refusal_category", "valid", "executed", "n_selected"]
    missing = [c for c in need if c not in pred.columns]
    if missing:
        raise KeyError(f"predictions lack columns: {', '.join(missing)}")
    if "item_id" not in pred.columns:
        pred = pred.assign(item_id=range(len(pred)))
    oc = item_outcomes(pred, solvable_id)
    rows = []
    for variant, g in oc.groupby("variant", sort=False):
        for m in METRICS:
            x = g[m].dropna()
            k, n = int(x.sum()), int(len(x))
            v, lo, hi = wilson(k, n, alpha)
            rows.append({"variant": variant, "metric": m, "value": v, "lo": lo, "hi": hi, "k": k, "n": n})
    return pd.DataFrame(rows)


def confusion(pred: pd.DataFrame, variant: str, *, solvable_id: str = "solvable",
              labels: list[str] | None = None) -> pd.DataFrame:
    """Gold label (rows) by predicted label (columns) counts for one variant."""
    p = pred[pred["variant"] == variant]
    ct = pd.crosstab(p["label"].rename("gold"), predicted_label(p, solvable_id).rename("predicted"))
    if labels is not None:
        cols = [*labels, *[c for c in ct.columns if c not in labels]]
        ct = ct.reindex(index=labels, columns=cols, fill_value=0)
    return ct


def category_recall(pred: pd.DataFrame, *, solvable_id: str = "solvable", categories: list[str] | None = None,
                    alpha: float = 0.05) -> pd.DataFrame:
    """Recall per gold category and variant, with Wilson intervals: ``variant, category, k, n, recall, lo, hi,
    top_error, top_error_n``.

    For a refusal category, recall counts refusals with that category; for the solvable class, answers that did not
    refuse (whether or not the query was right: that is ``query_pass_rate``). ``top_error`` is the predicted label
    the category's misses most often get. ``categories`` fixes the rows (a category with no items gets ``n = 0``).

    >>> toy = pd.DataFrame({"variant": ["v"] * 5, "label": ["solvable", "age", "age", "age", "age"],
    ...                     "refused": [False, True, True, False, False],
    ...                     "refusal_category": [None, "age", "x", None, None]})
    >>> r = category_recall(toy).set_index("category")
    >>> int(r.loc["age", "k"]), int(r.loc["age", "n"]), r.loc["age", "top_error"]
    (1, 4, 'solvable')
    """
    need = ["variant", "label", "refused", "refusal_category"]
    missing = [c for c in need if c not in pred.columns]
    if missing:
        raise KeyError(f"predictions lack columns: {', '.join(missing)}")
    p = pred.assign(predicted=predicted_label(pred, solvable_id))
    cats = categories or sorted(set(p["label"]), key=lambda c: (c != solvable_id, str(c)))
    rows = []
    for variant, g in p.groupby("variant", sort=False):
        for c in cats:
            gc = g[g["label"] == c]
            hit = gc["predicted"] == c
            k, n = int(hit.sum()), int(len(gc))
            v, lo, hi = wilson(k, n, alpha)
            errs = gc.loc[~hit, "predicted"].value_counts()
            rows.append({"variant": variant, "category": c, "k": k, "n": n, "recall": v, "lo": lo, "hi": hi,
                         "top_error": errs.index[0] if len(errs) else None,
                         "top_error_n": int(errs.iloc[0]) if len(errs) else 0})
    return pd.DataFrame(rows)


def manifest_metrics(metrics: pd.DataFrame, tables: dict[str, pd.DataFrame] | None = None) -> dict[str, float]:
    """The names 05 records: ``<metric>_<variant>`` for every metric, and for each seed comparison on pass rate
    ``p_pass_rate_<b>_vs_<a>`` and ``diff_pass_rate_<b>_vs_<a>`` (``b - a``; ``b`` is the candidate, e.g.
    ``p_pass_rate_curated_vs_naive_merge``)."""
    out = {}
    for r in metrics.itertuples():
        out[f"{r.metric}_{r.variant}"] = None if pd.isna(r.value) else round(float(r.value), 4)
    for t in (tables or {}).values():
        for r in t[t["metric"] == "pass_rate"].itertuples():
            out[f"p_pass_rate_{r.b}_vs_{r.a}"] = float(r.p_value)
            out[f"diff_pass_rate_{r.b}_vs_{r.a}"] = float(r.diff)
    return out
