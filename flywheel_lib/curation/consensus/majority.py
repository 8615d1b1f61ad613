"""Majority vote.

``strict=True`` (default) accepts a category chosen by more than half of the panel (an abstaining or missing
judge counts against); ``strict=False`` accepts the plurality of the votes cast. A tie for the top is a
``disagreement``, never broken at random.

>>> import pandas as pd
>>> v = pd.DataFrame({"item_id": ["a"] * 4, "judge": ["j1", "j2", "j3", "j4"],
...     "category": ["solvable", "solvable", "ambiguous", None], "reason_key": None})
>>> for c in ("rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd", "latency_s",
...           "cached", "error"): v[c] = None
>>> MajorityVote().fit(v).status_.tolist(), MajorityVote(strict=False).fit(v).labels_.tolist()
(['disagreement'], ['solvable'])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .base import ConsensusStrategy
from .k_of_n import vote_decision

__all__ = ["MajorityVote"]


class MajorityVote(ConsensusStrategy):
    """More than half of the panel (``strict``) or the plurality of the votes cast."""

    name = "majority"

    def __init__(self, *, strict: bool = True, judges: Iterable[str] | None = None, labels: Iterable[str] | None = None):
        super().__init__(judges=judges, labels=labels)
        self.strict = strict

    def _decide(self, codes, reasons, classes):
        n_j = codes.shape[1]
        need = np.full(codes.shape[0], n_j // 2 + 1 if self.strict else 1)
        return vote_decision(codes, reasons, classes, need)
