"""Dawid-Skene: EM over one confusion matrix per judge.

A. P. Dawid and A. M. Skene (1979), "Maximum likelihood estimation of observer error-rates using the EM
algorithm", *Journal of the Royal Statistical Society, Series C (Applied Statistics)* 28(1):20-28.

Each judge ``j`` has a confusion matrix ``pi_j[k, l] = P(judge says l | true class k)``; the classes have a
prior ``p``. The E-step gives each item a posterior over classes from the judges' votes, the M-step re-estimates
``p`` and every ``pi_j`` from those posteriors. Abstentions and missing verdicts are simply not observed. EM starts
from the soft majority vote, or, with ``init_confusion``, from the confusion matrices each judge showed in
calibration against the seed's human labels (a stronger start when the judges have few items in common).

An item is accepted when its largest posterior reaches ``min_posterior``; below it the status is
``disagreement``; an item nobody voted on is ``abstained``.

Why not crowd-kit's ``DawidSkene``: on the same votes the two give the same labels (``benchmarks/bench_dawid_skene.py``;
figures in the method note on judges), but this one starts from calibration confusions, keeps taxonomy classes
nobody voted for, and needs nothing beyond numpy and pandas in the core install.

>>> import pandas as pd
>>> rows = [("a", "j1", "x"), ("a", "j2", "x"), ("a", "j3", "y"), ("b", "j1", "y"), ("b", "j2", "y"),
...         ("b", "j3", "y")]
>>> v = pd.DataFrame(rows, columns=["item_id", "judge", "category"])
>>> for c in ("reason_key", "rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd",
...           "latency_s", "cached", "error"): v[c] = None
>>> DawidSkene().fit(v).labels_.tolist()
['x', 'y']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .base import ConsensusStrategy, count_votes, top_reason

__all__ = ["DawidSkene"]


class DawidSkene(ConsensusStrategy):
    """Dawid & Skene (1979) EM aggregation.

    Parameters
    ----------
    n_iter, tol
        EM iterations at most, and the change in log-likelihood per item below which it stops.
    smoothing
        Pseudo-count added to every confusion cell (keeps unseen confusions possible).
    min_posterior
        Largest posterior needed for ``accepted`` (0 accepts every item with a vote).
    init_confusion
        ``{judge: confusion}``, a ``gold x predicted`` count table (DataFrame with class labels, or a square array
        in class order) from calibration; judges not in it start from the majority vote.
    judges, labels
        The panel (default: every judge in the verdicts) and the class list (default: observed).

    Fitted: ``probas_`` (items x classes), ``confusions_`` ({judge: DataFrame}), ``priors_``, ``n_iter_``,
    ``log_likelihood_``.
    """

    name = "dawid_skene"

    def __init__(
        self,
        *,
        n_iter: int = 100,
        tol: float = 1e-6,
        smoothing: float = 0.01,
        min_posterior: float = 0.0,
        init_confusion: Mapping | None = None,
        judges: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
    ):
        super().__init__(judges=judges, labels=labels)
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.min_posterior = min_posterior
        self.init_confusion = init_confusion

    def _init_pi(self, judge: str, classes: list[str]) -> np.ndarray | None:
        if not self.init_confusion or judge not in self.init_confusion:
            return None
        m = self.init_confusion[judge]
        if isinstance(m, pd.DataFrame):
            m = m.reindex(index=classes, columns=classes).fillna(0.0).to_numpy(dtype=float)
        elif isinstance(m, Mapping):
            m = pd.DataFrame(m).T.reindex(index=classes, columns=classes).fillna(0.0).to_numpy(dtype=float)
        m = np.asarray(m, dtype=float)
        if m.shape != (len(classes), len(classes)):
            raise ValueError(f"dawid_skene: init confusion for {judge!r} has shape {m.shape}, expected "
                             f"{(len(classes), len(classes))} for classes {classes}")
        m = m + self.smoothing + 1.0
        return m / m.sum(axis=1, keepdims=True)

    def _decide(self, codes, reasons, classes):
        n, n_j = codes.shape
        k = len(classes)
        judges = list(self.votes_.columns)
        onehot = [np.zeros((n, k)) for _ in range(n_j)]
        for j in range(n_j):
            seen = codes[:, j] >= 0
            onehot[j][np.nonzero(seen)[0], codes[seen, j]] = 1.0
        counts = count_votes(codes, k).astype(float)
        has = counts.sum(axis=1) > 0
        pis = [self._init_pi(jn, classes) for jn in judges]
        if any(p is not None for p in pis):
            # one E-step from the calibration confusions (majority for judges without one)
            t = np.where(has[:, None], counts / np.maximum(counts.sum(1, keepdims=True), 1), 1.0 / k)
            priors, mpis = self._m_step(t, onehot)
            pis = [p if p is not None else q for p, q in zip(pis, mpis)]
            t, _ = self._e_step(np.full(k, 1.0 / k), pis, onehot, n)
        else:
            t = np.where(has[:, None], counts / np.maximum(counts.sum(1, keepdims=True), 1), 1.0 / k)
        ll_old = -np.inf
        it = 0
        for it in range(1, self.n_iter + 1):  # noqa: B007 - read after the loop: the iterations it took
            priors, pis = self._m_step(t, onehot)
            t, ll = self._e_step(priors, pis, onehot, n)
            if abs(ll - ll_old) / max(n, 1) < self.tol:
                break
            ll_old = ll
        self.n_iter_ = it
        self.log_likelihood_ = float(ll_old if np.isfinite(ll_old) else 0.0)
        self.priors_ = pd.Series(priors, index=classes, name="prior")
        self.confusions_ = {jn: pd.DataFrame(p, index=classes, columns=classes) for jn, p in zip(judges, pis)}
        self.probas_ = pd.DataFrame(t, index=self.votes_.index, columns=classes)
        top = t.argmax(axis=1)
        conf = t.max(axis=1)
        agree = codes == top[:, None]
        rk = top_reason(reasons, agree)
        labels: list[str | None]
        rkeys: list[str | None]
        labels, status, rkeys, detail = [], [], [], []
        for i in range(n):
            if not has[i]:
                labels.append(None), status.append("abstained"), rkeys.append(None), detail.append("no_votes")
            elif conf[i] >= self.min_posterior:
                labels.append(classes[top[i]]), status.append("accepted"), rkeys.append(rk[i])
                detail.append("posterior")
            else:
                labels.append(None), status.append("disagreement"), rkeys.append(None), detail.append("low_posterior")
        return labels, status, rkeys, detail, np.where(has, conf, 0.0)

    def _m_step(self, t, onehot):
        priors = (t.sum(axis=0) + self.smoothing) / (t.sum() + self.smoothing * t.shape[1])
        pis = []
        for o in onehot:
            m = t.T @ o + self.smoothing
            pis.append(m / m.sum(axis=1, keepdims=True))
        return priors, pis

    def _e_step(self, priors, pis, onehot, n):
        logt = np.tile(np.log(priors), (n, 1))
        for p, o in zip(pis, onehot):
            logt += o @ np.log(p).T
        mx = logt.max(axis=1, keepdims=True)
        t = np.exp(logt - mx)
        z = t.sum(axis=1, keepdims=True)
        ll = float((np.log(z) + mx).sum())
        return t / z, ll
