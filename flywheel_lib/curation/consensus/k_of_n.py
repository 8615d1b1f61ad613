"""k-of-n voting: accept a category when at least ``k`` judges of the panel chose it.

Abstentions and missing verdicts are simply not votes. When two categories both reach ``k`` (possible for
``k <= n/2``) the item is a ``disagreement``; an item nobody voted on is ``abstained``. The reason key is the most
common normalised key among the judges who voted for the label.

>>> import pandas as pd
>>> v = pd.DataFrame({"item_id": ["a"] * 3, "judge": ["j1", "j2", "j3"],
...     "category": ["solvable", "solvable", None], "reason_key": ["x", "x", None]})
>>> for c in ("rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd", "latency_s",
...           "cached", "error"): v[c] = None
>>> KOfN(k=2).fit(v).labels_.tolist(), KOfN(k=3).fit(v).status_.tolist()
(['solvable'], ['disagreement'])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .base import ConsensusStrategy, count_votes, top_reason

__all__ = ["KOfN", "vote_decision"]


def vote_decision(codes, reasons, classes, need: np.ndarray, *, below: str = "disagreement"):
    """Shared by k-of-n and majority: accept the top class where its count reaches ``need`` (per row) and no
    other class ties it."""
    counts = count_votes(codes, len(classes))
    n_votes = counts.sum(axis=1)
    top = counts.argmax(axis=1)
    top_n = counts.max(axis=1)
    ties = (counts == top_n[:, None]).sum(axis=1) > 1
    accepted = (top_n >= need) & ~ties & (n_votes > 0)
    agree = codes == top[:, None]
    rk = top_reason(reasons, agree)
    panel = max(codes.shape[1], 1)
    labels: list[str | None]
    rkeys: list[str | None]
    labels, status, rkeys, detail = [], [], [], []
    for i in range(codes.shape[0]):
        if n_votes[i] == 0:
            labels.append(None), status.append("abstained"), rkeys.append(None), detail.append("no_votes")
        elif accepted[i]:
            labels.append(classes[top[i]]), status.append("accepted"), rkeys.append(rk[i])
            detail.append("unanimous" if top_n[i] == panel else f"{top_n[i]}_of_{panel}")
        else:
            labels.append(None), status.append(below), rkeys.append(None)
            detail.append("below_threshold" if top_n[i] < need[i] else "tie")
    return labels, status, rkeys, detail, top_n / panel


class KOfN(ConsensusStrategy):
    """Accept when at least ``k`` judges agree.

    Parameters
    ----------
    k
        Votes needed for the top category (``k = n`` is unanimity on the decision alone).
    judges, labels
        The panel (default: every judge in the verdicts) and the class list (default: observed).
    """

    name = "k_of_n"

    def __init__(self, *, k: int = 3, judges: Iterable[str] | None = None, labels: Iterable[str] | None = None):
        super().__init__(judges=judges, labels=labels)
        self.k = k

    def _decide(self, codes, reasons, classes):
        if self.k < 1:
            raise ValueError(f"k_of_n: k must be at least 1, got {self.k}")
        need = np.full(codes.shape[0], self.k)
        return vote_decision(codes, reasons, classes, need)
