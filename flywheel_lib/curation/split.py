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

__all__ = ["stratified_split", "stratified_folds", "check_disjoint", "calibration_split"]


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


def stratified_folds(items: pd.DataFrame, *, k: int = 5, seed: int = 7, by: str = "label") -> pd.DataFrame:
    """``item_id, fold, label``: every row of ``items`` in one of ``k`` folds, stratified by ``by`` and seeded.

    Within each label the items (ordered by ``item_id`` first) are shuffled with ``default_rng(seed)`` and dealt
    round-robin from a rotating start, so fold sizes differ by at most one overall and per label. Cross-fitting
    judges every item with judges fitted on the other ``k - 1`` folds.

    >>> items = pd.DataFrame({"item_id": list("abcdefghij"), "label": ["x"] * 6 + ["y"] * 4})
    >>> f = stratified_folds(items, k=2, seed=1)
    >>> f.groupby(["fold", "label"]).size().tolist()
    [3, 2, 3, 2]
    """
    if int(k) != k or k < 2:
        raise ValueError(f"cv_folds must be an integer of at least 2, got {k!r}")
    for col in ("item_id", by):
        if col not in items.columns:
            raise KeyError(f"stratified_folds: items lack column {col!r}")
    if items["item_id"].duplicated().any():
        raise ValueError(f"stratified_folds: repeated item_id {items.loc[items['item_id'].duplicated(), 'item_id'].iloc[0]!r}")
    if len(items) < k:
        raise ValueError(f"stratified_folds: {len(items)} items cannot fill {k} folds (lower cv_folds)")
    rng = np.random.default_rng(seed)
    df = items[["item_id", by]].sort_values("item_id", kind="stable")
    labels = df[by].fillna("<none>").astype(str)
    parts, start = [], 0
    for lab in sorted(labels.unique()):
        ids = df.loc[labels == lab, "item_id"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        fold = (start + np.arange(len(ids))) % k
        start = (start + len(ids)) % k
        parts.append(pd.DataFrame({"item_id": ids, "fold": fold.astype(int), "label": lab}))
    out = pd.concat(parts, ignore_index=True)
    order = {key: i for i, key in enumerate(items["item_id"])}
    return out.sort_values("item_id", key=lambda s: s.map(order)).reset_index(drop=True)


def calibration_split(seed_items: pd.DataFrame, *, cv_folds: int, fraction: float, max_holdout: int = 0,
                      seed: int = 7) -> pd.DataFrame:
    """01_calibrate's ``calibration_split`` table: ``item_id, split, fold, label``.

    ``cv_folds >= 2``: cross-fitting; every seed item is in a fold and is judged out of fold (``split = holdout``),
    except, with ``max_holdout``, the items beyond a stratified cap (``unused``: still fitted on, never judged).
    ``cv_folds = 0``: the single split of :func:`stratified_split` (``fewshot`` / ``holdout``), ``fold = -1``.
    """
    if cv_folds:
        out = stratified_folds(seed_items, k=cv_folds, seed=seed).assign(split="holdout")
        if max_holdout and len(out) > max_holdout:
            keep = stratified_split(seed_items, fraction=max_holdout / len(out), seed=seed)
            judged = set(keep.loc[keep["split"] == "fewshot", "item_id"])
            out.loc[~out["item_id"].isin(judged), "split"] = "unused"
        return out[["item_id", "split", "fold", "label"]]
    split = stratified_split(seed_items, fraction=fraction, seed=seed).assign(fold=-1)
    holdout = seed_items[seed_items["item_id"].isin(split.loc[split["split"] == "holdout", "item_id"])]
    if max_holdout and len(holdout) > max_holdout:
        keep = stratified_split(holdout, fraction=max_holdout / len(holdout), seed=seed)
        kept = set(keep.loc[keep["split"] == "fewshot", "item_id"])
        split.loc[split["split"].eq("holdout") & ~split["item_id"].isin(kept), "split"] = "unused"
    return split[["item_id", "split", "fold", "label"]]
