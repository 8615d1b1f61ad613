"""Find conflicts: the same request in two sources carrying different labels.

A production success whose request also sits in the seed as a refusal is the naive-merge problem of the first
seed document. Two kinds of match:

``exact``
    the same text after :func:`flywheel_lib.data.stats.match_key` (lowercase, punctuation dropped,
    whitespace collapsed) — a hash join, no model;
``paraphrase``
    sentence-embedding cosine (``flywheel_lib.embeddings.embed``, unit vectors) of at least
    ``similarity_threshold`` — each distinct query text against the reference rows with a different label, by
    blocked matrix products keeping the best match per row.

Only distinct normalised texts are embedded. On a large corpus ``prefilter > 0`` adds a blocking step (as in
record linkage): a word uni/bi-gram TF-IDF cosine against the same reference rows, and only texts reaching
``prefilter`` are embedded. Blocking trades a little recall for time; ``benchmarks/bench_curation.py`` measures
both on the generator's planted conflicts.

The result has one row per query item with a conflict: ``item_id, other_id, match, similarity, label,
other_label, text, other_text, source, other_source``; ``df.attrs`` carries counts and timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..data.stats import match_key

__all__ = ["find_conflicts", "CONFLICT_COLUMNS"]

CONFLICT_COLUMNS = ["item_id", "other_id", "match", "similarity", "label", "other_label", "text", "other_text",
                    "source", "other_source"]


def _lexical_best(queries: list[str], refs: list[str], block: int) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    vec.fit(refs + queries[: 20000])
    r = vec.transform(refs).T.tocsc()
    out = np.zeros(len(queries), dtype=np.float32)
    for i in range(0, len(queries), block):
        m = vec.transform(queries[i : i + block]) @ r
        out[i : i + block] = np.asarray(m.max(axis=1).todense()).ravel() if m.shape[1] else 0.0
    return out


def _best_match(q: np.ndarray, r: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Best reference row and its cosine for each query row (unit vectors), ``block`` rows at a time."""
    idx = np.zeros(len(q), dtype=np.int64)
    sim = np.full(len(q), -1.0, dtype=np.float32)
    if not len(r):
        return idx, sim
    for i in range(0, len(q), block):
        s = q[i : i + block] @ r.T
        idx[i : i + block] = s.argmax(axis=1)
        sim[i : i + block] = s.max(axis=1)
    return idx, sim


def find_conflicts(
    items: pd.DataFrame,
    *,
    similarity_threshold: float = 0.9,
    query_sources: Sequence[str] = ("production", "traffic"),
    reference_sources: Sequence[str] = ("seed",),
    embedder: Callable | None = None,
    prefilter: float = 0.0,
    block_size: int = 4096,
    paraphrases: bool = True,
) -> pd.DataFrame:
    """Conflicts between query rows (``query_sources``) and reference rows (``reference_sources``) of ``items``:
    the best different-label reference match per query item, exact matches first."""
    t0 = time.perf_counter()
    for col in ("item_id", "text", "source", "label"):
        if col not in items.columns:
            raise KeyError(f"find_conflicts: items lack column {col!r}")
    q = items.loc[items["source"].isin(query_sources), ["item_id", "text", "label", "source"]].copy()
    r = items.loc[items["source"].isin(reference_sources), ["item_id", "text", "label", "source"]].copy()
    q["_norm"] = [match_key(t) for t in q["text"]]
    r["_norm"] = [match_key(t) for t in r["text"]]
    # --- exact: hash join on the normalised text, different labels ---------------------------------
    ex = q.merge(r, on="_norm", suffixes=("", "_o"))
    ex = ex[ex["label"] != ex["label_o"]].drop_duplicates("item_id")
    ex = ex.assign(match="exact", similarity=1.0)
    found = [ex.rename(columns={"item_id_o": "other_id", "label_o": "other_label", "text_o": "other_text",
                                "source_o": "other_source"})]
    n_embedded = n_candidates = 0
    t_embed = 0.0
    rest = q[~q["item_id"].isin(ex["item_id"])]
    if paraphrases and len(rest) and len(r):
        if embedder is None:  # the current executor's: flywheel_lib.embeddings.embed locally, Ray actors under ray
            from ..executors import embedder as _current_embedder

            embedder = _current_embedder()
        for lab, grp in rest.groupby("label", dropna=False, sort=True):
            ref = r[r["label"] != lab].drop_duplicates("_norm").reset_index(drop=True)
            if not len(ref):
                continue
            texts = pd.unique(grp["_norm"]).tolist()
            if prefilter > 0:
                lex = _lexical_best(texts, ref["_norm"].tolist(), block_size)
                texts = [t for t, s in zip(texts, lex) if s >= prefilter]
            n_candidates += len(texts)
            if not texts:
                continue
            t1 = time.perf_counter()
            vecs = np.asarray(embedder(texts + ref["_norm"].tolist()), dtype=np.float32)  # one call, one space
            vq, vr = vecs[: len(texts)], vecs[len(texts) :]
            t_embed += time.perf_counter() - t1
            n_embedded += len(texts) + len(ref)
            best, sim = _best_match(vq, vr, block_size)
            hit = sim >= similarity_threshold
            m = pd.DataFrame({"_norm": np.asarray(texts, dtype=object)[hit], "_ref": best[hit], "similarity": sim[hit]})
            if not len(m):
                continue
            o = ref.iloc[m["_ref"].to_numpy()].reset_index(drop=True)
            m = pd.concat([m.reset_index(drop=True), o.add_suffix("_o").drop(columns=["_norm_o"])], axis=1)
            hits = grp.merge(m, on="_norm").assign(match="paraphrase")
            found.append(hits.rename(columns={"item_id_o": "other_id", "label_o": "other_label",
                                              "text_o": "other_text", "source_o": "other_source"}))
    out = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else None
    if out is None:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in CONFLICT_COLUMNS})
    out = out[CONFLICT_COLUMNS].reset_index(drop=True)
    out["similarity"] = out["similarity"].astype(float)
    out.attrs.update({"n_query": int(len(q)), "n_reference": int(len(r)), "n_exact": int((out["match"] == "exact").sum()),
                      "n_paraphrase": int((out["match"] == "paraphrase").sum()), "n_candidates": int(n_candidates),
                      "n_embedded": int(n_embedded), "embed_s": round(t_embed, 3),
                      "total_s": round(time.perf_counter() - t0, 3)})
    return out
