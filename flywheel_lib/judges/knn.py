"""Nearest-neighbour judge: vote of the ``k`` most similar few-shot items in sentence-embedding space.

The category is the similarity-weighted vote of the neighbours. For a refusal or clarify category the reason key
is the neighbours' gold ``reason_key`` that weighs most among those of the winning category, so its reasons share
the seed's vocabulary. For the solvable category the reason is an attribute set estimated per attribute: among
the ``k_attr`` most similar *solvable* pool items, an attribute (or function) is kept when its similarity-weighted
share of votes exceeds ``attr_share`` (at least the best-voted one), so a query gets the attributes its solvable
neighbours mostly agree on rather than one neighbour's whole set. ``k_attr`` and ``attr_share`` are chosen together
by leave-one-out exact-set accuracy on the pool's solvable items (``auto``): requests combine attributes freely, so
a compound request's neighbours each share only part of its set and a share below one half often recovers it. It
abstains when even the nearest neighbour is far (cosine below ``min_similarity``).

Two encoders: ``minilm`` runs the all-MiniLM-L6-v2 transformer (:mod:`flywheel_lib.embeddings`; about 100-300
texts per second on two CPU cores); ``static`` mean-pools the same model's token-embedding table (no transformer,
a static sentence embedding in the manner of model2vec; tens of thousands of texts per second, coarser).
Texts are embedded once each (duplicates share a vector).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..records import Verdict
from .base import OfflineJudge

__all__ = ["KNNJudge"]


class KNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int | Literal["auto"] = "auto"
    """Neighbours that vote; ``auto`` picks it by leave-one-out accuracy on the few-shot pool."""
    k_grid: list[int] = [1, 3, 5, 7, 9, 15]
    """Candidates for ``k: auto``."""
    k_attr: int | Literal["auto"] = "auto"
    """Solvable neighbours that vote on each attribute; ``auto`` picks it by leave-one-out exact-set accuracy."""
    k_attr_grid: list[int] = [1, 3, 5, 7, 9, 15, 21, 31]
    """Candidates for ``k_attr: auto``."""
    attr_share: float | Literal["auto"] = "auto"
    """Keep an attribute whose similarity-weighted share among the solvable neighbours exceeds this; ``auto`` picks
    it from ``attr_share_grid`` together with ``k_attr`` by leave-one-out exact-set accuracy."""
    attr_share_grid: list[float] = [0.25, 0.3, 0.35, 0.4, 0.5]
    """Candidates for ``attr_share: auto``."""
    min_similarity: float = 0.25
    """Abstain when the nearest neighbour's cosine similarity is below this."""
    batch_size: int = 256
    """Embedding batch size."""
    encoder: Literal["minilm", "static", "hybrid"] = "minilm"
    """The transformer's sentence embeddings, its mean-pooled static token embeddings (fast), or ``hybrid``:
    IDF-weighted static token embeddings beside TF-IDF word and character n-grams (fast; see the module doc)."""
    tfidf_weight: float = 0.6
    """``hybrid``: the TF-IDF n-grams' share of the similarity (the static embedding has the rest)."""
    vote_power: float = 1.0
    """A neighbour's vote weighs ``similarity ** vote_power`` (higher: the nearest count more)."""


def _static_tokens(texts: list[str]):
    from ..embeddings import static_tokens

    return static_tokens(texts)


def _static_embed(texts: list[str], idf: dict | None = None, default_idf: float = 1.0) -> np.ndarray:
    """Mean (or, with ``idf``, IDF-weighted mean) of the static token embeddings, L2-normalised."""
    table, enc = _static_tokens(texts)
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(enc):
        if ids:
            if idf is None:
                out[i] = table[ids].mean(0)
            else:
                w = np.array([idf.get(t, default_idf) for t in ids], dtype=np.float32)
                out[i] = w @ table[ids]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


