"""The audit: the gate's precision on production, estimated from a reviewed random sample of its accepted labels.

The seed's out-of-fold figures (01_calibrate) say how precise the gate is on annotated seed requests; production
requests are phrased differently and the gate may be worse there. The audit measures it on production itself:

1. :func:`audit_size`: how many accepted labels to review for a target half-width ``h`` of the 95% interval, from
   the normal approximation ``n0 = z^2 p (1 - p) / h^2`` (``p`` a planning value, 0.5 when nothing is known),
   corrected for the finite number ``N`` of accepted labels, ``n = n0 / (1 + (n0 - 1) / N)``, capped by ``max_n``.
2. :func:`draw_audit`: a stratified random sample without replacement, strata = the accepted category,
   proportional allocation (largest remainders, at least two per stratum that has two).
3. :func:`audit_precision`: the reviewed sample gives the stratified estimate of a proportion
   ``p = sum_h W_h p_h`` (``W_h = N_h / N``, the category's share among accepted labels; ``p_h`` the share of
   sampled labels of category ``h`` that the reviewer confirms), with variance
   ``v = sum_h W_h^2 (1 - n_h / N_h) p_h (1 - p_h) / (n_h - 1)`` (Cochran 1977, *Sampling Techniques*, 5.3 and
   5.13), and a Wilson score interval at the Kish effective sample size ``n_eff = p (1 - p) / v``: the interval
   Korn & Graubard (1998, *Survey Methodology* 24(2)) and Dean & Pagano (2015, *Journal of Survey Statistics and
   Methodology* 3(4)) recommend for proportions from complex samples, which stays inside [0, 1] and keeps its
   coverage near 1 where the normal interval does not. A stratum with no answer adds its whole weight to the
   interval's width (its precision could be anything from 0 to 1).

>>> import pandas as pd
>>> accepted = pd.DataFrame({"item_id": [f"i{k}" for k in range(100)],
...                          "category": ["solvable"] * 80 + ["ambiguous"] * 20})
>>> sample = draw_audit(accepted, 20, seed=1)
>>> sample["category"].value_counts().to_dict()
{'solvable': 16, 'ambiguous': 4}
>>> answers = sample.assign(human_label=lambda d: d["category"])       # the reviewer confirms every label
>>> est = audit_precision(accepted, answers)
>>> est.n, est.precision, round(est.lo, 3), est.hi
(20, 1.0, 0.867, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from ._votes import is_missing

__all__ = ["AuditEstimate", "audit_size", "draw_audit", "audit_precision", "wilson_interval"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"audit: confidence {confidence} is not in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` (possibly an effective, non-integer) trials."""
    if n <= 0 or math.isnan(p):
        return float("nan"), float("nan")
    if math.isinf(n):
        return p, p
    z2 = _z(confidence) ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(z2) / (1 + z2 / n) * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def audit_size(n_accepted: int, *, half_width: float = 0.05, max_n: int = 200, expected: float | None = None,
               confidence: float = 0.95) -> int:
    """Sample size for a ``confidence`` interval of half-width ``half_width`` on ``n_accepted`` labels.

    ``expected``: a planning value of the precision (e.g. the seed's out-of-fold precision); ``None`` plans for
    0.5, the widest case. Finite-population corrected, capped by ``max_n`` (0: no cap) and by ``n_accepted``.
    """
    if not 0.0 < half_width < 1.0:
        raise ValueError(f"audit_size: half_width {half_width} is not in (0, 1)")
    if n_accepted <= 0:
        return 0
    p = 0.5 if expected is None or math.isnan(expected) else min(max(float(expected), 0.0), 1.0)
    p = min(max(p, 0.05), 0.95)  # a planning value of exactly 0 or 1 would ask for no sample at all
    n0 = _z(confidence) ** 2 * p * (1 - p) / half_width ** 2
    n = math.ceil(n0 / (1 + (n0 - 1) / n_accepted))
    return int(min(n, n_accepted, max_n if max_n > 0 else n_accepted))


def _allocate(sizes: pd.Series, n: int) -> pd.Series:
    """Proportional allocation of ``n`` over strata of ``sizes``: first ``min(2, N_h)`` per stratum (largest strata
    first while ``n`` lasts), then one at a time to the stratum furthest below its proportional share."""
    sizes = sizes[sizes > 0].sort_index().astype(int)
    n = int(min(n, sizes.sum()))
    alloc = pd.Series(0, index=sizes.index, dtype=int)
    left = n
    for h in sizes.sort_values(ascending=False, kind="stable").index:
        take = int(min(2, sizes[h], left))
        alloc[h], left = take, left - take
    target = n * sizes / sizes.sum()
    for _ in range(left):
        gap = (target - alloc).where(alloc < sizes, -np.inf)
        alloc[gap.idxmax()] += 1
    return alloc


def _accepted(accepted: pd.DataFrame) -> pd.DataFrame:
    for c in ("item_id", "category"):
        if c not in accepted.columns:
            raise ValueError(f"audit: the accepted-label table has no {c!r} column (columns: "
                             f"{', '.join(map(str, accepted.columns))})")
    a = accepted[["item_id", "category"]].drop_duplicates("item_id")
    return a[np.array([not is_missing(c) for c in a["category"]], dtype=bool)].reset_index(drop=True)


