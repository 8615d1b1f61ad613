"""Evidence across seeds: a t-interval for each metric, and paired comparisons pooled over seeds.

Every function takes and returns DataFrames; nothing here reads a run folder.

**Metrics.** A configuration run with ``k`` seeds gives ``k`` values of each headline metric; :func:`t_interval` is
their mean with the Student-t interval (``k - 1`` degrees of freedom), the spread a new seed would show, not the
sampling error of one evaluation set.

**Paired comparisons.** Within one seed, variants ``a`` and ``b`` answer the same items; the McNemar 2x2 table
counts items right under both, under ``a`` only, under ``b`` only, under neither (McNemar 1947). Across seeds those
tables are pooled with the Cochran-Mantel-Haenszel test (Mantel & Haenszel 1959) in its matched-pairs form: every
item pair is a stratum holding a *variant x outcome* 2x2 table, and the CMH statistic over those strata is
McNemar's statistic on the discordant pairs summed over seeds, ``(b_only - a_only)^2 / (a_only + b_only)``
(Edwards' continuity correction with ``correction=True``), with the Mantel-Haenszel odds ratio
``b_only / a_only``. Handing the McNemar tables themselves to a stratified test would test whether ``a``'s and
``b``'s outcomes are *associated* (they nearly always are), not whether the variants differ. Concordant pairs add
nothing to the statistic, so only discordant ones become strata.

Mantel, N. & Haenszel, W. (1959). Statistical aspects of the analysis of data from retrospective studies of
disease. JNCI 22(4). McNemar, Q. (1947). Psychometrika 12(2).

>>> seeds = pd.DataFrame({"seed": [7, 11], "both": [10, 8], "a_only": [2, 1], "b_only": [6, 5],
...                       "neither": [2, 6]})
>>> r = pooled_mcnemar(seeds, correction=False)
>>> r["a_only"], r["b_only"], round(r["statistic"], 4), round(r["p_value"], 4)
(3, 11, 4.5714, 0.0325)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["t_interval", "summarize_metrics", "mcnemar_counts", "pair_strata", "cmh", "pooled_mcnemar",
           "pool_comparisons", "COUNT_COLUMNS"]

COUNT_COLUMNS = ["both", "a_only", "b_only", "neither"]
"""A McNemar table as columns: items right under both variants, ``a`` only, ``b`` only, neither."""


def t_interval(values, alpha: float = 0.05) -> dict[str, float]:
    """Mean of ``values`` (NaN dropped) with the two-sided ``1 - alpha`` Student-t interval.

    One value has no interval (``lo``, ``hi`` NaN); values that do not vary have a zero-width one.

    >>> r = t_interval([0.5, 0.6, 0.7])
    >>> round(r["mean"], 3), round(r["lo"], 3), round(r["hi"], 3), r["n"]
    (0.6, 0.352, 0.848, 3)
    """
    from scipy import stats

    x = pd.to_numeric(pd.Series(values, dtype="float64"), errors="coerce").dropna().to_numpy(dtype=float)
    n = len(x)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}


def summarize_metrics(values: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per configuration and metric: mean and t-interval across seeds.

    ``values`` is long: ``config, seed, metric, value`` (one row per run and metric; non-numeric values are
    dropped). Returns ``config, metric, mean, lo, hi, sd, n`` in the order configurations and metrics first appear.
    """
    need = {"config", "seed", "metric", "value"}
    if missing := need - set(values.columns):
        raise KeyError(f"metric values lack columns: {', '.join(sorted(missing))}")
    v = values.assign(value=pd.to_numeric(values["value"], errors="coerce")).dropna(subset=["value"])
    rows = [{"config": c, "metric": m, **t_interval(g["value"], alpha)}
            for (c, m), g in v.groupby(["config", "metric"], sort=False)]
    return pd.DataFrame(rows, columns=["config", "metric", "mean", "lo", "hi", "sd", "n"])


def mcnemar_counts(outcomes: pd.DataFrame, a: str, b: str, metric: str) -> dict[str, Any]:
    """One seed's McNemar table of ``metric`` between variants ``a`` and ``b`` from
    :func:`~flywheel_lib.evaluation.item_outcomes` output, with that seed's own McNemar p and rates."""
    from ..evaluation.compare import mcnemar_pair

    r = mcnemar_pair(outcomes, a, b, metric)
    return {k: r[k] for k in ("n", *COUNT_COLUMNS, "rate_a", "rate_b", "diff", "p_value")}


