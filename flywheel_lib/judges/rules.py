"""Rules judge: keyword rules read from the taxonomy and the domain's schema catalog.

Four refusal rules and one solvable rule, each giving a catalog key as the reason:

* ``skill``   — a phrase from ``other_skills`` (e.g. "total sales" -> analytics): wrong skill;
* ``unknown`` — a phrase from ``unknown_attributes`` ("doctors" -> occupation): missing capability;
* ``context`` — a deictic reference ("that product", "the campaign we discussed", "it"): needs context, the
  referent noun as reason;
* ``vague``   — a vague word ("best", "active", "recent") and no number: ambiguous, the vague phrase as reason;
* ``solvable`` — attribute names and synonyms (or the columns of the item's own schema in ``context``):
  solvable, the sorted attributes as reason.

No rule matching is an abstention. :meth:`fit` calibrates on the few-shot pool: it learns the pool's reason
phrases for the vague and deictic rules and picks the order of the refusal rules that scores best on the pool.
"""

from __future__ import annotations

import itertools
import json
import re

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..records import Verdict
from .base import OfflineJudge
from .prompt import canonical_reason, catalog_of

__all__ = ["RulesJudge"]

VAGUE = ["good", "best", "top", "active", "inactive", "recent", "recently", "big", "loyal", "engaged", "valuable",
         "vip", "important", "frequent", "regular", "high value", "high-value", "lots", "a lot", "kind of", "sort of",
         "lately", "cheap", "favorite", "favourite", "biggest", "worst", "lapsed", "churned", "dormant"]
DEICTIC_NOUNS = ["product", "campaign", "collection", "list", "email", "segment", "threshold", "discount", "order",
                 "sale", "event", "promotion", "promo", "item", "category", "store", "date", "period", "tag", "value"]
DEICTIC_PHRASES = ["we discussed", "we talked about", "i mentioned", "you mentioned", "from before", "from earlier",
                   "last time", "the usual", "as before", "same as before", "above", "we sent", "i sent"]
PRONOUNS = ["it", "them", "those", "that one", "this one", "these"]


class RulesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: dict[str, str] = Field(default_factory=lambda: {
        "skill": "wrong_skill", "unknown": "missing_capability", "context": "needs_context", "vague": "ambiguous"})
    """Which taxonomy category each refusal rule gives (a rule whose category the taxonomy lacks is off)."""
    vague_words: list[str] = Field(default_factory=lambda: list(VAGUE))
    """Words that make a filter ambiguous when no number pins it."""
    calibrate_order: bool = True
    """Pick the order of the refusal rules that scores best on the few-shot pool."""


def _alternation(phrases) -> re.Pattern:
    ps = sorted({p.lower() for p in phrases if p}, key=len, reverse=True)
    if not ps:
        return re.compile(r"(?!x)x")
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in ps) + r")\b")


