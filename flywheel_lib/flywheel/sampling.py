"""Spend a cycle's judge budget where the failures are.

The promoted model's traffic is too large to judge whole. :func:`budget_sample` takes every request that carries
a failure signal first (a retry or a "no, I meant..." correction, up to ``signal_share`` of the budget), then the
most novel requests against the corpus the model learnt from (a ``novelty`` column, :func:`novelty_against`; up to
``novelty_share`` of the budget), then fills the rest stratified by the model's predicted category and by
workload, so rare categories (the refusals the model is still learning) are not drowned by the common solvable
traffic.

>>> import pandas as pd
>>> df = pd.DataFrame({"item_id": list("abcdef"), "predicted_category": ["solvable"] * 4 + ["wrong_skill"] * 2,
...                    "workload_id": "seg", "signal_retry": [True, False, False, False, False, False],
...                    "signal_correction": False})
>>> budget_sample(df, 3, seed=0).sort_values("item_id")[["item_id", "sample_reason"]].values.tolist()[0]
['a', 'signal']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["budget_sample", "novelty_against"]


def budget_sample(
    df: pd.DataFrame,
    budget: int,
    *,
    seed: int = 0,
    signal_cols: tuple[str, ...] = ("signal_retry", "signal_correction"),
    strata: tuple[str, ...] = ("predicted_category", "workload_id"),
    signal_share: float = 0.5,
    novelty_share: float = 0.25,
) -> pd.DataFrame:
    """Pick at most ``budget`` rows: failure signals first, then the most novel rows (where a ``novelty`` column
    is given), then equal shares per stratum.

    Returns the chosen rows with a ``sample_reason`` column (``signal``, ``novelty`` or ``stratum:<key>``).
    """
    if budget <= 0 or df.empty:
        return df.iloc[0:0].assign(sample_reason=pd.Series(dtype=object))
    if budget >= len(df):
        return df.assign(sample_reason="all")
    rng = np.random.default_rng(seed)
    sig_cols = [c for c in signal_cols if c in df.columns]
    flagged = df[sig_cols].fillna(False).astype(bool).any(axis=1) if sig_cols else pd.Series(False, index=df.index)
    n_sig = min(int(flagged.sum()), int(round(budget * signal_share)))
    sig_idx = rng.permutation(np.array(df.index[flagged]))[:n_sig]
    chosen = [pd.Series("signal", index=sig_idx)]
    rest = df.drop(index=sig_idx)
    left = budget - n_sig
    if "novelty" in rest.columns and novelty_share > 0 and left > 0:
        n_new = min(left, int(round(budget * novelty_share)))
        nov = rest["novelty"].astype(float).sort_values(ascending=False, kind="stable").head(n_new).index
        chosen.append(pd.Series("novelty", index=nov))
        rest, left = rest.drop(index=nov), left - len(nov)
    keys = [c for c in strata if c in rest.columns]
    if left > 0 and not rest.empty:
        if keys:
            groups = {k: g.index.to_numpy() for k, g in rest.groupby(keys, dropna=False, sort=True)}
        else:
            groups = {"all": rest.index.to_numpy()}
        pools = {k: list(rng.permutation(np.array(v))) for k, v in groups.items()}
        picked: dict = {k: [] for k in pools}
        # round-robin over strata: equal shares, a small stratum gives its unused share to the others
        while left > 0 and any(pools.values()):
            for k in list(pools):
                if left == 0:
                    break
                if pools[k]:
                    picked[k].append(pools[k].pop())
                    left -= 1
        for k, idx in picked.items():
            if idx:
                label = k if not isinstance(k, tuple) else "/".join(str(x) for x in k)
                chosen.append(pd.Series(f"stratum:{label}", index=idx))
    reason = pd.concat(chosen)
    return df.loc[reason.index].assign(sample_reason=reason.values)


def novelty_against(texts: pd.Series, corpus: pd.Series) -> pd.Series:
    """How new each of ``texts`` is to ``corpus``: 1 minus the cosine of its nearest corpus text in TF-IDF space
    (word 1-2 grams and character 3-5 grams, fitted on both); 1.0 everywhere for an empty corpus."""
    if corpus.empty or texts.empty:
        return pd.Series(1.0, index=texts.index)
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    both = pd.concat([texts, corpus], ignore_index=True).astype(str)
    mats = [TfidfVectorizer(analyzer=a, ngram_range=r, sublinear_tf=True, min_df=1).fit_transform(both)
            for a, r in (("word", (1, 2)), ("char_wb", (3, 5)))]
    x = normalize(hstack(mats).tocsr())
    q, c = x[: len(texts)], x[len(texts):]
    best = np.zeros(len(texts))
    for start in range(0, len(texts), 2048):  # blocks bound the dense product's memory
        best[start:start + 2048] = (q[start:start + 2048] @ c.T).max(axis=1).toarray().ravel()
    return pd.Series(1.0 - np.clip(best, 0.0, 1.0), index=texts.index)
