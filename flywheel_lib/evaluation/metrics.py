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

__all__ = ["METRICS", "wilson", "item_outcomes", "compute_metrics", "confusion", "predicted_label"]

METRICS = ("pass_rate", "query_pass_rate", "refusal_accuracy", "false_refusal_rate", "zero_result_rate",
           "valid_rate")


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
