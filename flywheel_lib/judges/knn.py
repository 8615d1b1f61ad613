"""Nearest-neighbour judge: vote of the ``k`` most similar few-shot items in sentence-embedding space.

The category is the similarity-weighted vote of the neighbours; the reason key is the neighbours' gold
``reason_key`` that weighs most among those of the winning category, so its reasons share the seed's vocabulary.
It abstains when even the nearest neighbour is far (cosine below ``min_similarity``).

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
    min_similarity: float = 0.25
    """Abstain when the nearest neighbour's cosine similarity is below this."""
    batch_size: int = 256
    """Embedding batch size."""
    encoder: Literal["minilm", "static"] = "minilm"
    """The transformer's sentence embeddings, or its mean-pooled static token embeddings (fast)."""


def _static_embed(texts: list[str]) -> np.ndarray:
    from ..embeddings import load_encoder

    model = load_encoder()
    tok = model.tokenizer
    table = model[0].auto_model.embeddings.word_embeddings.weight.detach().float().numpy()
    special = set(tok.all_special_ids)
    enc = tok(texts, add_special_tokens=False, truncation=True, max_length=64)["input_ids"]
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(enc):
        ids = [t for t in ids if t not in special]
        if ids:
            out[i] = table[ids].mean(0)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


class KNNJudge(OfflineJudge):
    Params = KNNParams

    def _embed(self, texts: list[str]) -> np.ndarray:
        from ..embeddings import embed

        uniq, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
        if self.params.encoder == "static":
            vecs = _static_embed(uniq.tolist())
        else:
            vecs = embed(uniq.tolist(), batch_size=self.params.batch_size)
        return vecs[inverse]

    def fit(self, fewshot: pd.DataFrame) -> "KNNJudge":
        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        self.labels_ = pool["label"].astype(str).to_numpy()
        self.reasons_ = pool["reason_key"].fillna("").astype(str).to_numpy()
        self.texts_ = pool["text"].astype(str).to_numpy()
        self.vectors_ = self._embed(self.texts_.tolist())
        self.k_ = self.params.k if self.params.k != "auto" else self._choose_k()
        self._set_state(self.texts_.tolist(), self.labels_.tolist(), self.reasons_.tolist(), self.k_)
        return self

    def _choose_k(self) -> int:
        """Leave-one-out accuracy of the weighted vote on the pool, for each k of the grid (ties: smaller k)."""
        n = len(self.labels_)
        sims = self.vectors_ @ self.vectors_.T
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
                    votes[self.labels_[j]] += max(float(sims[i, j]), 1e-6)
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
        for start in range(0, len(vecs), 4096):
            sims = vecs[start:start + 4096] @ self.vectors_.T
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
                    votes[self.labels_[j]] += max(float(w), 1e-6)
                cat = max(votes, key=votes.get)
                reasons: dict[str, float] = defaultdict(float)
                for j, w in zip(nb, s):
                    if self.labels_[j] == cat:
                        reasons[self.reasons_[j]] += max(float(w), 1e-6)
                rk = max(reasons, key=reasons.get)
                share = ", ".join(f"{c} {v / sum(votes.values()):.0%}" for c, v in sorted(votes.items(), key=lambda x: -x[1]))
                rationale = f"{k} neighbours: {share}; nearest ({s[0]:.2f}): {self.texts_[nb[0]][:80]!r}"
                out.append(Verdict(item_id=iid, judge=self.name, category=cat, reason_key=rk, rationale=rationale,
                                   model=self.model))
        return out
