"""The rules judge's settings (:class:`RulesParams`), vocabulary and text helpers: the English words that mark a vague request or a reference
to earlier context (the defaults; the taxonomy's own phrases and the few-shot pool add to them), and a speller
that reads a word one edit away from a known word as that word."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RulesParams", "VAGUE", "DEICTIC_NOUNS", "DEICTIC_PHRASES", "PRONOUNS", "Speller", "ngrams", "alternation"]

VAGUE = ["good", "best", "top", "active", "inactive", "recent", "recently", "big", "loyal", "engaged", "valuable",
         "vip", "important", "frequent", "regular", "high value", "high-value", "lots", "a lot", "kind of", "sort of",
         "lately", "cheap", "favorite", "favourite", "biggest", "worst", "lapsed", "churned", "dormant"]
DEICTIC_NOUNS = ["product", "campaign", "collection", "list", "email", "segment", "threshold", "discount", "order",
                 "sale", "event", "promotion", "promo", "item", "category", "store", "date", "period", "tag", "value"]
DEICTIC_PHRASES = ["we discussed", "we talked about", "i mentioned", "you mentioned", "from before", "from earlier",
                   "last time", "the usual", "as before", "same as before", "above", "we sent", "i sent"]
PRONOUNS = ["it", "them", "those", "that one", "this one", "these"]


def ngrams(words: list[str], n_max: int) -> set[str]:
    return {" ".join(words[i:i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1)}


def deletes(w: str) -> set[str]:
    return {w[:i] + w[i + 1:] for i in range(len(w))}


class Speller:
    """Map a word one edit from a known word to it (symmetric deletes); known and short words stay as they are."""

    def __init__(self, vocab):
        self.vocab = set(vocab)
        self.index: dict[str, str] = {}
        for w in sorted(self.vocab):
            if len(w) >= 4:
                for d in deletes(w):
                    self.index.setdefault(d, w)
        self.cache: dict[str, str] = {}

    def __call__(self, w: str) -> str:
        if w in self.vocab or len(w) < 4 or not w.isalpha():
            return w
        if w not in self.cache:
            fix = self.index.get(w)  # a letter missing
            for d in sorted(deletes(w)) if fix is None else ():
                fix = d if d in self.vocab and len(d) >= 4 else self.index.get(d)  # an extra letter; a swap or typo
                if fix:
                    break
            self.cache[w] = fix or w
        return self.cache[w]


def alternation(phrases) -> re.Pattern:
    ps = sorted({p.lower() for p in phrases if p}, key=len, reverse=True)
    if not ps:
        return re.compile(r"(?!x)x")
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in ps) + r")\b")


class RulesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: dict[str, str] = Field(default_factory=lambda: {
        "skill": "wrong_skill", "unknown": "missing_capability", "context": "needs_context", "vague": "ambiguous"})
    """Which taxonomy category each refusal rule gives (a rule whose category the taxonomy lacks is off)."""
    vague_words: list[str] = Field(default_factory=lambda: list(VAGUE))
    """Words that make a filter ambiguous when no number pins it."""
    calibrate_order: bool = True
    """Pick the order of the refusal rules that scores best on the few-shot pool."""
    induce_phrases: bool = True
    """Learn phrase rules and vetoes for attributes from the few-shot pool's solvable items."""
    min_support: int = 3
    """Pool items a learned phrase rule or veto needs."""
    min_precision: float = 0.85
    """A learned phrase rule: share of pool items with the phrase whose gold reason has the attribute."""
    max_veto_precision: float = 0.1
    """A veto: at most this share of the pool items with the phrase and the catalog match have the attribute."""
    max_ngram: int = 3
    """Longest learned phrase, in words."""
    fix_typos: bool = True
    """Read a word one edit (insert, delete, substitute, swap) from a rule word as that word."""
    schema_rules: bool = True
    """Learn the ``schema`` rule from pool items that carry a per-item schema in ``context``."""
    min_bucket_precision: float = 0.4
    """The ``schema`` rule: share of a bucket's pool items that must carry its category."""
    category_phrases: bool = True
    """Learn ``phrase -> category`` rules for the refusal and clarify categories from the pool (rule ``phrase``)."""
    min_category_precision: float = 0.85
    """A learned ``phrase -> category`` rule: share of the pool items with the phrase that carry the category."""
    min_rule_precision: float = 0.5
    """Veto a catalog rule's match (rule and reason, e.g. vague "vip") that at least ``min_support`` pool items
    show to be right less often than this."""
    attr_precision_on_solvable: bool = True
    """Learned attribute rules: measure a phrase's precision on the pool's solvable items only (the rule is read
    only once no refusal rule matched) and require that most pool items with the phrase are solvable."""
