"""A deterministic generator of realistic data for the segments domain: production logs, seed annotations, eval.

``generate(catalog, seed=7)`` returns ``{"production", "seed", "eval"}`` item tables (the items contract of
:mod:`flywheel_lib.records` plus the columns below). The same seed gives byte-identical tables.

- **production**: merchant requests logged as successes (``label`` = ``solvable``) with the query the production
  model emitted, a ``workload_id``, timestamps and implicit feedback signals (``signal_retry``,
  ``signal_correction``, ``signal_copy``, ``signal_edit``, ``signal_abandon``) that fire more often when the emitted
  query was wrong. About 12% should have been refused; for those the model made something up (tag hacks such as
  ``customer_tags CONTAINS 'doctor'`` select nobody: the failure the first seed document describes).
  ``true_label`` keeps the hidden truth; ``pii_spans`` (JSON) the personal data planted in ``pii_rate`` of requests.
- **seed**: ~600 solvable requests with gold queries and ~600 refusals spread over the four refusal categories,
  annotated with a small error rate (``label`` is the annotation, ``true_label`` the truth).
- **conflicts**: ``n_conflicts`` seed refusals also appear in production as successes, verbatim or lightly
  paraphrased (``conflict_with`` names the seed item).
- **eval**: stratified by category, built only from sentence frames and phrasings that production and seed never
  use (``family`` ids are disjoint), so it measures generalization rather than memorization.

Extra columns: ``reason_key`` (gold canonical reason), ``family`` (phrasing family), ``true_label``,
``gold_output`` (the correct query or None), ``conflict_with``, ``annotation_error``, ``pii_spans``, ``signal_*``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

import pandas as pd

from ...data.stats import match_key
from . import phrasing as P
from .noise import noise as _noise
from .noise import paraphrase as _paraphrase
from .noise import plant_pii as _plant_pii

__all__ = ["generate", "CATEGORIES", "REFUSAL_SHARE", "match_key", "SIGNALS"]

CATEGORIES = ("solvable", "needs_context", "missing_capability", "wrong_skill", "ambiguous")
REFUSALS = CATEGORIES[1:]
REFUSAL_SHARE = 0.12
"""Share of production requests that should have been refused (conflicts included)."""
PROD_REFUSAL_MIX = {"missing_capability": 0.35, "ambiguous": 0.30, "wrong_skill": 0.20, "needs_context": 0.15}
EVAL_MIX = {"solvable": 0.40, "needs_context": 0.15, "missing_capability": 0.15, "wrong_skill": 0.15,
            "ambiguous": 0.15}
SIGNALS = ("signal_retry", "signal_correction", "signal_copy", "signal_edit", "signal_abandon")
# P(signal | emitted query right), P(signal | wrong)
_SIGNAL_P = {"signal_retry": (0.04, 0.30), "signal_correction": (0.02, 0.22), "signal_copy": (0.55, 0.12),
             "signal_edit": (0.06, 0.25), "signal_abandon": (0.05, 0.28)}
_WRONG_QUERY_RATE = 0.07
_WORKLOAD = "customer_segmentation"
# Production is logged in the 90 days before the store's reference date (2026-06-30); the seed was annotated earlier.
_PROD_START = pd.Timestamp("2026-04-01", tz="UTC")
_SEED_START = pd.Timestamp("2026-03-01", tz="UTC")
_EVAL_START = pd.Timestamp("2026-06-20", tz="UTC")
# Conditions on the same attribute are never combined in one request.
_GROUP = {"spent_over": "spent", "spent_under": "spent", "spent_between": "spent", "orders_min": "orders",
          "orders_more": "orders", "one_order": "orders", "no_orders": "orders", "lapsed": "last",
          "ordered_recent": "last", "city": "city", "city_or": "city", "country": "country",
          "not_country": "country", "tagged": "tag", "not_tagged": "tag", "credit": "credit", "has_credit": "credit",
          "bought_tag": "bought", "bought_tag_ever": "bought", "not_bought_tag": "bought",
          "opened_email": "opened", "not_opened": "opened"}


@dataclass
class Draft:
    """One request before noise and PII: its text, truth and what the production model emitted."""

    text: str
    category: str
    reason_key: str
    gold: str | None
    emitted: str
    family: str


# ------------------------------------------------------------------------------------------- conditions
def _pick(r: random.Random, spec: dict, pool: str) -> str:
    if pool == "eval" and spec.get("eval") and r.random() < 0.75:
        return r.choice(spec["eval"])
    return r.choice(spec["train"])


def _money(r: random.Random, x: int) -> str:
    forms = [f"${x}", f"${x}", f"{x} dollars", f"${x:,}", f"{x} bucks", f"${x}.00", f"{x}$"]
    if x % 1000 == 0:
        forms += [f"{x // 1000}k", f"${x // 1000}k", f"${x // 1000}K"]
    return r.choice(forms)


class _Vocab:
    """The values requests draw from: the catalog's vocabularies where it lists them, else the phrasing tables'."""

    def __init__(self, catalog: dict):
        attrs = catalog.get("attributes", {}) or {}
        fns = catalog.get("functions", {}) or {}

        def values(name: str, fallback: list) -> list:
            return [str(v) for v in (attrs.get(name, {}) or {}).get("values", [])] or list(fallback)

        self.tags = values("customer_tags", P.MERCHANT_TAGS)
        self.cities = values("customer_cities", P.CITIES)
        codes = set(values("customer_countries", [c for c, _ in P.COUNTRIES]))
        self.countries = [(c, names) for c, names in P.COUNTRIES if c in codes]
        self.domains = values("customer_email_domain", P.EMAIL_DOMAINS)
        ptags = ((fns.get("products_purchased", {}) or {}).get("values", {}) or {}).get("tag")
        self.product_tags = [str(t) for t in ptags] if ptags else list(P.PRODUCT_TAGS)
        self.unknown = sorted(catalog.get("unknown_attributes", {}) or P.UNKNOWN)
        self.skills = sorted(catalog.get("other_skills", {}) or P.WRONG)


_PTAG_WORDS = {"sale": "sale items", "new-arrival": "new arrivals", "gift-card": "gift cards", "summer": "summer items",
               "winter": "winter gear", "kids": "kids' items", "accessories": "accessories"}


def _condition(r: random.Random, kind: str, pool: str, V: _Vocab) -> tuple[str, str, tuple[str, ...]]:
    """(phrase, canonical clause, catalog names used) for one solvable condition kind."""
    spec = P.SOLVABLE[kind]
    slots: dict[str, str] = {}
    qslots: dict[str, str] = {}
    if "values" in spec:
        value, train, ev = r.choice(spec["values"])
        phrase = r.choice(ev) if pool == "eval" and r.random() < 0.75 else r.choice(train)
        qslots["v"] = qslots["b"] = value
    else:
        phrase = _pick(r, spec, pool)
    m = r.choice(P.MONEY[:-3])
    m2 = r.choice([x for x in P.MONEY if x > m])
    slots["m"], slots["m2"], qslots["m"], qslots["m2"] = _money(r, m), _money(r, m2), str(m), str(m2)
    n = r.choice(P.COUNTS)
    slots["n"] = qslots["n"] = str(n)
    span_phrases, span_lit = r.choice(P.SPANS)
    slots["t"], qslots["t"] = r.choice(span_phrases), span_lit
    slots["tag"] = qslots["tag"] = r.choice(V.tags)
    city, city2 = r.sample(V.cities, 2)
    slots["city"], slots["city2"], qslots["city"], qslots["city2"] = city, city2, city, city2
    cc, names = r.choice(V.countries)
    slots["country"], qslots["cc"] = r.choice(names), cc
    slots["dom"] = qslots["dom"] = r.choice(V.domains)
    ptag = r.choice(V.product_tags)
    slots["ptag"], qslots["ptag"] = _PTAG_WORDS.get(ptag, ptag), ptag
    text = phrase.format(**slots)
    for lead in ("the last ", "the past ", "within the "):
        text = text.replace(lead + "a ", lead).replace(lead + "one ", lead).replace(lead + "half a ", lead + "half ")
    clause = spec["query"].format(**qslots)
    used = tuple(sorted(set(re.findall(r"\b([a-z_]+)(?=\s*(?:\(|[<>=!]| CONTAINS| NOT| BETWEEN| IS))", clause))))
    return text, clause, used


def _conditions(r: random.Random, pool: str, k: int, V: _Vocab) -> tuple[list[str], list[str], list[str]]:
    kinds: list[str] = []
    groups: set[str] = set()
    while len(kinds) < k:
        kind = r.choice(list(P.SOLVABLE))
        g = _GROUP.get(kind, kind)
        if g not in groups:
            kinds.append(kind)
            groups.add(g)
    texts, clauses, used = [], [], set()
    for kind in kinds:
        t, c, u = _condition(r, kind, pool, V)
        texts.append(t)
        clauses.append(c)
        used.update(u)
    return texts, clauses, sorted(used)


def _and(clauses: list[str]) -> str:
    """Clauses joined by AND; a lone parenthesised OR loses its parentheses (the canonical form)."""
    if len(clauses) == 1 and clauses[0].startswith("(") and clauses[0].endswith(")"):
        return clauses[0][1:-1]
    return " AND ".join(clauses)


def _join(r: random.Random, parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    head = ", ".join(parts[:-1]) if r.random() < 0.6 else " and ".join(parts[:-1])
    return head + r.choice([" and ", " and ", " and also ", ", "]) + parts[-1]


def _frame(r: random.Random, kind: str, pool: str) -> tuple[str, str]:
    frames = [(fid, t) for fid, p, t in P.FRAMES[kind] if p == pool]
    return r.choice(frames)


# ------------------------------------------------------------------------------------------- drafts
def _solvable(r: random.Random, pool: str, V: _Vocab) -> Draft:
    k = 1 if r.random() < 0.55 else (2 if r.random() < 0.85 else 3)
    texts, clauses, used = _conditions(r, pool, k, V)
    fid, frame = _frame(r, "segment", pool)
    gold = _and(clauses)
    return Draft(frame.format(c=_join(r, texts)), "solvable", ",".join(used), gold, gold, fid)


def _with_segment(r: random.Random, phrase: str, guess: str, pool: str, p_mixed: float,
                  V: _Vocab) -> tuple[str, str]:
    """Optionally mix a refusal phrase with a valid condition ("customers in Canada who are doctors")."""
    if r.random() >= p_mixed:
        return phrase, guess
    texts, clauses, _ = _conditions(r, pool, 1, V)
    if r.random() < 0.5:
        return _join(r, [texts[0], phrase]), f"{clauses[0]} AND {guess}"
    return _join(r, [phrase, texts[0]]), f"{guess} AND {clauses[0]}"


def _refusal(r: random.Random, category: str, pool: str, V: _Vocab) -> Draft:
    if category == "wrong_skill":
        return _wrong(r, pool, V)
    table, key_field = {"missing_capability": (P.UNKNOWN, "hack"), "ambiguous": (P.VAGUE, "guess"),
                        "needs_context": (P.CONTEXT, "guess")}[category]
    keys = sorted(table)
    if category == "missing_capability":
        keys = [k for k in keys if k in V.unknown] or keys
    key = r.choice(keys)
    spec = table[key]
    phrase, emitted = _with_segment(r, _pick(r, spec, pool), r.choice(spec[key_field]), pool,
                                    {"missing_capability": 0.35, "ambiguous": 0.3, "needs_context": 0.3}[category],
                                    V)
    fid, frame = _frame(r, "segment", pool)
    return Draft(frame.format(c=phrase), category, key, None, emitted, fid)


def _wrong(r: random.Random, pool: str, V: _Vocab) -> Draft:
    skills = [s for s in sorted(P.WRONG) if s in V.skills] or sorted(P.WRONG)
    if r.random() < 0.25:
        skill = r.choice(sorted(P.WRONG_MIXED))
        train, ev = P.WRONG_MIXED[skill]
        templates = ev if pool == "eval" else train
        i = r.randrange(len(templates))
        texts, clauses, _ = _conditions(r, pool, 1, V)
        fid = f"{'ev_' if pool == 'eval' else ''}wsmix_{skill}_{i}"
        return Draft(templates[i].format(c=texts[0]), "wrong_skill", skill, None, _and(clauses), fid)
    skill = r.choice(skills)
    spec = P.WRONG[skill]
    fid, frame = _frame(r, "wrong_skill", pool)
    return Draft(frame.format(c=_pick(r, spec, pool)), "wrong_skill", skill, None, r.choice(spec["guess"]), fid)


def _draft(r: random.Random, category: str, pool: str, V: _Vocab) -> Draft:
    return _solvable(r, pool, V) if category == "solvable" else _refusal(r, category, pool, V)


# ------------------------------------------------------------------------------------------- tables
def _signals(r: random.Random, wrong: bool) -> dict[str, bool]:
    return {k: r.random() < p[1 if wrong else 0] for k, p in _SIGNAL_P.items()}


def _mutate(r: random.Random, query: str) -> str:
    """A plausible wrong query for a solvable request: another threshold, the wrong direction, or a lost clause."""
    parts = query.split(" AND ")
    if len(parts) > 1 and "BETWEEN" not in query and "(" not in query and r.random() < 0.35:
        parts.pop(r.randrange(len(parts)))
        return " AND ".join(parts)
    between = re.search(r"BETWEEN (\d+) AND \d+", query)
    if between and r.random() < 0.5:
        return query[:between.start()] + f"> {between.group(1)}" + query[between.end():]
    nums = [m for m in re.finditer(r"(?<![\w-])(\d+)(?![\w.])", query)
            if not re.search(r"BETWEEN\s*$|BETWEEN \d+ AND\s*$", query[:m.start()])]
    if nums and r.random() < 0.6:
        m = r.choice(nums)
        new = str(int(m.group(1)) * r.choice([2, 10]) if int(m.group(1)) else 1)
        return query[:m.start()] + new + query[m.end():]
    for a, b in ((" > ", " < "), (" < ", " > "), (" >= ", " <= "), ("= true", "= false"), ("= false", "= true"),
                 (" NOT CONTAINS ", " CONTAINS "), (" CONTAINS ", " NOT CONTAINS ")):
        if a in query:
            return query.replace(a, b, 1)
    return query + " AND accepts_marketing = true" if "accepts_marketing" not in query else query


def _row(item_id: str, d: Draft, text: str, source: str, ts, label: str, output) -> dict:
    return {"item_id": item_id, "text": text, "source": source, "workload_id": _WORKLOAD, "timestamp": ts,
            "label": label, "output": output, "context": "", "split": "eval" if source == "eval" else "",
            "reason_key": d.reason_key, "family": d.family, "true_label": d.category, "gold_output": d.gold,
            "conflict_with": "", "annotation_error": False, "pii_spans": "[]"}


def _frame_of(rows: list[dict], production: bool) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for s in SIGNALS:
        df[s] = df[s].astype("boolean") if production else pd.array([pd.NA] * len(df), dtype="boolean")
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def _unique_drafts(r: random.Random, plan: list[str], pool: str, V: _Vocab, taken: set[str]) -> list:
    out = []
    for category in plan:
        for _ in range(200):
            d = _draft(r, category, pool, V)
            text = _noise(r, d.text)
            key = match_key(text)
            if key not in taken:
                taken.add(key)
                out.append((d, text))
                break
        else:
            raise RuntimeError(f"could not draw a new unique {category} request from pool {pool!r}; lower the sizes")
    return out


def _plan(r: random.Random, mix: dict[str, float], n: int) -> list[str]:
    counts = {c: int(n * s) for c, s in mix.items()}
    for c in list(mix)[: n - sum(counts.values())]:
        counts[c] += 1
    plan = [c for c, k in counts.items() for _ in range(k)]
    r.shuffle(plan)
    return plan


def generate(catalog: dict, *, seed: int = 7, n_production: int = 20000, n_seed_solvable: int = 600,
             n_seed_refusal: int = 600, n_eval: int = 400, n_conflicts: int = 150, pii_rate: float = 0.05,
             annotation_error_rate: float = 0.03) -> dict[str, pd.DataFrame]:
    """Production logs, seed annotations and an eval set for the segments domain (see the module docstring)."""
    if n_conflicts > n_seed_refusal:
        raise ValueError(f"n_conflicts={n_conflicts} exceeds n_seed_refusal={n_seed_refusal}")
    if n_conflicts > int(n_production * REFUSAL_SHARE):
        raise ValueError(f"n_conflicts={n_conflicts} exceeds the production refusal share "
                         f"({REFUSAL_SHARE:.0%} of {n_production})")
    V = _Vocab(catalog)
    # --- eval first, from its own pool; its texts are then barred from seed and production
    r_eval = random.Random(f"{seed}:eval")
    eval_plan = _plan(r_eval, EVAL_MIX, n_eval)
    taken: set[str] = set()
    eval_rows = []
    for i, (d, text) in enumerate(_unique_drafts(r_eval, eval_plan, "eval", V, taken)):
        ts = _EVAL_START + pd.Timedelta(seconds=r_eval.randrange(7 * 86400))
        eval_rows.append(_row(f"eval-{i:05d}", d, text, "eval", ts, d.category, d.gold))
    eval_keys = set(taken)
    # --- seed annotations
    r_seed = random.Random(f"{seed}:seed")
    seed_plan = ["solvable"] * n_seed_solvable + [REFUSALS[i % len(REFUSALS)] for i in range(n_seed_refusal)]
    r_seed.shuffle(seed_plan)
    seed_drafts = _unique_drafts(r_seed, seed_plan, "train", V, taken)
    n_err = round(annotation_error_rate * len(seed_drafts))
    errors = set(r_seed.sample(range(len(seed_drafts)), n_err))
    seed_rows = []
    for i, (d, text) in enumerate(seed_drafts):
        label, output = d.category, d.gold
        if i in errors:
            if d.category == "solvable":
                label, output = r_seed.choice(REFUSALS), None
            else:
                label = r_seed.choice([c for c in CATEGORIES if c != d.category])
                output = d.emitted if label == "solvable" else None
        ts = _SEED_START + pd.Timedelta(seconds=r_seed.randrange(14 * 86400))
        row = _row(f"seed-{i:05d}", d, text, "seed", ts, label, output)
        row["annotation_error"] = i in errors
        seed_rows.append(row)
    # --- production logs (no eval text ever leaks in; seed overlap is natural and conflicts are planted)
    r = random.Random(f"{seed}:production")
    n_refuse = int(round(n_production * REFUSAL_SHARE)) - n_conflicts
    plan = _plan(r, {"solvable": 1.0}, n_production - n_refuse - n_conflicts)
    plan += _plan(r, PROD_REFUSAL_MIX, n_refuse)
    plan += ["conflict"] * n_conflicts
    r.shuffle(plan)
    conflict_pool = [row for row in seed_rows if row["label"] in REFUSALS and not row["annotation_error"]]
    conflict_src = iter(r.sample(conflict_pool, n_conflicts))
    seconds = sorted(r.randrange(90 * 86400) for _ in range(n_production))
    prod_rows = []
    for i, category in enumerate(plan):
        if category == "conflict":
            src = next(conflict_src)
            d = Draft(src["text"], src["true_label"], src["reason_key"], None, "", src["family"])
            text = src["text"] if r.random() < 0.5 else _paraphrase(r, src["text"])
            d.emitted = _refusal_guess(r, d)
        else:
            while True:
                d = _draft(r, category, "train", V)
                text = _noise(r, d.text)
                if match_key(text) not in eval_keys:
                    break
        emitted = d.emitted
        if d.category == "solvable" and r.random() < _WRONG_QUERY_RATE:
            emitted = _mutate(r, d.gold)
        spans: list[dict] = []
        if r.random() < pii_rate:
            text, spans = _plant_pii(r, text)
        row = _row(f"prod-{i:06d}", d, text, "production", _PROD_START + pd.Timedelta(seconds=seconds[i]),
                   "solvable", emitted)
        if category == "conflict":
            row["conflict_with"] = src["item_id"]
        row["pii_spans"] = json.dumps(spans)
        row.update(_signals(r, wrong=(d.category != "solvable" or emitted != d.gold)))
        prod_rows.append(row)
    for rows in (seed_rows, eval_rows):
        for row in rows:
            row.update({s: None for s in SIGNALS})
    return {"production": _frame_of(prod_rows, True), "seed": _frame_of(seed_rows, False),
            "eval": _frame_of(eval_rows, False)}


def _refusal_guess(r: random.Random, d: Draft) -> str:
    table = {"missing_capability": (P.UNKNOWN, "hack"), "ambiguous": (P.VAGUE, "guess"),
             "needs_context": (P.CONTEXT, "guess"), "wrong_skill": (P.WRONG, "guess")}[d.category]
    spec = table[0].get(d.reason_key)
    if spec is None:  # mixed wrong-skill requests: the model built the segment anyway
        return "accepts_marketing = true"
    return r.choice(spec[table[1]])
