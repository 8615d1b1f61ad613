"""Paired comparisons between variants on the same evaluation items: McNemar's test (statsmodels).

Two variants answer the same items, so their outcomes are paired; McNemar's test looks only at the discordant items
(one right, the other wrong). The exact binomial version is used when fewer than 25 items are discordant.

McNemar, Q. (1947). Note on the sampling error of the difference between correlated proportions. Psychometrika 12(2).

>>> toy = pd.DataFrame({"item_id": [1, 2, 3, 1, 2, 3], "variant": ["a"] * 3 + ["b"] * 3,
...                     "pass_rate": [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]})
>>> r = mcnemar_pair(toy, "a", "b", "pass_rate")
>>> r["a_only"], r["b_only"], r["diff"]
(0, 2, 0.6667)
"""

from __future__ import annotations

import pandas as pd

__all__ = ["SEED_TABLES", "mcnemar_pair", "compare_variants", "seed_tables"]

SEED_TABLES = {
    "production_vs_curated": ("production_only", "curated"),
    "naive_vs_curated": ("naive_merge", "curated"),
}
"""The two comparisons the method is judged by: the production-only model vs curated, and the naive merge vs curated
(both trained the same way on the same base model)."""


def mcnemar_pair(outcomes: pd.DataFrame, a: str, b: str, metric: str) -> dict:
    """McNemar's test of ``metric`` (0/1 per item, NaN = not counted) between variants ``a`` and ``b``.

    ``outcomes`` is :func:`~flywheel_lib.evaluation.metrics.item_outcomes` output (item_id, variant, metric
    columns). Only items both variants answered and the metric counts are paired.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    wide = outcomes[outcomes["variant"].isin([a, b])].pivot_table(index="item_id", columns="variant",
                                                                   values=metric, aggfunc="first")
    if a not in wide.columns or b not in wide.columns:
        raise KeyError(f"{metric}: variants {a!r} and {b!r} must both have predictions")
    wide = wide[[a, b]].dropna()
    xa, xb = wide[a].astype(bool), wide[b].astype(bool)
    both, a_only, b_only, neither = int((xa & xb).sum()), int((xa & ~xb).sum()), int((~xa & xb).sum()), \
        int((~xa & ~xb).sum())
    n = len(wide)
    if a_only + b_only == 0:
        stat, p = 0.0, 1.0
    else:
        exact = a_only + b_only < 25
        res = mcnemar([[both, a_only], [b_only, neither]], exact=exact, correction=True)
        stat, p = float(res.statistic), float(res.pvalue)
    ra = round(float(xa.mean()), 4) if n else float("nan")
    rb = round(float(xb.mean()), 4) if n else float("nan")
    return {"metric": metric, "a": a, "b": b, "n": n, "rate_a": ra, "rate_b": rb, "diff": round(rb - ra, 4),
            "both": both, "a_only": a_only, "b_only": b_only, "neither": neither, "statistic": stat, "p_value": p}


def compare_variants(outcomes: pd.DataFrame, a: str, b: str,
                     metrics: tuple[str, ...] = ("pass_rate", "refusal_accuracy", "false_refusal_rate",
                                                 "zero_result_rate", "query_pass_rate")) -> pd.DataFrame:
    """One row per metric: ``a`` vs ``b`` on the same items, rates, difference (b - a) and McNemar p-value."""
    return pd.DataFrame([mcnemar_pair(outcomes, a, b, m) for m in metrics])


def seed_tables(outcomes: pd.DataFrame, tables: dict[str, tuple[str, str]] | None = None) -> dict[str, pd.DataFrame]:
    """The seed's comparison tables for the variants present (a table is skipped when a variant is missing)."""
    present = set(outcomes["variant"])
    return {name: compare_variants(outcomes, a, b) for name, (a, b) in (tables or SEED_TABLES).items()
            if a in present and b in present}
