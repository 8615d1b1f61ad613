"""Lever 1 where the decision is made: a decision head that consults the example store before it decides.

The skill model's decision head (:mod:`flywheel_lib.training.head`) decides whether to refuse and with which category;
the adapter only writes. Retrieved examples shown to the decoder cannot change that decision, so a scenario labelled
this cycle (an attribute the store lacks, a new vague word) would be answered wrong until the next fine-tune.
:class:`StoreConsultedHead` wraps a fitted head: for each request it retrieves the stored labelled examples nearest
to it (:class:`~flywheel_lib.levers.store.ExampleRetriever`) and, where the close ones (cosine at least
``min_score``) agree on a label by at least ``min_share`` of their similarity, that label is the decision. Elsewhere
the head decides as before. With ``overrule="refusals"`` the store can turn the head's answer into a refusal but
never withdraw a refusal the head made: a stored answerable neighbour shares the request's filters, not the reason
the head refused it (a reference to earlier context, a vague word), so its vote is weak evidence against a refusal,
while a stored refusal of the same attribute or word is the reason itself. ``"both"`` lets the store decide either
way, which also answers a capability change (a stored refusal relabelled answerable) before the next fine-tune.
This is retrieval-augmented classification in the spirit of "Generalization through
Memorization: Nearest Neighbor Language Models" (Khandelwal et al., 2020): the store changes decisions between
fine-tunes without retraining anything::

    head = StoreConsultedHead(gen.heads_["deployed_prev"], ExampleRetriever(store, k=5), min_score=0.85)
    with consult_store(gen, "deployed_prev", head):
        answers = gen.generate(texts, variant="deployed_prev")
    head.consulted_   # per request: the store's label where it decided, else None
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from .store import ExampleRetriever

__all__ = ["StoreConsultedHead", "consult_store", "store_decision"]


def store_decision(store_label: str | None, head_label: str, *, solvable_id: str, overrule: str) -> str | None:
    """The label the store decides with, given the head's own: ``store_label``, except None where the store has no
    label, or where ``overrule="refusals"`` and it would withdraw the head's refusal."""
    if store_label == solvable_id and overrule == "refusals" and head_label != solvable_id:
        return None
    return store_label


class StoreConsultedHead:
    """A fitted decision head plus the example store: the store's close neighbours decide where they agree.

    ``min_score``: the cosine similarity a stored example needs to count; ``min_share``: the share of the close
    examples' similarity their label needs (0.5 < ``min_share`` <= 1); ``min_votes``: how many close examples must
    agree; ``overrule``: ``"refusals"`` (the store's label decides only where it is a refusal: the head's refusals
    stand) or ``"both"`` (the store's label decides). The head's ``decide`` contract is kept: ``(labels, p_refuse, best)``.
    """

    def __init__(self, head, retriever: ExampleRetriever, *, min_score: float = 0.85, min_share: float = 0.75,
                 min_votes: int = 1, overrule: str = "refusals"):
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"StoreConsultedHead: min_score must be in (0, 1], got {min_score}")
        if not 0.5 < min_share <= 1.0:
            raise ValueError(f"StoreConsultedHead: min_share must be in (0.5, 1], got {min_share}")
        if min_votes < 1:
            raise ValueError(f"StoreConsultedHead: min_votes must be at least 1, got {min_votes}")
        if overrule not in ("both", "refusals"):
            raise ValueError(f"StoreConsultedHead: overrule must be 'both' or 'refusals', got {overrule!r}")
        self.overrule = overrule
        self.head = head
        self.retriever = retriever
        self.min_score, self.min_share, self.min_votes = float(min_score), float(min_share), int(min_votes)
        self.consulted_: list[str | None] = []
        """Per request of the last :meth:`decide`: the store's label where the store decided, else None (with
        ``overrule="refusals"``, None also where the store said answerable and the head refused)."""

    @property
    def solvable_id_(self) -> str:
        return self.head.solvable_id_

    def store_labels(self, texts: list[str]) -> list[str | None]:
        """The store's label for each text where its close neighbours agree (see the class doc), else None."""
        items = pd.DataFrame({"item_id": [f"__query_{i}" for i in range(len(texts))], "text": list(texts)})
        out: list[str | None] = []
        for ex in self.retriever.neighbours(items):
            close = ex[ex["score"] >= self.min_score]
            if len(close) < self.min_votes:
                out.append(None)
                continue
            weight = close.groupby("label")["score"].sum().sort_values(ascending=False)
            top, share = str(weight.index[0]), float(weight.iloc[0] / weight.sum())
            votes = int((close["label"] == top).sum())
            out.append(top if share >= self.min_share and votes >= self.min_votes else None)
        return out

    def decide(self, texts) -> tuple[list[str], np.ndarray, list[str]]:
        texts = [str(t) for t in texts]
        labels, p_refuse, best = self.head.decide(texts)
        labels, p_refuse, best = list(labels), np.array(p_refuse, dtype=float), list(best)
        self.consulted_ = [store_decision(lab, own, solvable_id=self.solvable_id_, overrule=self.overrule)
                           for lab, own in zip(self.store_labels(texts), labels)]
        for i, lab in enumerate(self.consulted_):
            if lab is None:
                continue
            labels[i] = lab
            if lab == self.solvable_id_:
                p_refuse[i] = 0.0
            else:
                best[i], p_refuse[i] = lab, 1.0
        return labels, p_refuse, best

    def summary(self) -> dict:
        n = sum(x is not None for x in self.consulted_)
        return {"min_score": self.min_score, "min_share": self.min_share, "min_votes": self.min_votes,
                "overrule": self.overrule, "store_rows": len(self.retriever.store), "decided_by_store": n,
                "requests": len(self.consulted_)}


@contextlib.contextmanager
def consult_store(gen, variant: str, head: StoreConsultedHead):
    """While inside, ``gen`` (a :class:`~flywheel_lib.evaluation.VariantGenerator`) decides ``variant``'s requests
    with ``head``; its own head comes back afterwards."""
    if variant not in gen.heads_:
        raise KeyError(f"variant {variant!r} has no decision head to consult the store with "
                       f"(heads: {', '.join(gen.heads_) or 'none'})")
    own = gen.heads_[variant]
    gen.heads_[variant] = head
    try:
        yield head
    finally:
        gen.heads_[variant] = own
