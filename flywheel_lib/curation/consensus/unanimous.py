"""Unanimous consensus on the decision AND the reasoning: the gate of the seed document.

An item is accepted only when every judge of the panel gave a category, all categories are the same, and the
reasoning is consistent: the same normalised ``reason_key`` (see
:func:`~flywheel_lib.curation._votes.normalize_reason_key`), or, when ``rationale_similarity > 0``, free-text
rationales whose sentence embeddings are pairwise at least that cosine-similar. Abstentions, a missing verdict and
any split are never arbitrated into a label: the item is marked (``abstained`` / ``disagreement``) and goes on
to people.

What "consistent reasoning" means is the ``reasoning`` check, chosen to fit what the seed can support:

* ``reason_key`` (default): the same normalised reason key (the seed carries canonical keys);
* ``evidence``: each judge's reason key read as the set of evidence it cites (comma-separated terms: the schema
  column it matched, the term the schema lacks); the judges that cite evidence must pairwise share a term, a
  judge citing none makes no claim (for seeds without reason keys, e.g. TriageSQL);
* ``rationale``: free-text rationales pairwise at least ``rationale_similarity`` cosine-similar (default 0.8);
* ``none``: the category alone (what ``k_of_n`` with k = all judges does; listed to compare against).

>>> import pandas as pd
>>> v = pd.DataFrame({"item_id": ["a", "a", "b", "b"], "judge": ["j1", "j2", "j1", "j2"],
...     "category": ["wrong_skill", "wrong_skill", "solvable", "ambiguous"],
...     "reason_key": ["Analytics", " analytics", "amount_spent", "best"]})
>>> for c in ("rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd", "latency_s",
...           "cached", "error"): v[c] = None
>>> u = Unanimous().fit(v)
>>> u.labels_.tolist(), u.status_.tolist(), u.reason_keys_.tolist()
(['wrong_skill', None], ['accepted', 'disagreement'], ['analytics', None])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .base import ConsensusStrategy

__all__ = ["Unanimous", "REASONING_CHECKS"]

REASONING_CHECKS = ("reason_key", "evidence", "rationale", "none")


def _evidence_agrees(row) -> bool:
    """The judges citing evidence (a non-empty comma list) pairwise share a term; fewer than two: nothing to refute."""
    sets = [set(x.split(",")) for x in row if x is not None]
    return all(a & b for i, a in enumerate(sets) for b in sets[i + 1:])


class Unanimous(ConsensusStrategy):
    """Every judge, the same category, consistent reasoning.

    Parameters
    ----------
    rationale_similarity
        ``0`` requires the same normalised reason key; a value in (0, 1] also accepts items whose reason keys
        differ but whose rationales are pairwise at least this cosine-similar (sentence embeddings).
    require_reason
        When True, an item where every judge left the reason key empty is not accepted (``missing_reason``).
    embedder
        ``texts -> (n, d)`` unit vectors; default :func:`flywheel_lib.embeddings.embed`.
    judges, labels
        The panel (default: every judge in the verdicts) and the class list (default: observed).
    """

    name = "unanimous"

    def __init__(
        self,
        *,
        rationale_similarity: float = 0.0,
        reasoning: str = "reason_key",
        require_reason: bool = False,
        embedder: Callable | None = None,
        judges: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
    ):
        super().__init__(judges=judges, labels=labels)
        if reasoning not in REASONING_CHECKS:
            raise ValueError(f"unknown reasoning check {reasoning!r}; known: {', '.join(REASONING_CHECKS)}")
        self.reasoning = reasoning
        self.rationale_similarity = rationale_similarity
        self.require_reason = require_reason
        self.embedder = embedder

    def _decide(self, codes, reasons, classes):
        n, n_j = codes.shape
        missing = (codes < 0).any(axis=1)
        same_cat = (codes == codes[:, :1]).all(axis=1) & ~missing
        first = reasons[:, :1] if n_j else reasons
        same_reason = np.array([all(x == r[0] for x in r) for r in reasons], dtype=bool) if n_j else np.ones(n, bool)
        no_reason = np.array([all(x is None for x in r) for r in reasons], dtype=bool) if n_j else np.ones(n, bool)
        if self.reasoning == "evidence":
            same_reason = np.array([_evidence_agrees(r) for r in reasons], dtype=bool)
        elif self.reasoning == "none":
            same_reason = np.ones(n, bool)
        elif self.reasoning == "rationale":
            same_reason = np.zeros(n, bool)
        if self.require_reason:
            same_reason &= ~no_reason
        rationale_ok = np.zeros(n, dtype=bool)
        threshold = self.rationale_similarity or (0.8 if self.reasoning == "rationale" else 0.0)
        if threshold > 0 and self.reasoning in ("reason_key", "rationale"):
            todo = np.nonzero(same_cat & ~same_reason)[0]
            if len(todo):
                rationale_ok[todo] = self._rationales_agree(todo, threshold)
        accepted = same_cat & (same_reason | rationale_ok)
        labels: list[str | None]
        rkeys: list[str | None]
        labels, status, rkeys, detail = [], [], [], []
        for i in range(n):
            if n_j == 0 or (codes[i] < 0).all():
                labels.append(None), status.append("abstained"), rkeys.append(None), detail.append("no_votes")
            elif missing[i]:
                labels.append(None), status.append("abstained"), rkeys.append(None), detail.append("abstention")
            elif not same_cat[i]:
                labels.append(None), status.append("disagreement"), rkeys.append(None), detail.append("category_split")
            elif not accepted[i]:
                why = "missing_reason" if (self.require_reason and no_reason[i]) else "reason_mismatch"
                labels.append(None), status.append("disagreement"), rkeys.append(None), detail.append(why)
            else:
                labels.append(classes[codes[i, 0]]), status.append("accepted")
                if same_reason[i] and self.reasoning == "reason_key":
                    rkeys.append(first[i, 0]), detail.append("unanimous")
                elif same_reason[i]:
                    keys = sorted(x for x in reasons[i] if x is not None)
                    rkeys.append(max(keys, key=keys.count) if keys else None)
                    detail.append("unanimous" if self.reasoning == "none" else f"{self.reasoning}_agrees")
                else:
                    keys = sorted(x for x in reasons[i] if x is not None)
                    rkeys.append(max(keys, key=keys.count) if keys else None), detail.append("rationale_similar")
        support = np.where(accepted, 1.0, 0.0)
        return labels, status, rkeys, detail, support

    def _rationales_agree(self, rows: np.ndarray, threshold: float) -> np.ndarray:
        """Pairwise minimum cosine of the judges' rationales for ``rows`` (positions in ``votes_``)."""
        if self.embedder is None:
            from ...embeddings import embed as embedder
        else:
            embedder = self.embedder
        ids = self.votes_.index[rows]
        judges = list(self.votes_.columns)
        rat = self._verdicts.set_index(["item_id", "judge"])["rationale"]
        texts = [[str(rat.get((i, j), "") or "") for j in judges] for i in ids]
        flat = [t for row in texts for t in row]
        uniq = sorted(set(flat))
        vec = np.asarray(embedder(uniq), dtype=np.float32)
        pos = {t: k for k, t in enumerate(uniq)}
        out = np.zeros(len(rows), dtype=bool)
        for r, row in enumerate(texts):
            if any(not t.strip() for t in row):
                continue
            m = vec[[pos[t] for t in row]]
            sims = m @ m.T
            out[r] = float(sims.min()) >= threshold
        return out