def draw_audit(accepted: pd.DataFrame, n: int, *, seed: int = 7) -> pd.DataFrame:
    """A stratified random sample of ``n`` accepted labels, strata = ``category``, proportional allocation.

    ``accepted``: ``item_id, category`` (the gate's accepted label; e.g. the ``consensus`` rows with status
    ``accepted``). Returns ``item_id, category`` of the sampled rows, by category then item id. The same table
    and ``seed`` always draw the same sample (the table's row order does not matter).
    """
    a = _accepted(accepted).sort_values(["category", "item_id"], kind="stable")
    if n <= 0 or a.empty:
        return a.iloc[:0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    alloc = _allocate(a.groupby("category").size(), n)
    parts = []
    for cat, g in a.groupby("category", sort=True):
        k = int(alloc.get(cat, 0))
        if k:
            parts.append(g.iloc[np.sort(rng.choice(len(g), size=k, replace=False))])
    return pd.concat(parts, ignore_index=True) if parts else a.iloc[:0].reset_index(drop=True)


@dataclass
class AuditEstimate:
    """The gate's precision on production, estimated from a reviewed stratified sample of its accepted labels."""

    precision: float
    """Stratified estimate ``sum_h W_h p_h`` over the answered strata (re-weighted to sum to 1); NaN without answers."""
    lo: float
    """Lower end of the interval (a stratum without answers counts as all wrong)."""
    hi: float
    """Upper end of the interval (a stratum without answers counts as all right)."""
    n: int
    """Reviewed audit items the estimate uses."""
    n_accepted: int
    """Accepted labels the sample was drawn from (the population ``N``)."""
    n_eff: float
    """Kish effective sample size ``p (1 - p) / v`` the Wilson interval is computed at."""
    confidence: float
    """Confidence level of the interval."""
    unanswered_weight: float
    """Share of the accepted labels in strata without a single answer (widens the interval by as much)."""
    strata: pd.DataFrame = field(repr=False)
    """Per category: ``N`` (accepted), ``weight``, ``n`` (answered), ``confirmed``, ``precision``, ``lo``, ``hi``
    (the stratum's own Wilson interval, finite-population corrected)."""
    method: str = ("stratified estimate of a proportion (Cochran 1977, 5.3), Wilson interval at the Kish effective "
                   "sample size (Korn & Graubard 1998)")
    """How the interval was computed."""

    def as_dict(self) -> dict:
        """The scalar fields, rounded, for a manifest note."""
        def r(x):
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)
        return {"precision": r(self.precision), "lo": r(self.lo), "hi": r(self.hi), "n": self.n,
                "n_accepted": self.n_accepted, "n_eff": r(self.n_eff), "confidence": self.confidence,
                "unanswered_weight": r(self.unanswered_weight), "method": self.method}


def audit_precision(accepted: pd.DataFrame, answers: pd.DataFrame, *, confidence: float = 0.95) -> AuditEstimate:
    """The stratified precision estimate of the gate from reviewed audit items.

    ``accepted``: ``item_id, category`` of every accepted label (the population, for the weights ``W_h``).
    ``answers``: ``item_id, human_label`` of the reviewed audit items (an empty ``human_label`` is unanswered);
    an item that is not among the accepted labels is ignored. A label counts as confirmed when ``human_label``
    equals the accepted category.
    """
    a = _accepted(accepted)
    N = a.groupby("category").size()
    big_n = int(N.sum())
    ans = answers[["item_id", "human_label"]].drop_duplicates("item_id", keep="last")
    ans = ans[np.array([not is_missing(x) and str(x).strip() != "" for x in ans["human_label"]], dtype=bool)]
    ans = ans.merge(a, on="item_id", how="inner")
    ans["ok"] = ans["human_label"].astype(str) == ans["category"].astype(str)
    g = ans.groupby("category")["ok"].agg(n="size", confirmed="sum")
    s = pd.DataFrame({"N": N}).join(g, how="left").fillna({"n": 0, "confirmed": 0})
    s[["n", "confirmed"]] = s[["n", "confirmed"]].astype(int)
    s["weight"] = s["N"] / big_n if big_n else 0.0
    s["precision"] = np.where(s["n"] > 0, s["confirmed"] / s["n"].clip(lower=1), np.nan)
    fpc = 1 - s["n"] / s["N"]
    p_h = s["precision"].fillna(0.0)
    var_h = np.where(s["n"] > 1, fpc * p_h * (1 - p_h) / (s["n"] - 1).clip(lower=1), 0.0)
    los, his = [], []
    for r, f in zip(s.itertuples(), fpc):
        lo_h, hi_h = wilson_interval(r.precision, r.n / f if f > 0 else math.inf, confidence) if r.n else (0.0, 1.0)
        los.append(lo_h)
        his.append(hi_h)
    s["lo"], s["hi"] = los, his
    answered = s["n"] > 0
    w_miss = float(s.loc[~answered, "weight"].sum())
    n = int(s["n"].sum())
    if not answered.any():
        nan = float("nan")
        return AuditEstimate(nan, nan, nan, 0, big_n, 0.0, confidence, w_miss, s.reset_index(names="category"))
    w = s.loc[answered, "weight"] / s.loc[answered, "weight"].sum()
    p = float((w * s.loc[answered, "precision"]).sum())
    if (s["n"] == s["N"]).all():  # a census: the precision itself, exactly (no sum of weighted shares to round)
        p = int(s["confirmed"].sum()) / big_n
    v = float((w ** 2 * pd.Series(var_h, index=s.index)[answered]).sum())
    f_all = n / float(s.loc[answered, "N"].sum())
    if v > 0:
        n_eff = p * (1 - p) / v
    else:  # every answered stratum all right (or all wrong), or a census: the sample's own size, fpc-corrected
        n_eff = math.inf if f_all >= 1 else n / (1 - f_all)
    lo, hi = wilson_interval(p, n_eff, confidence)
    lo, hi = (1 - w_miss) * lo, (1 - w_miss) * hi + w_miss
    return AuditEstimate(p, lo, hi, n, big_n, float(n_eff), confidence, w_miss, s.reset_index(names="category"))
