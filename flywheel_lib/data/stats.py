"""Descriptive statistics of an items table for the 00_data stage: balance, lengths, conflicts, signals, zero results.

Every function takes the items table (the items contract) and returns a small DataFrame or dict that the notebook
shows and records; nothing here writes files. Where there is nothing to show (user data without a truth column, a
domain that cannot execute), the result says why in words (``why``, :func:`nothing_to_show`) instead of ``None``
rows or an empty table.
"""

from __future__ import annotations

import re

import pandas as pd

from ..taxonomy import Taxonomy

__all__ = ["UNLABELLED", "nothing_to_show", "match_key", "class_balance", "class_shares", "length_stats", "exact_refusal_conflicts", "signal_rates", "zero_result_rate",
           "dedup_report"]


def match_key(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace: the key for exact-duplicate and conflict matching.

    >>> match_key("  Customers who are DOCTORS?! ")
    'customers who are doctors'
    """
    return " ".join(re.sub(r"[^\w$%@.+-]+", " ", str(text).lower()).replace(" . ", " ").split()).strip(" .")


UNLABELLED = "(unlabelled)"
"""The row of :func:`class_balance` that counts rows without a value in the column (production logs carry none)."""


def nothing_to_show(table, what: str) -> str | None:
    """A sentence saying ``what`` has nothing to show when ``table`` (a DataFrame, Series or dict) is empty or all
    missing; None when there is something to show.

    >>> nothing_to_show(pd.DataFrame(), "implicit feedback signals")
    'no implicit feedback signals to show'
    """
    if table is None:
        return f"no {what} to show"
    if isinstance(table, dict):
        empty = not table or all(v is None for v in table.values())
    else:
        empty = table.empty or bool(table.isna().all(axis=None) if isinstance(table, pd.DataFrame) else table.isna().all())
    return f"no {what} to show" if empty else None


def class_balance(items: pd.DataFrame, column: str = "label") -> pd.DataFrame:
    """Counts of ``column`` per source (rows: labels, columns: sources, plus a total). Rows without a value count
    under ``(unlabelled)``, not as a class."""
    t = pd.crosstab(items[column].fillna(UNLABELLED), items["source"], margins=True, margins_name="total")
    return t


def class_shares(items: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each source's share of each class, for the class-balance plot, and a sentence per source left out.

    A source is shown by its hidden truth (``true_label``) where it has one, else by the label the data gives; the
    row says which (``production (true_label)``, ``seed (label)``; production's label is the logged one). Rows
    without a value are left out, never drawn as a class; a source with no value at all is left out with a sentence.

    >>> t = pd.DataFrame({"source": ["seed", "production"], "label": ["a", None]})
    >>> class_shares(t)[1]
    ['production: no label to show (1 rows)']
    """
    rows, why = {}, []
    for source, g in items.groupby("source", sort=True):
        col = "true_label" if "true_label" in g.columns and g["true_label"].notna().any() else "label"
        vals = g[col].dropna()
        what = "logged label" if col == "label" and source == "production" else col
        if vals.empty:
            why.append(f"{source}: no {what} to show ({len(g):,} rows)")
            continue
        rows[f"{source} ({what})"] = vals.value_counts(normalize=True)
        if len(vals) < len(g):
            why.append(f"{source}: {len(g) - len(vals):,} of {len(g):,} rows without a {what} left out")
    return pd.DataFrame(rows).T.fillna(0.0), why


def length_stats(items: pd.DataFrame) -> pd.DataFrame:
    """Request length in characters and words per source: mean, median, 95th percentile, max."""
    df = items.assign(chars=items["text"].str.len(), words=items["text"].str.split().str.len())
    agg = df.groupby("source")[["chars", "words"]].describe(percentiles=[0.5, 0.95])
    keep = [(m, s) for m in ("chars", "words") for s in ("mean", "50%", "95%", "max")]
    return agg[keep].round(1)


def exact_refusal_conflicts(items: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Production requests whose normalized text equals a seed request annotated as a refusal or a clarification.

    Columns: ``item_id`` (production), ``seed_item_id``, ``seed_label``, ``text``. Exact after
    :func:`match_key`; paraphrases are left to the later, semantic stages.
    """
    refuse = set(taxonomy.refusal_ids) | set(taxonomy.clarify_ids)
    seed = items[(items["source"] == "seed") & items["label"].isin(refuse)]
    by_key: dict[str, tuple[str, str]] = {}
    for iid, text, lab in zip(seed["item_id"], seed["text"], seed["label"]):
        by_key.setdefault(match_key(text), (iid, lab))
    prod = items[items["source"] == "production"]
    rows = []
    for iid, text in zip(prod["item_id"], prod["text"]):
        hit = by_key.get(match_key(text))
        if hit:
            rows.append({"item_id": iid, "seed_item_id": hit[0], "seed_label": hit[1], "text": text})
    return pd.DataFrame(rows, columns=["item_id", "seed_item_id", "seed_label", "text"])


def dedup_report(items: pd.DataFrame) -> pd.DataFrame:
    """Per source: rows, distinct normalized texts, and the share of repeats."""
    key = items["text"].map(match_key)
    g = items.assign(_k=key).groupby("source")["_k"]
    out = pd.DataFrame({"rows": g.size(), "distinct": g.nunique()})
    out["repeat_share"] = (1 - out["distinct"] / out["rows"]).round(4)
    return out


def signal_rates(items: pd.DataFrame, by: str = "true_label") -> pd.DataFrame:
    """Mean of each ``signal_*`` column over production rows, grouped by ``by`` (when the column exists)."""
    cols = [c for c in items.columns if c.startswith("signal_")]
    prod = items[items["source"] == "production"]
    if not cols or prod.empty:
        return pd.DataFrame()
    data = prod[cols].astype(float)
    if by in prod.columns:
        return data.groupby(prod[by].fillna(UNLABELLED)).mean().round(3)
    return data.mean().round(3).to_frame("all").T


def zero_result_rate(items: pd.DataFrame, domain, taxonomy: Taxonomy) -> dict:
    """How the production model's outputs on should-refuse requests behave when executed.

    Should-refuse rows are production rows whose ``true_label`` (when known) is not the solvable id. Returns
    ``{"rows", "executed", "invalid", "zero", "zero_rate"}``; ``zero_rate`` is zero-result outputs over executed ones
    (the failure the first seed document describes). ``zero_rate`` is None when it cannot be measured, and ``why``
    then says why in words (no truth column, no outputs, a domain that cannot execute).
    """
    prod = items[items["source"] == "production"]
    if "true_label" not in prod.columns:
        return {"rows": 0, "executed": 0, "invalid": 0, "zero": 0, "zero_rate": None,
                "why": "not measured: production rows carry no true_label, so no row is known to need a refusal"}
    rows = prod[prod["true_label"].notna() & (prod["true_label"] != taxonomy.solvable_id)]
    outs = [o for o in rows["output"] if isinstance(o, str) and o.strip()]
    execute = getattr(domain, "execute", None)
    if execute is None or not outs:
        why = ("not measured: the domain cannot execute outputs" if execute is None else
               f"not measured: none of the {len(rows):,} should-refuse production rows has a logged output")
        return {"rows": int(len(rows)), "executed": 0, "invalid": 0, "zero": 0, "zero_rate": None, "why": why}
    cache: dict[str, int | None] = {}
    executed = invalid = zero = 0
    for o in outs:
        if o not in cache:
            try:
                cache[o] = len(execute(o))
            except Exception:  # noqa: BLE001 - an invalid output, or a domain without an executor
                cache[o] = None
        n = cache[o]
        if n is None:
            invalid += 1
        else:
            executed += 1
            zero += n == 0
    return {"rows": int(len(rows)), "executed": executed, "invalid": invalid, "zero": zero,
            "zero_rate": zero / executed if executed else None,
            "why": "" if executed else f"not measured: none of the {invalid:,} outputs executed"}
