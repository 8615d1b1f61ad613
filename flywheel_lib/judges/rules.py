"""Rules judge: keyword rules read from the taxonomy and the domain's schema catalog.

Four refusal rules and one solvable rule, each giving a catalog key as the reason:

* ``skill``   — a phrase from ``other_skills`` (e.g. "total sales" -> analytics): wrong skill;
* ``unknown`` — a phrase from ``unknown_attributes`` ("doctors" -> occupation): missing capability;
* ``context`` — a deictic reference ("that product", "the campaign we discussed", "it"): needs context, the
  referent noun as reason;
* ``vague``   — a vague word ("best", "active", "recent") not followed within three words by a number (as in
  "top 10", "spent over 100"): ambiguous, the vague phrase as reason;
* ``solvable`` — attribute names, synonyms and example values from the catalog (or the columns of the item's
  own schema in ``context``): solvable, the sorted attributes as reason.

Per-item schemas (a JSON ``{table: [columns]}`` in ``context``, as in TriageSQL) add a sixth, learned rule,
``schema``: each item falls in a bucket of evidence read against its own schema (the share of the question's
content words that name a table or column, whether the input is a question or a command at all, whether it
speaks in the first or second person). :meth:`fit` gives a bucket the category most pool items in it carry when
at least ``min_support`` items fall in it and that category holds at least ``min_bucket_precision`` of them; the
reason cites the evidence (the matched schema words for the solvable category, the words the schema lacks
otherwise). An item in no such bucket and matching no other rule is an abstention: no evidence.

Words one edit away from a rule word ("cerdit", "odrer") are read as that word. No rule matching is an abstention.
:meth:`fit` calibrates on the few-shot pool: it learns the pool's reason phrases for the vague and deictic rules,
picks the order of the refusal rules that scores best on the pool, and induces phrase rules for attributes (rule
induction, not a statistical model): a word n-gram becomes a rule ``phrase -> attribute`` when it occurs in at
least ``min_support`` pool items and the attribute is in the gold reason of at least ``min_precision`` of all pool
items containing it; a veto ``phrase -/-> attribute`` drops a catalog match that the pool shows to be wrong
(at most ``max_veto_precision`` of the items where the phrase and the catalog match co-occur have the attribute).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import NamedTuple

import pandas as pd

from ..records import Verdict
from .base import OfflineJudge
from .prompt import canonical_reason, catalog_of
from .rule_words import DEICTIC_NOUNS, DEICTIC_PHRASES, PRONOUNS, RulesParams, Speller, alternation, ngrams

__all__ = ["RulesJudge"]

_WORD = re.compile(r"[a-z0-9']+")



class PhraseRule(NamedTuple):
    """A learned ``phrase -> category`` rule and the evidence for it in the fit pool."""

    category: str
    reason: str
    precision: float
    """Share of the pool's rows holding the phrase that carry ``category``."""
    support: int
    """Rows of the pool holding the phrase with ``category``."""
    length: int
    """Words in the phrase."""

    @property
    def rank(self) -> tuple[float, int, int]:
        """The better of two rules for one request: higher precision, then support, then the longer phrase."""
        return (self.precision, self.support, self.length)

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
                spec = spec or {}
                vals = spec.get("values") if spec.get("type") in ("list", "string", None) else None
                vals = [v for vs in vals.values() for v in vs] if isinstance(vals, dict) else list(vals or [])
                for v in vals:  # example values ("Chicago", "gmail.com", "boots") name their attribute
                    if isinstance(v, str) and len(v) >= 4:
                        self._attr.setdefault(v.lower(), a)
                for p in [a, a.replace("_", " ")] + list(spec.get("synonyms") or []):
                    self._attr[p.lower()] = a
        self.phrase_rules_: dict[str, frozenset] = {}
        self.vetoes_: dict[str, frozenset] = {}
        self.cat_rules_: dict[str, PhraseRule] = {}
        self.rule_vetoes_: set = set()
        self.buckets_: dict = {}
        self._speller(())
        self._compile({}, {})

    def _speller(self, pool_texts) -> None:
        words: dict[str, int] = {}
        for t in pool_texts:
            for w in set(_WORD.findall(t.lower())):
                words[w] = words.get(w, 0) + 1
        vocab = {w for w, c in words.items() if c >= 2}
        for p in [*self._skill, *self._unknown, *self._attr, *self.params.vague_words, *DEICTIC_NOUNS,
                  *DEICTIC_PHRASES]:
            vocab.update(_WORD.findall(p.lower()))
        self.spell_ = Speller(vocab) if self.params.fix_typos else None

    def _normal(self, text: str) -> str:
        t = text.lower()
        if self.spell_ is None:
            return t
        return _WORD.sub(lambda m: self.spell_(m.group(0)), t)

    def _solvable_attrs(self, t: str) -> set[str]:
        """Catalog matches (less vetoed ones) plus learned phrase rules, for a normalised text."""
        grams = ngrams(_WORD.findall(t), self.params.max_ngram) if (self.phrase_rules_ or self.vetoes_) else set()
        veto = set().union(*(self.vetoes_.get(g, ()) for g in grams)) if grams else set()
        attrs = {self._attr[p] for p in self.re_attr.findall(t)} - veto
        for g in grams:
            attrs |= self.phrase_rules_.get(g, frozenset())
        return attrs

    def _compile(self, vague_phrases: dict, referents: dict) -> None:
        self.vague_map_ = {w.lower(): canonical_reason(w) for w in self.params.vague_words} | vague_phrases
        self.referents_ = {n: n for n in DEICTIC_NOUNS} | referents
        self.re_skill = alternation(self._skill)
        self.re_unknown = alternation(self._unknown)
        self.re_attr = alternation(self._attr)
        self.re_vague = alternation(self.vague_map_)
        nouns = "|".join(re.escape(n) for n in sorted(self.referents_, key=len, reverse=True))
        self.re_deictic = re.compile(rf"\b(?:that|this|those|these|the same)\s+(?:\w+\s+)?({nouns})s?\b")
        self.re_the_noun = re.compile(rf"\b(?:the|our|my)\s+(?:\w+\s+)?({nouns})s?\b")
        self.re_phrase = alternation(DEICTIC_PHRASES)
        self.re_pronoun = re.compile(r"\b(" + "|".join(re.escape(p) for p in PRONOUNS) + r")\b(?!\s+(?:is|are|has|was)\b)")

    # --- matching ----------------------------------------------------------------------------------
    def _matches(self, text: str, context: str) -> dict[str, str]:
        t = self._normal(text)
        m: dict[str, str] = {}
        veto = self.rule_vetoes_
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
        for x in self.re_vague.finditer(t):  # a vague word not pinned by a number right after it
            if not re.match(r"\W*(?:\S+\W+){0,2}?\$?\d", t[x.end():]) and \
                    ("vague", self.vague_map_[x.group(1)]) not in veto:
                m["vague"] = self.vague_map_[x.group(1)]
                break
        for r in ("skill", "unknown", "context"):
            if r in m and (r, m[r]) in veto:
                del m[r]
        attrs = self._schema_attrs(t, context) if context else self._solvable_attrs(t)
        if attrs:
            m["solvable"] = ",".join(sorted(attrs))
        if sr := self._schema_rule(text, context):
            m["schema"] = sr
        if self.cat_rules_ and (pr := self._phrase_rule(t)):
            m["phrase"] = pr
        return m

    def _phrase_rule(self, t: str):
        """The learned ``phrase -> category`` rule that matches ``t`` with the best pool precision (then support,
        then length, then the phrase itself, so a tie never depends on set order, which varies with the process's
        string hashing): ``(category, reason)``, or None."""
        best, best_key = None, None
        for g in ngrams(_WORD.findall(t), self.params.max_ngram):
            r = self.cat_rules_.get(g)
            if r is not None and (best is None or (*r.rank, g) > best_key):
                best, best_key = r, (*r.rank, g)
        return (best.category, best.reason) if best else None

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

    _PERSON = re.compile(r"\b(i|i'm|im|my|me|we|our|you|your|he|she|his|her)\b")
    _ASK = {"what", "which", "who", "whom", "whose", "how", "when", "where", "why", "list", "show", "find", "give",
            "count", "name", "return", "tell", "is", "are", "was", "were", "do", "does", "did", "can"}

    def _bucket(self, text: str, context: str):
        """The ``schema`` rule's evidence bucket of an item, and its cited terms; None without a schema."""
        from .schema import overlap

        ov = overlap(text, context)
        if not ov.n_schema:
            return None
        n = len(ov.matched) + len(ov.missing)
        share = "none" if n == 0 else "0" if not ov.matched else "all" if not ov.missing else \
            "most" if len(ov.matched) >= len(ov.missing) else "some"
        words = _WORD.findall(text.lower())
        ask = bool(words) and (words[0] in self._ASK or text.strip().endswith("?"))
        person = bool(self._PERSON.search(text.lower()))
        return (share, ask, person, min(len(ov.missing), 3)), ov

    def _schema_rule(self, text: str, context: str):
        if not self.buckets_ or not context:
            return None
        b = self._bucket(text, context)
        if b is None or b[0] not in self.buckets_:
            return None
        cat = self.buckets_[b[0]]
        ov = b[1]
        return cat, ",".join(ov.matched if cat == self.taxonomy.solvable_id else ov.missing)

    def _fit_buckets(self, pool: pd.DataFrame) -> None:
        self.buckets_ = {}
        if not self.params.schema_rules or "context" not in pool:
            return
        counts: dict = {}
        for t, c, g in zip(pool["text"].astype(str), pool["context"].fillna("").astype(str), pool["label"]):
            b = self._bucket(t, c)
            if b is not None:
                counts.setdefault(b[0], {}).setdefault(g, 0)
                counts[b[0]][g] += 1
        for key, by in counts.items():
            n = sum(by.values())
            best = max(sorted(by), key=by.get)
            if n >= self.params.min_support and by[best] / n >= self.params.min_bucket_precision:
                self.buckets_[key] = best

    def _decide(self, m: dict[str, str], order) -> tuple[str | None, str, str]:
        for rule in order:
            if rule in ("schema", "phrase") and rule in m:
                return m[rule][0], m[rule][1], rule
            if rule in m and rule in self.rule_cats:
                return self.rule_cats[rule], m[rule], rule
        if "solvable" in m:
            return self.taxonomy.solvable_id, m["solvable"], "solvable"
        return None, "", ""

    # --- estimator ---------------------------------------------------------------------------------
    def fit(self, fewshot: pd.DataFrame) -> RulesJudge:
        pool = fewshot.loc[fewshot["label"].notna()].reset_index(drop=True)
        self.taxonomy.check_labels(pool["label"], where=f"judge {self.name}: few-shot pool")
        vague_cat, ctx_cat = self.rule_cats.get("vague"), self.rule_cats.get("context")
        rk = pool["reason_key"].fillna("").astype(str)
        vague = {k.replace("_", " "): k for k in rk[pool["label"] == vague_cat] if k} if vague_cat else {}
        ctx_keys = rk[pool["label"] == ctx_cat] if ctx_cat else pd.Series([], dtype=str)
        referents = {k.replace("_", " "): k for k in ctx_keys if k}
        self.default_referent_ = ctx_keys.mode().iloc[0] if len(ctx_keys) else "referent"
        self._speller(pool["text"].astype(str))
        self._compile(vague, referents)
        self.cat_rules_, self.rule_vetoes_ = {}, set()
        if self.params.induce_phrases:
            self._induce(pool)
        self._fit_buckets(pool)
        ctx = pool["context"].fillna("").astype(str) if "context" in pool else [""] * len(pool)
        if self.params.min_rule_precision > 0 and len(pool):
            self._fit_rule_vetoes(pool, ctx)
        if self.params.category_phrases:
            self._induce_categories(pool)
        rules = [r for r in ("skill", "unknown", "context", "vague") if r in self.rule_cats]
        if self.buckets_:
            rules.append("schema")
        if self.cat_rules_:
            rules.append("phrase")
        self.order_ = tuple(rules)
        if self.params.calibrate_order and len(pool):
            ms = [self._matches(t, c) for t, c in zip(pool["text"].astype(str), ctx)]
            gold = pool["label"].tolist()
            best = -1
            for order in itertools.permutations(rules):
                score = sum(self._decide(m, order)[0] == g for m, g in zip(ms, gold))
                if score > best:
                    best, self.order_ = score, order
            self.pool_accuracy_ = best / len(pool)
        self._set_state(self.order_, sorted(vague.items()), sorted(referents.items()), self.default_referent_,
                        sorted((g, sorted(a)) for g, a in self.phrase_rules_.items()),
                        sorted((g, sorted(a)) for g, a in self.vetoes_.items()), sorted(self.spell_.vocab)
                        if self.spell_ else None, sorted((repr(k), v) for k, v in self.buckets_.items()),
                        sorted(self.cat_rules_.items()), sorted(self.rule_vetoes_),
                        "phrase-tiebreak-2")  # verdicts cached before ties were broken by phrase are not reused
        return self

    def _fit_rule_vetoes(self, pool: pd.DataFrame, ctx) -> None:
        """Veto (rule, reason) matches of the catalog rules that the pool shows to be mostly wrong."""
        counts: dict[tuple, list[int]] = {}
        for t, c, g in zip(pool["text"].astype(str), ctx, pool["label"]):
            m = self._matches(t, c)
            for r in ("skill", "unknown", "context", "vague"):
                if r in m and r in self.rule_cats:
                    k = counts.setdefault((r, m[r]), [0, 0])
                    k[0] += 1
                    k[1] += g == self.rule_cats[r]
        self.rule_vetoes_ = {key for key, (n, hit) in counts.items()
                             if n >= self.params.min_support and hit / n < self.params.min_rule_precision}

    def _induce_categories(self, pool: pd.DataFrame) -> None:
        """Learn ``phrase -> (category, reason)`` rules for the categories other than solvable (see module doc)."""
        sid = self.taxonomy.solvable_id
        n_all: dict[str, int] = {}
        n_cat: dict[tuple[str, str], dict[str, int]] = {}
        for text, label, rk in zip(pool["text"].astype(str), pool["label"], pool["reason_key"].fillna("")):
            for g in ngrams(_WORD.findall(self._normal(text)), self.params.max_ngram):
                n_all[g] = n_all.get(g, 0) + 1
                if label != sid:
                    by = n_cat.setdefault((g, label), {})
                    by[str(rk)] = by.get(str(rk), 0) + 1
        rules = {}
        for (g, c), by in sorted(n_cat.items()):  # sorted: a tie between two categories never depends on set order
            k = sum(by.values())
            prec = k / n_all[g]
            if k >= self.params.min_support and prec >= self.params.min_category_precision:
                reason = max(sorted(by), key=by.get)
                cand = PhraseRule(c, reason, prec, k, len(g.split()))
                if g not in rules or cand.rank > rules[g].rank:
                    rules[g] = cand
        self.cat_rules_ = rules

    def _induce(self, pool: pd.DataFrame) -> None:
        """Learn ``phrase -> attribute`` rules and vetoes of catalog matches from the pool (see module doc)."""
        sid = self.taxonomy.solvable_id
        has_ctx = pool["context"].fillna("").astype(str).str.len().gt(0) if "context" in pool else pd.Series(False, index=pool.index)
        n_all: dict[str, int] = {}
        n_sol: dict[str, int] = {}
        n_pos: dict[tuple[str, str], int] = {}
        n_cat: dict[tuple[str, str], list[int]] = {}
        self.phrase_rules_, self.vetoes_ = {}, {}
        for text, label, rk, ctx in zip(pool["text"].astype(str), pool["label"], pool["reason_key"].fillna(""), has_ctx):
            if ctx:
                continue
            t = self._normal(text)
            grams = ngrams(_WORD.findall(t), self.params.max_ngram)
            for g in grams:
                n_all[g] = n_all.get(g, 0) + 1
            if label != sid:
                continue
            for g in grams:
                n_sol[g] = n_sol.get(g, 0) + 1
            gold = {a for a in str(rk).split(",") if a}
            cat_attrs = {self._attr[p] for p in self.re_attr.findall(t)}
            for g in grams:
                for a in gold:
                    n_pos[(g, a)] = n_pos.get((g, a), 0) + 1
                for a in cat_attrs:
                    c = n_cat.setdefault((g, a), [0, 0])
                    c[0] += 1
                    c[1] += a in gold
        ms, rules, vetoes = self.params.min_support, {}, {}
        for (g, a), k in n_pos.items():
            if self.params.attr_precision_on_solvable:
                ok = k / n_sol[g] >= self.params.min_precision and n_sol[g] / n_all[g] >= 0.5
            else:
                ok = k / n_all[g] >= self.params.min_precision
            if k >= ms and ok:
                rules.setdefault(g, set()).add(a)
        for (g, a), (k, hit) in n_cat.items():
            if k >= ms and hit / k <= self.params.max_veto_precision and a not in rules.get(g, ()):
                vetoes.setdefault(g, set()).add(a)
        self.phrase_rules_ = {g: frozenset(a) for g, a in rules.items()}
        self.vetoes_ = {g: frozenset(a) for g, a in vetoes.items()}

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
