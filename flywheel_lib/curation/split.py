"""Split the seed into a few-shot pool (what judges may see) and a calibration hold-out (what they are scored on).

Stratified by category and seeded: within each label the items (ordered by ``item_id`` first, so the input order
does not matter) are shuffled with ``numpy.random.default_rng(seed)`` and the first ``round(fraction * n)`` go to
the few-shot pool. A category with at least two items keeps at least one on each side. No item is on both sides;
:func:`check_disjoint` asserts that nothing of the hold-out reaches a prompt or an offline judge's fit.

>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": list("abcdefgh"), "label": ["x"] * 4 + ["y"] * 4})
>>> s = stratified_split(items, fraction=0.5, seed=7)
>>> s.groupby("split").size().to_dict()
{'fewshot': 4, 'holdout': 4}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["stratified_split", "check_disjoint"]


def stratified_split(items: pd.DataFrame, *, fraction: float = 0.3, seed: int = 7, by: str = "label") -> pd.DataFrame:
    """``item_id, split, label`` with ``split`` in ``fewshot | holdout`` for every row of ``items``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fewshot_fraction must be strictly between 0 and 1, got {fraction}")
    for col in ("item_id", by):
        if col not in items.columns:
            raise KeyError(f"stratified_split: items lack column {col!r}")
    if items["item_id"].duplicated().any():
        raise ValueError(f"stratified_split: repeated item_id {items.loc[items['item_id'].duplicated(), 'item_id'].iloc[0]!r}")
    rng = np.random.default_rng(seed)
    parts = []
    df = items[["item_id", by]].sort_values("item_id", kind="stable")
    labels = df[by].fillna("<none>").astype(str)
    for lab in sorted(labels.unique()):
        ids = df.loc[labels == lab, "item_id"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n_few = int(round(fraction * len(ids)))
        if len(ids) >= 2:
            n_few = min(max(n_few, 1), len(ids) - 1)
        split = np.where(np.arange(len(ids)) < n_few, "fewshot", "holdout")
        parts.append(pd.DataFrame({"item_id": ids, "split": split, "label": lab}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["item_id", "split", "label"])
    order = {k: i for i, k in enumerate(items["item_id"])}
    return out.sort_values("item_id", key=lambda s: s.map(order)).reset_index(drop=True)


def check_disjoint(fewshot_ids, holdout_ids, where: str = "calibration split") -> None:
    """Raise if any hold-out item is also in the few-shot pool."""
    both = sorted(set(fewshot_ids) & set(holdout_ids))
    if both:
        raise ValueError(f"{where}: {len(both)} hold-out items are in the few-shot pool (first: {both[0]!r})")
