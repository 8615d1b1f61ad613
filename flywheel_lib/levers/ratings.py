"""Bradley-Terry ratings from arena battles, shown on the Elo scale, with bootstrap intervals.

Bradley & Terry (1952), "Rank analysis of incomplete block designs: I. The method of paired comparisons": model
``i`` beats ``j`` with probability ``exp(t_i) / (exp(t_i) + exp(t_j))``. The strengths ``t`` are fitted by choix's
iterative Luce spectral ranking (``choix.ilsr_pairwise``, Maystre & Grossglauser 2015) with a little L2
regularisation, so a model that never lost still gets a finite rating. A tie counts as half a win for each side
(each decisive battle enters twice, a tie once in each direction). Elo = ``anchor_elo + 400 / ln 10 * (t - t_anchor)``
(or around the mean when no anchor model is named). The interval is a percentile bootstrap over *requests*
(all battles on one request resampled together, since they share the request's difficulty)::

    bt = BradleyTerry(n_boot=200, seed=7).fit(battles)       # battles: model_a, model_b, winner, item_id
    bt.ratings_   # model, elo, elo_lo, elo_hi, wins, losses, ties, battles

A toy tournament: ``a`` beats ``b`` 8-2, ``b`` beats ``c`` 8-2, ``a`` beats ``c`` 9-1 gives elo a > b > c.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["BradleyTerry", "ELO_SCALE"]

ELO_SCALE = 400 / math.log(10)
"""Elo points per unit of Bradley-Terry strength (natural log odds)."""


def _strengths(models: list[str], battles: pd.DataFrame, alpha: float) -> np.ndarray:
    try:
        import choix
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("Bradley-Terry ratings need the 'levers' extra: pip install -e '.[levers]'") from e

    idx = {m: i for i, m in enumerate(models)}
    data = []
    for a, b, w in zip(battles["model_a"], battles["model_b"], battles["winner"]):
        ia, ib = idx[a], idx[b]
        if w == a:
            data += [(ia, ib), (ia, ib)]
        elif w == b:
            data += [(ib, ia), (ib, ia)]
        else:
            data += [(ia, ib), (ib, ia)]
    if not data:
        return np.zeros(len(models))
    return np.asarray(choix.ilsr_pairwise(len(models), data, alpha=alpha), dtype=float)


class BradleyTerry:
    """Bradley-Terry strengths on the Elo scale, with percentile bootstrap intervals over requests.

    Hyperparameters only in the constructor; :meth:`fit` returns ``self``.
    """

    def __init__(self, *, alpha: float = 0.01, n_boot: int = 200, ci: float = 0.95, seed: int = 7,
                 anchor: str | None = None, anchor_elo: float = 1000.0):
        self.alpha, self.n_boot, self.ci, self.seed = alpha, n_boot, ci, seed
        self.anchor, self.anchor_elo = anchor, anchor_elo

    def _elo(self, t: np.ndarray, models: list[str]) -> np.ndarray:
        ref = t[models.index(self.anchor)] if self.anchor in models else t.mean()
        return self.anchor_elo + ELO_SCALE * (t - ref)

    def fit(self, battles: pd.DataFrame, models: list[str] | None = None) -> BradleyTerry:
        """``battles``: ``model_a, model_b, winner`` (a model or ``"tie"``) and ``item_id`` for the bootstrap."""
        miss = [c for c in ("model_a", "model_b", "winner") if c not in battles.columns]
        if miss:
            raise ValueError(f"battles table lacks columns: {', '.join(miss)}")
        models = list(models or pd.unique(battles[["model_a", "model_b"]].to_numpy().ravel()))
        self.models_ = models
        """The rated models, in the order of the strength vector."""
        self.strengths_ = _strengths(models, battles, self.alpha)
        """Fitted Bradley-Terry strengths (log odds scale)."""
        elo = self._elo(self.strengths_, models)
        groups = battles["item_id"].to_numpy() if "item_id" in battles else np.arange(len(battles))
        keys = pd.unique(groups)
        by = {k: np.flatnonzero(groups == k) for k in keys}
        rng = np.random.default_rng(self.seed)
        boots = []
        for _ in range(self.n_boot):
            pick = rng.choice(len(keys), size=len(keys), replace=True)
            rows = np.concatenate([by[keys[p]] for p in pick]) if len(keys) else np.array([], dtype=int)
            boots.append(self._elo(_strengths(models, battles.iloc[rows], self.alpha), models))
        q = (1 - self.ci) / 2
        lo, hi = (np.quantile(np.array(boots), [q, 1 - q], axis=0) if boots else (elo, elo))
        rows = []
        for i, m in enumerate(models):
            mine = battles[(battles["model_a"] == m) | (battles["model_b"] == m)]
            wins = int((mine["winner"] == m).sum())
            ties = int((mine["winner"] == "tie").sum())
            rows.append({"model": m, "elo": float(elo[i]), "elo_lo": float(lo[i]), "elo_hi": float(hi[i]),
                         "wins": wins, "losses": len(mine) - wins - ties, "ties": ties, "battles": len(mine)})
        self.ratings_ = pd.DataFrame(rows).sort_values("elo", ascending=False).reset_index(drop=True)
        """One row per model: ``model, elo, elo_lo, elo_hi, wins, losses, ties, battles``, best first."""
        return self
