"""Lever 1: a timestamped store of labelled examples, and few-shot retrieval from it.

Every cycle's curated corpus is appended to the store: one row per labelled example with the cycle that added it,
when, where it came from (``seed``, ``production``, ``traffic``, ...) and the taxonomy version it was labelled under.
A store is a table (Parquet through the stage); a cycle's store is its parent's rows unchanged plus the rows it adds,
so the store only grows and no row is ever edited (:func:`append_examples` checks both)::

    store = append_examples(parent_store, curated_rows, cycle=2, taxonomy=tax, run_id=st.run_dir.name)
    ret = ExampleRetriever(store, k=4)
    shots = ret.neighbours(eval_items)          # K nearest stored examples per item, never the item itself
    prompts = fewshot_prompts(eval_items, shots)  # the user turn the deployed model is prompted with
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ..training.datasets import near_duplicate_key
from ..training.targets import format_target

__all__ = ["STORE_COLUMNS", "LABEL_ORIGINS", "append_examples", "ExampleRetriever", "fewshot_prompts", "store_growth"]

STORE_COLUMNS = ["example_id", "item_id", "text", "label", "output", "reason_key", "target", "source", "cycle",
                 "added_at", "taxonomy_version", "run_id", "label_origin"]
"""The store's columns. ``example_id`` is ``<item_id>|<label>``; ``target`` is the assistant answer the skill should
give (the training target of 04); ``added_at`` is when the cycle appended it (UTC, ISO 8601); ``label_origin`` is
who decided the label (:data:`LABEL_ORIGINS`; empty in stores written before the column existed)."""

LABEL_ORIGINS = {
    "panel": "the judge panel agreed on it",
    "review": "a person decided it in the review queue",
    "tree": "the decision tree changed the logged label on the panel's evidence",
    "logged": "the logged label, kept because nothing contradicted it: for traffic, the deployed model's own decision",
    "corpus": "the corpus's label as it came (seed annotations, production rows no stage questioned)",
}
"""What each ``label_origin`` means. Only ``logged`` rows carry no judgement beyond the model that produced them."""


def _targets(rows: pd.DataFrame, taxonomy) -> list[str]:
    out = []
    for r in rows.itertuples(index=False):
        sugg, title = "", ""
        if taxonomy is not None and r.label != taxonomy.solvable_id:
            cat = taxonomy[r.label]
            sugg, title = cat.suggestion or "", cat.title
        out.append(format_target(r.label, r.output, getattr(r, "reason_key", None),
                                 solvable_id=taxonomy.solvable_id if taxonomy is not None else "solvable",
                                 suggestion=sugg, title=title, where=f"store row {r.item_id}"))
    return out


def append_examples(store: pd.DataFrame | None, rows: pd.DataFrame, *, cycle: int, taxonomy=None, run_id: str = "",
                    added_at: str | None = None) -> pd.DataFrame:
    """The store with ``rows`` appended (those not already stored under the same ``item_id`` and ``label``).

    ``rows`` needs ``item_id, text, label, output`` (``reason_key``, ``source`` and ``label_origin`` optional): a
    curated corpus, such as 03's ``train_sets`` rows of the curated variant. Existing rows come back unchanged and
    first.
    """
    missing = [c for c in ("item_id", "text", "label", "output") if c not in rows.columns]
    if missing:
        raise ValueError(f"rows to store lack columns: {', '.join(missing)}")
    store = (pd.DataFrame(columns=STORE_COLUMNS) if store is None else store).reset_index(drop=True)
    if "label_origin" not in store.columns:  # a store written before labels carried their origin
        store = store.assign(label_origin="")
    bad = [c for c in STORE_COLUMNS if c not in store.columns]
    if bad:
        raise ValueError(f"the example store lacks columns: {', '.join(bad)}")
    new = rows.copy()
    new = new[new["label"].notna() & new["text"].notna()]
    new["example_id"] = new["item_id"].astype(str) + "|" + new["label"].astype(str)
    new = new.drop_duplicates("example_id")
    new = new[~new["example_id"].isin(set(store["example_id"]))]
    if "reason_key" not in new:
        new["reason_key"] = None
    new["source"] = new.get("source", "curated")
    new["label_origin"] = new["label_origin"].fillna("") if "label_origin" in new else ""
    unknown = sorted(set(new["label_origin"]) - set(LABEL_ORIGINS) - {""})
    if unknown:
        raise ValueError(f"rows to store: unknown label_origin {unknown}; known: {sorted(LABEL_ORIGINS)}")
    new["target"] = _targets(new, taxonomy)
    new["cycle"] = int(cycle)
    new["added_at"] = added_at or datetime.now(UTC).isoformat(timespec="seconds")
    new["taxonomy_version"] = taxonomy.version_id if taxonomy is not None else ""
    new["run_id"] = run_id
    out = pd.concat([store[STORE_COLUMNS], new[STORE_COLUMNS]], ignore_index=True) if len(store) else \
        new[STORE_COLUMNS].reset_index(drop=True)
    out["cycle"] = out["cycle"].astype(int)
    return out


class ExampleRetriever:
    """The ``k`` stored examples nearest to each query by sentence-embedding cosine similarity.

    An example is never retrieved for the item it *is*: the same ``item_id`` or the same normalized text is skipped,
    so an evaluated item cannot see its own answer.
    """

    def __init__(self, store: pd.DataFrame, *, k: int = 4, embed=None):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.store = store.reset_index(drop=True)
        if embed is None:
            from ..embeddings import embed
        self._embed = embed
        self.vectors_ = self._embed(self.store["text"].astype(str).tolist()) if len(self.store) else \
            np.zeros((0, 1), dtype=np.float32)
        """Unit vectors of the stored texts, one row per store row."""
        self._norm = np.array([near_duplicate_key(t) for t in self.store["text"].astype(str)], dtype=object)

    def neighbours(self, items: pd.DataFrame) -> list[pd.DataFrame]:
        """For each row of ``items`` (``item_id, text``): its nearest stored examples, best first, with ``score``."""
        if not len(self.store):
            return [self.store.assign(score=[]) for _ in range(len(items))]
        q = self._embed(items["text"].astype(str).tolist())
        sims = q @ self.vectors_.T
        sid = self.store["item_id"].astype(str).to_numpy()
        out = []
        for i, it in enumerate(items.itertuples(index=False)):
            s = sims[i].copy()
            s[(sid == str(it.item_id)) | (self._norm == near_duplicate_key(str(it.text)))] = -np.inf
            top = np.argsort(-s, kind="stable")[: self.k]
            top = top[np.isfinite(s[top])]
            out.append(self.store.iloc[top].assign(score=s[top]))
        return out


def fewshot_prompts(items: pd.DataFrame, shots: list[pd.DataFrame]) -> list[str]:
    """The user turn for each item: its retrieved examples as request/answer pairs, then the request itself."""
    out = []
    for text, ex in zip(items["text"].astype(str), shots):
        lines = ["Answered examples of similar requests:"]
        lines += [f"Request: {r.text}\nAnswer: {r.target}" for r in ex.itertuples(index=False)]
        lines.append(f"Now answer this request in the same format.\nRequest: {text}")
        out.append("\n\n".join(lines) if len(ex) else text)
    return out


def store_growth(store: pd.DataFrame) -> pd.DataFrame:
    """Rows per cycle added and in total, by label: what failure patterns the store covers as it grows."""
    if not len(store):
        return pd.DataFrame(columns=["cycle", "label", "added", "total"])
    g = store.groupby(["cycle", "label"]).size().rename("added").reset_index()
    full = g.pivot(index="cycle", columns="label", values="added").fillna(0).astype(int)
    total = full.cumsum()
    return (full.stack().rename("added").to_frame().join(total.stack().rename("total")).reset_index()
            .sort_values(["cycle", "label"]).reset_index(drop=True))
