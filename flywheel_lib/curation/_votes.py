"""Shared helpers: reason-key normalisation and the verdicts table pivoted into a vote matrix.

Every consensus strategy and every calibration statistic starts from the long verdicts table
(``item_id, judge, category, reason_key, rationale, ...``; one row per item and judge, an abstention has
``category = None``). :func:`vote_matrix` turns it into an ``items x judges`` frame of categories where a
missing row (a judge that never saw the item) and an abstention both read as ``None``.

>>> normalize_reason_key("  Amount-Spent ,number of  orders ")
'amount_spent,number_of_orders'
>>> normalize_reason_key(None) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..records import check_table

__all__ = ["normalize_reason_key", "is_missing", "vote_matrix", "check_verdicts"]

_SEP = re.compile(r"[\s\-]+")


def is_missing(x) -> bool:
    """True for None, NaN and empty/blank strings."""
    if x is None:
        return True
    if isinstance(x, float) and np.isnan(x):
        return True
    return isinstance(x, str) and not x.strip()


def normalize_reason_key(key) -> str | None:
    """Canonical form of a reason key: casefold, strip, runs of whitespace/hyphens become ``_``; a comma
    list has its parts normalised, de-duplicated and sorted. Blank or missing gives ``None``."""
    if is_missing(key):
        return None
    parts = [_SEP.sub("_", p.strip().casefold()).strip("_") for p in str(key).split(",")]
    parts = sorted({p for p in parts if p})
    return ",".join(parts) if parts else None


def check_verdicts(verdicts: pd.DataFrame, where: str = "verdicts") -> pd.DataFrame:
    """Check the verdicts contract (columns, one row per item and judge)."""
    return check_table(verdicts, "verdicts", where)


def vote_matrix(
    verdicts: pd.DataFrame,
    *,
    column: str = "category",
    judges: Iterable[str] | None = None,
    items: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Pivot verdicts into ``items x judges`` (values from ``column``; ``None`` where a judge abstained or
    has no row). ``judges`` fixes the panel (default: every judge in the table, sorted); ``items`` fixes the rows
    (default: every item in the table, in first-seen order)."""
    v = verdicts[["item_id", "judge", column]]
    if judges is not None:
        judges = list(judges)
        v = v[v["judge"].isin(judges)]
    wide = v.pivot(index="item_id", columns="judge", values=column)
    judges = judges if judges is not None else sorted(verdicts["judge"].unique())
    order = list(items) if items is not None else list(pd.unique(verdicts["item_id"]))
    wide = wide.reindex(index=order, columns=judges)
    vals = wide.to_numpy(dtype=object)
    flat = np.array([None if is_missing(x) else x for x in vals.ravel().tolist()], dtype=object)
    out = pd.DataFrame(flat.reshape(wide.shape), index=pd.Index(wide.index, name="item_id"), columns=list(wide.columns),
                       dtype=object)
    return out
