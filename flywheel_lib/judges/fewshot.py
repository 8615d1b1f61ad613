"""Few-shot examples for LLM judges, drawn from the seed's few-shot pool.

``stratified`` draws ``per_category`` examples of every category once (the same examples for every item, so
the prompt prefix is shared and cacheable); ``nearest`` takes the ``k`` pool items closest to the item in
sentence-embedding space (one embedding per item, computed when the prompt is rendered).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import FewShot

__all__ = ["FewShotPicker"]


class FewShotPicker:
    def __init__(self, config: FewShot, taxonomy):
        self.config = config
        self.taxonomy = taxonomy

    def fit(self, pool: pd.DataFrame) -> FewShotPicker:
        cols = ["text", "label", "reason_key"]
        missing = [c for c in cols if c not in pool.columns]
        if missing:
            raise ValueError(f"few-shot pool lacks columns: {', '.join(missing)}")
        pool = pool.loc[pool["label"].notna(), cols].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where="few-shot pool")
        self.pool_ = pool
        strat = self.config
        if strat.strategy == "stratified":
            rng = np.random.default_rng(strat.seed)
            rows = []
            for cid in self.taxonomy.ids:
                idx = np.flatnonzero(pool["label"].to_numpy() == cid)
                if len(idx):
                    rows.extend(rng.choice(idx, size=min(strat.per_category, len(idx)), replace=False).tolist())
            # interleave categories so no label sits last by construction
            rng.shuffle(rows)
            self.fixed_ = pool.iloc[rows].to_dict("records")
        elif strat.strategy == "nearest":
            from ..embeddings import embed

            self.vectors_ = embed(pool["text"].tolist())
        return self

    def pick(self, item: dict) -> list[dict]:
        return self.pick_many([item])[0]

    def pick_many(self, items: list[dict]) -> list[list[dict]]:
        """Examples for each item (one embedding batch for the nearest strategy)."""
        s = self.config.strategy
        if s == "none" or len(self.pool_) == 0:
            return [[] for _ in items]
        if s == "stratified":
            return [self.fixed_ for _ in items]
        from ..embeddings import embed

        vecs = embed([str(it["text"]) for it in items])
        records = self.pool_.to_dict("records")
        texts = self.pool_["text"].tolist()
        out = []
        for it, v in zip(items, vecs):
            order = np.argsort(-(self.vectors_ @ v))
            near = [i for i in order[: self.config.k + 1] if texts[i] != it["text"]][: self.config.k]
            out.append([records[i] for i in reversed(near)])  # closest last, next to the item
        return out
