"""Cross-fitting: every seed item judged by a panel fitted without it (out-of-fold verdicts).

The seed is dealt into ``k`` stratified folds (:func:`~flywheel_lib.curation.split.stratified_folds`). For each
fold a fresh panel is fitted on the other folds (minus any row whose normalised text equals a text of the judged
fold, so a duplicate cannot leak an answer) and judges the fold. The verdicts of the ``k`` folds together are the
out-of-fold verdicts: kappa, confusion and precision/coverage computed from them score judges on every seed item
while no judge ever saw the item it labels. LLM judges draw their few-shot examples from the fit pool, so from the
training folds only. ``02_judge`` then refits on the whole seed.

    from flywheel_lib.judges.crossfit import cross_fit
    res = cross_fit(lambda: load_panel(path, taxonomy=tax), seed_items, folds, cache_dir="outputs/cache")
    res.verdicts; res.log   # one row per fold: n_fit, n_judged
    res.panel.judge(items)  # each item re-judged by its own fold's fitted panel (e.g. the anchoring probe)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..curation.split import check_disjoint
from ..records import empty_table
from .failfast import MAX_FAILURE_RATE

__all__ = ["cross_fit", "CrossFit", "FoldedPanel"]


@dataclass
class CrossFit:
    verdicts: pd.DataFrame
    """Out-of-fold verdicts, one row per judged item and judge, in the order of the judged items."""
    log: pd.DataFrame
    """One row per fold: ``fold, n_fit, n_judged, n_dropped_duplicates``."""
    fit_ids: dict = field(default_factory=dict)
    """``fold -> item_ids`` of the seed rows each fold's panel was fitted on."""
    judged_ids: dict = field(default_factory=dict)
    """``fold -> item_ids`` each fold's panel judged."""
    stats: pd.DataFrame | None = None
    """The panels' per-judge run statistics, summed over folds."""
    panels: dict = field(default_factory=dict)
    """``fold -> Panel``: each fold's fitted panel."""

    @property
    def panel(self) -> FoldedPanel:
        """The fitted fold panels as one panel that judges each item with its own fold's panel."""
        return FoldedPanel(self.panels, {str(i): f for f, ids in self.judged_ids.items() for i in ids})


class FoldedPanel:
    """The cross-fitted panels as one: an item is judged by the panel of its fold, fitted without it.

    What a later step that re-judges seed items needs (the anchoring probe re-judges them with a claimed label):
    the same fits as the out-of-fold verdicts, so a change of verdict comes from the new prompt, never from a
    few-shot pool that holds the item. It has the panel's ``names``, ``judges``, ``without`` and ``judge``."""

    def __init__(self, panels: dict, fold_of: dict[str, int]):
        if not panels:
            raise ValueError("a folded panel needs at least one fitted fold panel")
        self.panels = dict(panels)
        self.fold_of = dict(fold_of)
        first = next(iter(self.panels.values()))
        self.config, self.judges, self.taxonomy = first.config, first.judges, first.taxonomy

    def __repr__(self) -> str:
        return f"FoldedPanel({self.config.name!r}, judges={self.names}, folds={sorted(self.panels)})"

    def __len__(self) -> int:
        return len(self.judges)

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.judges]

    def without(self, names) -> FoldedPanel:
        return FoldedPanel({f: p.without(names) for f, p in self.panels.items()}, self.fold_of)

    def judge(self, items: pd.DataFrame, **kw) -> pd.DataFrame:
        """``Panel.judge`` fold by fold; rows in item order (then judge order), ``stats_`` summed over folds."""
        folds = items["item_id"].astype(str).map(self.fold_of)
        if folds.isna().any():
            raise ValueError(f"item {items.loc[folds.isna(), 'item_id'].iloc[0]!r} was not judged out of fold: "
                             "no fold panel may judge it")
        parts, stats = [], []
        for f in sorted(folds.unique()):
            pan = self.panels[f]
            parts.append(pan.judge(items[(folds == f).to_numpy()], **kw))
            stats.append(pan.stats_)
        self.stats_ = pd.concat(stats).groupby("judge", sort=False).sum(numeric_only=True).reset_index()
        v = pd.concat(parts, ignore_index=True)
        order = {str(k): i for i, k in enumerate(items["item_id"])}
        return v.iloc[v["item_id"].astype(str).map(order).argsort(kind="stable")].reset_index(drop=True)


def cross_fit(make_panel: Callable, seed_items: pd.DataFrame, folds: pd.DataFrame, *, judge_ids=None,
              pool: Callable | None = None, cache_dir=None, progress: bool = False,
              max_failure_rate: float | None = MAX_FAILURE_RATE) -> CrossFit:
    """Judge ``judge_ids`` (default: every seed item) out of fold.

    ``make_panel()`` returns an unfitted panel; ``folds`` has ``item_id, fold`` for every row of ``seed_items``;
    ``pool(train, judged)`` turns the training rows into what the panel fits on (default: the rows themselves; it
    must not add a judged text back, which is checked). ``max_failure_rate`` is each fold's ``Panel.judge`` bound
    on failed calls.
    """
    from ..data.stats import match_key

    missing = set(seed_items["item_id"]) - set(folds["item_id"])
    if missing:
        raise ValueError(f"cross_fit: {len(missing)} seed items have no fold (first: {sorted(missing)[0]!r})")
    fold_of = folds.set_index("item_id")["fold"]
    seed = seed_items.assign(_fold=seed_items["item_id"].map(fold_of).to_numpy())
    wanted = seed if judge_ids is None else seed[seed["item_id"].isin(set(judge_ids))]
    parts, rows, fit_ids, judged_ids, stats, panels = [], [], {}, {}, [], {}
    for f in sorted(wanted["_fold"].unique()):
        judged = wanted[wanted["_fold"] == f].drop(columns="_fold")
        banned = set(judged["text"].map(match_key))
        train = seed[seed["_fold"] != f].drop(columns="_fold")
        dup = train["text"].map(match_key).isin(banned)
        train = train[~dup]
        check_disjoint(train["item_id"], judged["item_id"], where=f"cross-fit fold {f}")
        fit_on = pool(train, judged) if pool is not None else train
        leaked = fit_on["text"].map(match_key).isin(banned)
        if leaked.any():
            raise ValueError(f"cross-fit fold {f}: the fit pool holds {int(leaked.sum())} texts of the judged fold "
                             f"(first: {fit_on.loc[leaked, 'text'].iloc[0]!r})")
        pan = make_panel().fit(fit_on)
        parts.append(pan.judge(judged, cache_dir=cache_dir, progress=progress, max_failure_rate=max_failure_rate))
        panels[int(f)] = pan
        if hasattr(pan, "stats_"):
            stats.append(pan.stats_)
        fit_ids[int(f)] = train["item_id"].tolist()
        judged_ids[int(f)] = judged["item_id"].tolist()
        rows.append({"fold": int(f), "n_fit": len(fit_on), "n_judged": len(judged),
                     "n_dropped_duplicates": int(dup.sum())})
    if not parts:
        return CrossFit(empty_table("verdicts"), pd.DataFrame(rows), fit_ids, judged_ids, panels=panels)
    v = pd.concat(parts, ignore_index=True)
    order = {str(k): i for i, k in enumerate(wanted["item_id"])}
    v = v.iloc[v["item_id"].astype(str).map(order).argsort(kind="stable")].reset_index(drop=True)
    st = None
    if stats:
        st = pd.concat(stats).groupby("judge", sort=False).sum(numeric_only=True).reset_index()
    return CrossFit(v, pd.DataFrame(rows), fit_ids, judged_ids, st, panels)
