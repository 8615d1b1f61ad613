"""The estimator shape every consensus strategy shares (crowd-kit / scikit-learn style).

A strategy is configured in its constructor (no logic there), fitted on a verdicts table with
``fit(verdicts) -> self``, and then carries, indexed by ``item_id``:

``labels_``
    the accepted category, or ``None`` where the item is not accepted;
``status_``
    ``accepted | disagreement | abstained`` (``abstained``: a judge of the panel abstained or has no verdict
    and the strategy needs it, or nobody voted at all);
``reason_keys_``
    the normalised reason key that goes with the label (``None`` if none);
``detail_``
    a short machine-readable why (``unanimous``, ``category_split``, ``reason_mismatch``, ...);
``votes_``
    the ``items x judges`` category matrix the decision was made on.

:meth:`ConsensusStrategy.table` gives the consensus contract (``item_id, category, status, votes, reason_key``
plus ``detail`` and ``support``, the share of the panel voting for the label).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .._votes import check_verdicts, normalize_reason_key, vote_matrix

__all__ = ["ConsensusStrategy", "encode_votes", "top_reason"]


def encode_votes(votes: pd.DataFrame, labels: Iterable[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a vote matrix (``-1`` = no vote) and the class list (``labels`` or the sorted observed)."""
    vals = votes.to_numpy(dtype=object)
    observed = sorted({x for x in vals.ravel() if x is not None})
    classes = list(labels) if labels is not None else observed
    extra = [c for c in observed if c not in classes]
    classes = classes + extra
    index = {c: i for i, c in enumerate(classes)}
    codes = np.full(vals.shape, -1, dtype=np.int64)
    for j in range(vals.shape[1]):
        col = vals[:, j]
        codes[:, j] = [index[x] if x is not None else -1 for x in col]
    return codes, classes


def count_votes(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``n x K`` counts of votes per class (abstentions skipped)."""
    n = codes.shape[0]
    counts = np.zeros((n, max(n_classes, 1)), dtype=np.int64)
    rows, cols = np.nonzero(codes >= 0)
    np.add.at(counts, (rows, codes[rows, cols]), 1)
    return counts


def top_reason(reasons: np.ndarray, agree: np.ndarray) -> list[str | None]:
    """Per row, the most common normalised reason key among the judges where ``agree`` is True (ties: the
    alphabetically first)."""
    out: list[str | None] = []
    for r, a in zip(reasons, agree):
        keys = [k for k, ok in zip(r, a) if ok and k is not None]
        if not keys:
            out.append(None)
            continue
        uniq, cnt = np.unique(np.asarray(keys, dtype=object).astype(str), return_counts=True)
        out.append(str(uniq[np.argmax(cnt)]))
    return out


class ConsensusStrategy:
    """Base class: subclasses implement :meth:`_decide` on the vote and reason matrices."""

    name: str = "base"

    def __init__(self, *, judges: Iterable[str] | None = None, labels: Iterable[str] | None = None):
        self.judges = judges
        self.labels = labels

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, verdicts: pd.DataFrame) -> ConsensusStrategy:
        """Aggregate ``verdicts`` (the verdicts contract). Returns ``self``."""
        check_verdicts(verdicts)
        judges = list(self.judges) if self.judges is not None else sorted(verdicts["judge"].unique())
        items = list(pd.unique(verdicts["item_id"]))
        self.votes_ = vote_matrix(verdicts, judges=judges, items=items)
        v = verdicts[verdicts["judge"].isin(judges)]
        keys = v["reason_key"].map(normalize_reason_key)
        reasons = (
            v.assign(_key=keys).pivot(index="item_id", columns="judge", values="_key").reindex(index=items, columns=judges)
        )
        reasons = pd.DataFrame(
            np.where(reasons.notna().to_numpy(), reasons.to_numpy(dtype=object), None), index=reasons.index,
            columns=judges, dtype=object)
        self.reasons_ = reasons
        self._verdicts = v
        codes, classes = encode_votes(self.votes_, self.labels)
        self.classes_ = classes
        labels, status, rkeys, detail, support = self._decide(codes, reasons.to_numpy(dtype=object), classes)
        idx = pd.Index(items, name="item_id")
        self.labels_ = pd.Series(labels, index=idx, dtype=object, name="category")
        self.status_ = pd.Series(status, index=idx, dtype=object, name="status")
        self.reason_keys_ = pd.Series(rkeys, index=idx, dtype=object, name="reason_key")
        self.detail_ = pd.Series(detail, index=idx, dtype=object, name="detail")
        self.support_ = pd.Series(support, index=idx, dtype=float, name="support")
        return self

    def fit_predict(self, verdicts: pd.DataFrame) -> pd.Series:
        return self.fit(verdicts).labels_

    def _decide(self, codes, reasons, classes):  # pragma: no cover - abstract
        raise NotImplementedError

    # --- output ----------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The consensus contract: ``item_id, category, status, votes, reason_key, detail, support``."""
        judges = list(self.votes_.columns)
        votes = [json.dumps(dict(zip(judges, row))) for row in self.votes_.itertuples(index=False, name=None)]
        return pd.DataFrame(
            {
                "item_id": self.labels_.index.to_numpy(),
                "category": self.labels_.to_numpy(),
                "status": self.status_.to_numpy(),
                "votes": votes,
                "reason_key": self.reason_keys_.to_numpy(),
                "detail": self.detail_.to_numpy(),
                "support": self.support_.to_numpy(),
                "strategy": self.name,
            }
        )

    @property
    def coverage_(self) -> float:
        """Share of items that received a label."""
        return float((self.status_ == "accepted").mean()) if len(self.status_) else 0.0