def _token_idf(texts: list[str]) -> tuple[dict, float]:
    """Smoothed IDF of the tokenizer's tokens over ``texts`` (an unseen token gets the largest IDF)."""
    _, enc = _static_tokens(texts)
    df: dict[int, int] = defaultdict(int)
    for ids in enc:
        for t in set(ids):
            df[t] += 1
    n = len(texts)
    idf = {t: float(np.log((1 + n) / (1 + c)) + 1) for t, c in df.items()}
    return idf, float(np.log(1 + n) + 1)


class KNNJudge(OfflineJudge):
    Params = KNNParams

    def _embed(self, texts: list[str], *, fit: bool = False):
        """Vectors of ``texts``: a dense array, or for ``hybrid`` a pair (dense static part, sparse TF-IDF part)
        each L2-normalised, so that :meth:`_sims` weighs their cosines."""
        from ..embeddings import embed

        uniq, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        if self.params.encoder == "static":
            return _static_embed(uniq.tolist())[inverse]
        if self.params.encoder == "hybrid":
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.pipeline import FeatureUnion
            from sklearn.preprocessing import normalize

            low = [t.lower() for t in uniq.tolist()]
            if fit:
                self.idf_ = _token_idf(low)
                self.tfidf_ = FeatureUnion([
                    ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                    ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))]).fit(low)
            dense = _static_embed(low, *self.idf_)[inverse]
            sparse = normalize(self.tfidf_.transform(low))[inverse]
            return dense, sparse
        return embed(uniq.tolist(), batch_size=self.params.batch_size)[inverse]

    def _sims(self, a, b) -> np.ndarray:
        """Cosine similarities between the rows of two :meth:`_embed` results."""
        if isinstance(a, tuple):
            w = self.params.tfidf_weight
            return (1 - w) * (a[0] @ b[0].T) + w * (a[1] @ b[1].T).toarray()
        return a @ b.T

    def _w(self, s) -> float:
        return max(float(s), 1e-6) ** self.params.vote_power

    @staticmethod
    def _rows(v, sl):
        return (v[0][sl], v[1][sl]) if isinstance(v, tuple) else v[sl]

    def fit(self, fewshot: pd.DataFrame) -> KNNJudge:
        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        self.labels_ = pool["label"].astype(str).to_numpy()
        self.reasons_ = pool["reason_key"].fillna("").astype(str).to_numpy()
        self.texts_ = pool["text"].astype(str).to_numpy()
        self.vectors_ = self._embed(self.texts_.tolist(), fit=True)
        self.k_ = self.params.k if self.params.k != "auto" else self._choose_k()
        sol = np.flatnonzero(self.labels_ == self.taxonomy.solvable_id)
        self.solvable_rows_ = sol
        self.attr_sets_ = [frozenset(a for a in self.reasons_[j].split(",") if a) for j in sol]
        self.k_attr_, self.attr_share_ = self._choose_k_attr()
        self._set_state(self.texts_.tolist(), self.labels_.tolist(), self.reasons_.tolist(), self.k_, self.k_attr_,
                        self.attr_share_)
        return self

    def _attr_vote(self, sims: np.ndarray, order: np.ndarray, k: int, share: float | None = None) -> str:
        """Attributes whose weighted share among the ``k`` solvable neighbours in ``order`` passes ``share``
        (default: the fitted ``attr_share_``)."""
        share = self.attr_share_ if share is None else share
        votes: dict[str, float] = defaultdict(float)
        total = 0.0
        for j in order[:k]:
            w = self._w(sims[j])
            total += w
            for a in self.attr_sets_[j]:
                votes[a] += w
        if not votes:
            return ""
        chosen = [a for a, v in votes.items() if v / total > share]
        return ",".join(sorted(chosen or [max(sorted(votes), key=votes.get)]))

    def _choose_k_attr(self) -> tuple[int, float]:
        """``(k_attr, attr_share)``: the fixed values, or for ``auto`` the pair of the grids with the best
        leave-one-out exact attribute-set accuracy on the pool's solvable items (ties: smaller k, then the share
        listed first)."""
        p = self.params
        ks = [p.k_attr] if p.k_attr != "auto" else sorted(p.k_attr_grid)
        shares = [p.attr_share] if p.attr_share != "auto" else list(p.attr_share_grid)
        n = len(self.solvable_rows_)
        if n < 2 or (len(ks) == 1 and len(shares) == 1):
            return ks[0] if p.k_attr != "auto" else 1, shares[0]
        vec = self._rows(self.vectors_, self.solvable_rows_)
        sims = self._sims(vec, vec)
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1)
        gold = [",".join(sorted(s)) for s in self.attr_sets_]
        best, pick = -1.0, (ks[0], shares[0])
        for k in ks:
            if k >= n and k != ks[0]:
                break
            for share in shares:
                acc = np.mean([self._attr_vote(sims[i], order[i], k, share) == gold[i] for i in range(n)])
                if acc > best:
                    best, pick = acc, (k, share)
        self.loo_attr_accuracy_ = float(best)
        return pick

    def _choose_k(self) -> int:
        """Leave-one-out accuracy of the weighted vote on the pool, for each k of the grid (ties: smaller k)."""
        n = len(self.labels_)
        sims = self._sims(self.vectors_, self.vectors_)
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1)
        best, best_k = -1.0, 1
        for k in sorted(self.params.k_grid):
            if k >= n:
                break
            hits = 0
            for i in range(n):
                votes: dict[str, float] = defaultdict(float)
                for j in order[i, :k]:
                    votes[self.labels_[j]] += self._w(sims[i, j])
                hits += max(votes, key=votes.get) == self.labels_[i]
            if hits / n > best:
                best, best_k = hits / n, k
        self.loo_accuracy_ = best
        return best_k

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        if not len(items):
            return []
        k = min(self.k_, len(self.labels_))
        vecs = self._embed(items["text"].astype(str).tolist())
        out: list[Verdict] = []
        ids = items["item_id"].astype(str).tolist()
        n = len(ids)
        for start in range(0, n, 4096):
            sims = self._sims(self._rows(vecs, slice(start, start + 4096)), self.vectors_)
            sol_sims = sims[:, self.solvable_rows_]
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for r, nb in enumerate(top):
                s = sims[r, nb]
                order = np.argsort(-s)
                nb, s = nb[order], s[order]
                iid = ids[start + r]
                if s[0] < self.params.min_similarity:
                    out.append(Verdict.abstain(iid, self.name, f"no neighbour within similarity "
                                               f"{self.params.min_similarity} (nearest {s[0]:.2f})", model=self.model))
                    continue
                votes: dict[str, float] = defaultdict(float)
                for j, w in zip(nb, s):
                    votes[self.labels_[j]] += self._w(w)
                cat = max(votes, key=votes.get)
                if cat == self.taxonomy.solvable_id and len(self.solvable_rows_):
                    ssims = sol_sims[r]
                    ka = min(self.k_attr_, len(ssims))
                    top_a = np.argpartition(-ssims, ka - 1)[:ka]
                    rk = self._attr_vote(ssims, top_a[np.argsort(-ssims[top_a])], ka)
                else:
                    reasons: dict[str, float] = defaultdict(float)
                    for j, w in zip(nb, s):
                        if self.labels_[j] == cat:
                            reasons[self.reasons_[j]] += self._w(w)
                    rk = max(reasons, key=reasons.get)
                share = ", ".join(f"{c} {v / sum(votes.values()):.0%}" for c, v in sorted(votes.items(), key=lambda x: -x[1]))
                rationale = f"{k} neighbours: {share}; nearest ({s[0]:.2f}): {self.texts_[nb[0]][:80]!r}"
                out.append(Verdict(item_id=iid, judge=self.name, category=cat, reason_key=rk, rationale=rationale,
                                   model=self.model))
        return out
