"""Precision of accepted labels against human labels versus coverage: the evidence for 'consensus beats
confidence'.

For each fitted strategy on the calibration hold-out: ``coverage`` is the share of items that received a label,
``precision`` the share of those labels that equal the human label (with a Wilson 95% interval from
statsmodels), ``recall`` the share of all items labelled correctly.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .base import ConsensusStrategy

__all__ = ["precision_coverage"]


def precision_coverage(strategies: Mapping[str, ConsensusStrategy], gold: pd.Series, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per fitted strategy: ``strategy, n, accepted, coverage, correct, precision, precision_lo,
    precision_hi, recall``. ``gold`` maps ``item_id`` to the human label; items without gold are ignored."""
    from statsmodels.stats.proportion import proportion_confint

    rows = []
    for name, s in strategies.items():
        ids = [i for i in s.labels_.index if i in gold.index]
        g = gold.reindex(ids)
        lab = s.labels_.reindex(ids)
        acc = s.status_.reindex(ids) == "accepted"
        n, n_acc = len(ids), int(acc.sum())
        correct = int((lab[acc] == g[acc]).sum())
        lo, hi = proportion_confint(correct, n_acc, alpha=alpha, method="wilson") if n_acc else (float("nan"),) * 2
        rows.append(
            {
                "strategy": name,
                "n": n,
                "accepted": n_acc,
                "coverage": n_acc / n if n else float("nan"),
                "correct": correct,
                "precision": correct / n_acc if n_acc else float("nan"),
                "precision_lo": float(lo),
                "precision_hi": float(hi),
                "recall": correct / n if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)