def pair_strata(tables: pd.DataFrame) -> np.ndarray:
    """The 2x2xK array of matched-pair strata behind McNemar tables (one row per seed, :data:`COUNT_COLUMNS`).

    Rows of each stratum are the variants (``b``, then ``a``), columns the outcome (right, wrong), so the pooled
    odds ratio is ``b``'s over ``a``'s. A pair right under ``b`` only is ``[[1, 0], [0, 1]]``, right under ``a``
    only ``[[0, 1], [1, 0]]``; concordant pairs carry no information and are left out.
    """
    a_only = int(pd.to_numeric(tables["a_only"]).sum())
    b_only = int(pd.to_numeric(tables["b_only"]).sum())
    strata = [np.array([[1, 0], [0, 1]])] * b_only + [np.array([[0, 1], [1, 0]])] * a_only
    return np.stack(strata, axis=2) if strata else np.zeros((2, 2, 0), dtype=int)


def cmh(strata: np.ndarray, correction: bool = True) -> dict[str, float]:
    """Cochran-Mantel-Haenszel test of a common odds ratio of 1 over 2x2xK ``strata``
    (statsmodels ``StratifiedTable``): statistic (chi-square, 1 df), p-value and the Mantel-Haenszel odds ratio.

    >>> t = np.dstack([[[10, 5], [4, 11]], [[8, 6], [3, 9]]])
    >>> r = cmh(t, correction=False)
    >>> round(r["statistic"], 3), round(r["odds_ratio"], 3)
    (7.217, 4.736)
    """
    from statsmodels.stats.contingency_tables import StratifiedTable

    strata = np.asarray(strata, dtype=float)
    if strata.ndim != 3 or strata.shape[:2] != (2, 2):
        raise ValueError(f"strata must be 2x2xK, got shape {strata.shape}")
    if strata.shape[2] == 0:
        return {"statistic": 0.0, "p_value": 1.0, "odds_ratio": math.nan}
    st = StratifiedTable(strata)
    res = st.test_null_odds(correction=correction)
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = float(st.oddsratio_pooled)  # inf where no stratum has b*c > 0
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "odds_ratio": odds}


def pooled_mcnemar(tables: pd.DataFrame, alpha: float = 0.05, correction: bool = True) -> dict[str, Any]:
    """Pool one comparison's per-seed McNemar tables (rows: ``seed`` and :data:`COUNT_COLUMNS`, optionally
    ``diff``) by the CMH test over matched-pair strata (see the module docstring).

    Returns the seeds, items and discordant counts pooled, the CMH ``statistic`` and ``p_value``, the
    Mantel-Haenszel ``odds_ratio`` of ``b`` over ``a`` (``b_only / a_only``; inf where ``a_only`` is 0)
    and the per-seed differences ``b - a`` (``diff``, else computed from the counts) as a mean with its t-interval.
    """
    if missing := {"seed", *COUNT_COLUMNS} - set(tables.columns):
        raise KeyError(f"McNemar tables lack columns: {', '.join(sorted(missing))}")
    t = tables.copy()
    for c in COUNT_COLUMNS:
        t[c] = pd.to_numeric(t[c]).astype(int)
    n = t[COUNT_COLUMNS].sum(axis=1)
    if "diff" not in t.columns:
        t["diff"] = ((t["b_only"] - t["a_only"]) / n.where(n > 0)).astype(float)
    test = cmh(pair_strata(t), correction=correction)
    d = t_interval(t["diff"], alpha)
    return {"seeds": int(len(t)), "n": int(n.sum()), "a_only": int(t["a_only"].sum()), "b_only": int(t["b_only"].sum()),
            **test, "mean_diff": d["mean"], "diff_lo": d["lo"], "diff_hi": d["hi"]}


def pool_comparisons(tables: pd.DataFrame, alpha: float = 0.05, correction: bool = True) -> pd.DataFrame:
    """Every comparison pooled across its seeds.

    ``tables`` is long: ``config, comparison, a, b, metric, seed`` plus :data:`COUNT_COLUMNS` (and ``diff``,
    ``p_value`` per seed when present). Returns one row per ``config, comparison, metric`` with the fields of
    :func:`pooled_mcnemar` and ``seed_p`` (the per-seed McNemar p-values, in seed order).
    """
    keys = ["config", "comparison", "a", "b", "metric"]
    if missing := {*keys, "seed", *COUNT_COLUMNS} - set(tables.columns):
        raise KeyError(f"comparison tables lack columns: {', '.join(sorted(missing))}")
    rows = []
    for key, g in tables.groupby(keys, sort=False):
        g = g.sort_values("seed")
        row = dict(zip(keys, key)) | pooled_mcnemar(g, alpha, correction)
        row["seed_p"] = [float(p) for p in g["p_value"]] if "p_value" in g.columns else []
        rows.append(row)
    cols = keys + ["seeds", "n", "a_only", "b_only", "statistic", "p_value", "odds_ratio", "mean_diff", "diff_lo",
                   "diff_hi", "seed_p"]
    return pd.DataFrame(rows, columns=cols)
