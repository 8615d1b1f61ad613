"""Linear text classifier judge: TF-IDF word and character n-grams with logistic regression (scikit-learn).

One classifier picks the category. The reason key is a second linear model per category: for a refusal or
clarify category a classifier over that category's gold reason keys; for the solvable category a one-vs-rest
classifier per catalog attribute, trained on the pool's solvable rows with the attributes of their gold
``reason_key`` as targets (the reason is the set of attributes whose probability exceeds ``reason_threshold``, at
least the likeliest one). An attribute present in every solvable pool row is always kept; one seen in none is never
predicted. It abstains when the top category probability is below ``min_proba``.

With ``context: true`` (default) it also reads the item's per-item schema (:mod:`flywheel_lib.judges.schema`) when
the fit pool carries one: a third TF-IDF view of the question with every word naming a schema table or column
masked as ``_col_`` ("how many _col_ won in _col_"), and dense overlap features (share of the question's content
words the schema names, matched and missing counts, length, question mark, wh-word). A category whose seed rows
carry no reason key cites its evidence instead: the matched schema words for the solvable category, the
question's words the schema lacks otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..records import Verdict
from .base import OfflineJudge

__all__ = ["LinearJudge"]


class LinearParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float = 4.0
    """Inverse regularisation strength of the logistic regressions."""
    min_proba: float = 0.3
    """Abstain when the top category probability is below this."""
    reason_threshold: float = 0.5
    """Solvable reasons: attributes whose probability exceeds this."""
    max_features: int = 50000
    """Vocabulary cap per vectoriser."""
    context: bool = True
    """Read per-item schemas in ``context`` (masked-question view and overlap features) when the pool has them."""
    solver: str = "lbfgs"
    """scikit-learn solver: ``lbfgs`` (multinomial) or ``liblinear`` (one-vs-rest, faster on many n-grams)."""
    class_weight: str | None = None
    """Category weights of the logistic regression (``balanced`` or none)."""
    embed: float = 0.0
    """Above 0: also read the question's static MiniLM sentence embedding (mean-pooled token embeddings, scaled by
    this) and, with a per-item schema, its cosine to the schema's embedding (general word knowledge that n-grams
    over a small seed lack: small talk vs a data question, a request near or far from what the schema holds)."""


class _Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, X):
        return np.array([self.value] * X.shape[0], dtype=object)


class LinearJudge(OfflineJudge):
    Params = LinearParams

    def _lr(self):
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=self.params.C, max_iter=2000, class_weight=self.params.class_weight,
                                solver=self.params.solver)
        if self.params.solver == "liblinear":  # binary only: one-vs-rest over the categories
            from sklearn.multiclass import OneVsRestClassifier

            return OneVsRestClassifier(lr)
        return lr

    def fit(self, fewshot: pd.DataFrame) -> LinearJudge:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import FeatureUnion
        from sklearn.preprocessing import MultiLabelBinarizer

        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        texts = pool["text"].astype(str).tolist()
        labels = pool["label"].astype(str).to_numpy()
        reasons = pool["reason_key"].fillna("").astype(str).to_numpy()
        mf = self.params.max_features
        self.vectorizer_ = FeatureUnion([
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=mf)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=mf)),
        ])
        ctx = pool["context"].fillna("").astype(str).tolist() if "context" in pool else [""] * len(pool)
        from .schema import schema_terms

        self.use_context_ = bool(self.params.context and any(schema_terms(c) for c in ctx))
        if self.use_context_:
            self.masked_ = TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, max_features=mf, token_pattern=r"\S+")
        X = self._features(texts, ctx, fit=True)
        if len(set(labels)) < 2:
            raise ValueError(f"judge {self.name}: the few-shot pool needs at least two categories")
        self.clf_ = self._lr().fit(X, labels)
        self.reason_models_ = {}
        sid = self.taxonomy.solvable_id
        for cid in sorted(set(labels)):
            mask = labels == cid
            if cid == sid:
                sets = [[a for a in r.split(",") if a] for r in reasons[mask]]
                mlb = MultiLabelBinarizer().fit(sets)
                Y = mlb.transform(sets)
                keep = (Y.sum(0) > 0) & (Y.sum(0) < len(Y))
                always = sorted(np.array(mlb.classes_)[Y.sum(0) == len(Y)].tolist())
                if keep.sum() == 0:
                    self.reason_models_[cid] = ("single", _Constant(",".join(always)))
                    continue
                ovr = OneVsRestClassifier(self._lr()).fit(X[mask], Y[:, keep])
                self.reason_models_[cid] = ("multi", (np.array(mlb.classes_)[keep], ovr, always))
            else:
                uniq = sorted(set(reasons[mask]))
                model = _Constant(uniq[0]) if len(uniq) == 1 else self._lr().fit(X[mask], reasons[mask])
                self.reason_models_[cid] = ("single", model)
        self._set_state(texts, labels.tolist(), reasons.tolist(), ctx if self.use_context_ else None,
                        self.params.class_weight)
        return self

    def _features(self, texts: list[str], ctx: list[str], *, fit: bool = False):
        from scipy import sparse

        X = self.vectorizer_.fit_transform(texts) if fit else self.vectorizer_.transform(texts)
        if not self.use_context_:
            return X
        from .schema import masked_question, overlap_features

        masked = [masked_question(t, c) for t, c in zip(texts, ctx)]
        M = self.masked_.fit_transform(masked) if fit else self.masked_.transform(masked)
        parts = [X, M, sparse.csr_matrix(overlap_features(texts, ctx))]
        if self.params.embed > 0:
            parts.append(sparse.csr_matrix(self._embedding_features(texts, ctx)))
        return sparse.hstack(parts).tocsr()

    def _embedding_features(self, texts: list[str], ctx: list[str]) -> np.ndarray:
        from .knn import _static_embed
        from .schema import schema_shape

        def uniq_embed(xs):
            u, inv = np.unique(np.asarray(xs, dtype=object).astype(str), return_inverse=True)
            return _static_embed(u.tolist())[inv]

        q = uniq_embed([t.lower() for t in texts])
        sch = uniq_embed([" ".join(schema_shape(c)[2]) or "-" for c in ctx])
        cos = (q * sch).sum(1, keepdims=True)
        return np.hstack([self.params.embed * q, cos])

    def _evidence(self, cat: str, text: str, context: str) -> str:
        from .schema import overlap

        ov = overlap(text, context)
        return ",".join(ov.matched if cat == self.taxonomy.solvable_id else ov.missing)

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        if not len(items):
            return []
        texts = items["text"].astype(str).tolist()
        ctx = items["context"].fillna("").astype(str).tolist() if "context" in items else [""] * len(items)
        X = self._features(texts, ctx)
        proba = self.clf_.predict_proba(X)
        classes = self.clf_.classes_
        best = proba.argmax(1)
        cats = classes[best]
        reasons = np.empty(len(cats), dtype=object)
        for cid in set(cats):
            rows = np.flatnonzero(cats == cid)
            kind, model = self.reason_models_[cid]
            if kind == "multi":
                names, ovr, always = model
                p = ovr.predict_proba(X[rows])
                for r, pr in zip(rows, p):
                    chosen = [names[j] for j in np.flatnonzero(pr > self.params.reason_threshold)]
                    reasons[r] = ",".join(sorted(set(chosen or [names[int(pr.argmax())]]) | set(always)))
            else:
                reasons[rows] = model.predict(X[rows])
        out = []
        for iid, cat, rk, pr, b, t, c in zip(items["item_id"].astype(str), cats, reasons, proba, best, texts, ctx):
            top = float(pr[b])
            if not rk and self.use_context_:
                rk = self._evidence(str(cat), t, c)
            if top < self.params.min_proba:
                out.append(Verdict.abstain(iid, self.name, f"top probability {top:.2f} below {self.params.min_proba}",
                                           model=self.model))
            else:
                out.append(Verdict(item_id=iid, judge=self.name, category=str(cat), reason_key=str(rk),
                                   rationale=f"p({cat})={top:.2f}", model=self.model))
        return out