class RulesJudge(OfflineJudge):
    Params = RulesParams

    def __init__(self, config, *, taxonomy, domain=None):
        super().__init__(config, taxonomy=taxonomy, domain=domain)
        cat = catalog_of(domain, taxonomy)
        self.catalog = cat
        ids = set(taxonomy.ids)
        self.rule_cats = {r: c for r, c in self.params.categories.items() if c in ids}
        self._skill = {p.lower(): s for s, ps in (cat.get("other_skills") or {}).items() for p in ps}
        self._unknown = {p.lower(): a for a, ps in (cat.get("unknown_attributes") or {}).items() for p in ps + [a]}
        self._attr = {}
        for section in ("attributes", "functions"):
            for a, spec in (cat.get(section) or {}).items():
                for p in [a, a.replace("_", " ")] + list((spec or {}).get("synonyms") or []):
                    self._attr[p.lower()] = a
        self._compile({}, {})

    def _compile(self, vague_phrases: dict, referents: dict) -> None:
        self.vague_map_ = {w.lower(): canonical_reason(w) for w in self.params.vague_words} | vague_phrases
        self.referents_ = {n: n for n in DEICTIC_NOUNS} | referents
        self.re_skill = _alternation(self._skill)
        self.re_unknown = _alternation(self._unknown)
        self.re_attr = _alternation(self._attr)
        self.re_vague = _alternation(self.vague_map_)
        nouns = "|".join(re.escape(n) for n in sorted(self.referents_, key=len, reverse=True))
        self.re_deictic = re.compile(rf"\b(?:that|this|those|these|the same)\s+(?:\w+\s+)?({nouns})s?\b")
        self.re_the_noun = re.compile(rf"\b(?:the|our|my)\s+(?:\w+\s+)?({nouns})s?\b")
        self.re_phrase = _alternation(DEICTIC_PHRASES)
        self.re_pronoun = re.compile(r"\b(" + "|".join(re.escape(p) for p in PRONOUNS) + r")\b(?!\s+(?:is|are|has|was)\b)")

    # --- matching ----------------------------------------------------------------------------------
    def _matches(self, text: str, context: str) -> dict[str, str]:
        t = text.lower()
        m: dict[str, str] = {}
        if x := self.re_skill.search(t):
            m["skill"] = self._skill[x.group(1)]
        if x := self.re_unknown.search(t):
            m["unknown"] = self._unknown[x.group(1)]
        if x := self.re_deictic.search(t):
            m["context"] = self.referents_.get(x.group(1), x.group(1))
        elif self.re_phrase.search(t):
            x = self.re_the_noun.search(t)
            m["context"] = self.referents_.get(x.group(1), x.group(1)) if x else self.default_referent_
        elif self.re_pronoun.search(t):
            m["context"] = self.default_referent_
        if (x := self.re_vague.search(t)) and not re.search(r"\d", t):
            m["vague"] = self.vague_map_[x.group(1)]
        attrs = self._schema_attrs(t, context) if context else {self._attr[a] for a in self.re_attr.findall(t)}
        if attrs:
            m["solvable"] = ",".join(sorted(attrs))
        return m

    @staticmethod
    def _schema_attrs(t: str, context: str) -> set[str]:
        try:
            schema = json.loads(context)
        except (json.JSONDecodeError, TypeError):
            return set()
        names: set[str] = set()

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k in ("name", "column", "column_name") and isinstance(v, str):
                        names.add(v)
                    elif isinstance(v, (dict, list)):
                        names.add(k) if isinstance(v, dict) else None
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    names.add(v) if isinstance(v, str) else walk(v)

        walk(schema)
        return {n for n in names if n and re.search(r"\b" + re.escape(n.lower().replace("_", " ")) + r"\b",
                                                     t.replace("_", " "))}

    def _decide(self, m: dict[str, str], order) -> tuple[str | None, str, str]:
        for rule in order:
            if rule in m and rule in self.rule_cats:
                return self.rule_cats[rule], m[rule], rule
        if "solvable" in m:
            return self.taxonomy.solvable_id, m["solvable"], "solvable"
        return None, "", ""

    # --- estimator ---------------------------------------------------------------------------------
    def fit(self, fewshot: pd.DataFrame) -> "RulesJudge":
        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        vague_cat, ctx_cat = self.rule_cats.get("vague"), self.rule_cats.get("context")
        rk = pool["reason_key"].fillna("").astype(str)
        vague = {k.replace("_", " "): k for k in rk[pool["label"] == vague_cat] if k} if vague_cat else {}
        ctx_keys = rk[pool["label"] == ctx_cat] if ctx_cat else pd.Series([], dtype=str)
        referents = {k.replace("_", " "): k for k in ctx_keys if k}
        self.default_referent_ = ctx_keys.mode().iloc[0] if len(ctx_keys) else "referent"
        self._compile(vague, referents)
        rules = [r for r in ("skill", "unknown", "context", "vague") if r in self.rule_cats]
        self.order_ = tuple(rules)
        if self.params.calibrate_order and len(pool):
            ctx = pool["context"].fillna("").astype(str) if "context" in pool else [""] * len(pool)
            ms = [self._matches(t, c) for t, c in zip(pool["text"].astype(str), ctx)]
            gold = pool["label"].tolist()
            best = -1
            for order in itertools.permutations(rules):
                score = sum(self._decide(m, order)[0] == g for m, g in zip(ms, gold))
                if score > best:
                    best, self.order_ = score, order
            self.pool_accuracy_ = best / len(pool)
        self._set_state(self.order_, sorted(vague.items()), sorted(referents.items()), self.default_referent_)
        return self

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        out = []
        ctx = items["context"].fillna("").astype(str) if "context" in items else [""] * len(items)
        for iid, text, c in zip(items["item_id"].astype(str), items["text"].astype(str), ctx):
            m = self._matches(text, c)
            cat, rk, rule = self._decide(m, self.order_)
            if cat is None:
                out.append(Verdict.abstain(iid, self.name, "no rule matched", model=self.model))
            else:
                out.append(Verdict(item_id=iid, judge=self.name, category=cat, reason_key=rk,
                                   rationale=f"rule {rule}: {rk}", model=self.model))
        return out
