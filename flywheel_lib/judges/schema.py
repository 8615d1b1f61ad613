"""Per-item schemas in ``context``: the question's terms against the schema's table and column names.

Shared by the offline judges that read context. A context is JSON ``{table: [columns]}`` (TriageSQL) or any nested
JSON whose keys and string leaves name tables and columns; anything else reads as no schema. Words are lowercased
and lightly stemmed (a trailing ``s`` dropped) so "players" meets a column "player".

>>> ov = overlap("how many players scored over 20 points?", '{"t": ["player", "points", "team"]}')
>>> ov.matched, ov.missing
(['player', 'point'], ['scored'])
>>> masked_question("how many players scored?", '{"t": ["player"]}')
'how many _col_ scored'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["schema_terms", "schema_shape", "overlap", "masked_question", "overlap_features", "Overlap", "STOP"]

_WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset("""a about above after again all also am an and any are as at be been before being below between both
but by can could did do does doing done during each either few for from further get got had has have having he her
here hers him his how i if in into is it its just me more most my no nor not now of off on once only or other our
out over own same she should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours
many much number list show give tell find name names total average count""".split())


def _stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


@lru_cache(maxsize=65536)
def schema_terms(context: str) -> frozenset:
    """The stemmed words of every table and column name in ``context`` (empty when it is no JSON schema)."""
    if not context or context[:1] not in "{[":
        return frozenset()
    try:
        obj = json.loads(context)
    except (json.JSONDecodeError, TypeError):
        return frozenset()
    names: list[str] = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                names.append(str(k))
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            names.append(o)

    walk(obj)
    return frozenset(_stem(w) for n in names for w in _WORD.findall(n.lower().replace("_", " ")) if not w.isdigit())


@dataclass
class Overlap:
    matched: list
    """The question's content words found among the schema's names (stemmed, sorted)."""
    missing: list
    """The question's content words the schema lacks (numbers and stop words left out)."""
    n_schema: int
    """Distinct schema words."""


def overlap(text: str, context: str) -> Overlap:
    terms = schema_terms(context or "")
    words = [w for w in _WORD.findall(str(text).lower()) if w not in STOP and not w.isdigit() and len(w) > 1]
    stems = sorted({_stem(w) for w in words})
    return Overlap([w for w in stems if w in terms], [w for w in stems if w not in terms], len(terms))


def masked_question(text: str, context: str) -> str:
    """The question with every word that names a schema table or column replaced by ``_col_``."""
    terms = schema_terms(context or "")
    return " ".join("_col_" if _stem(w) in terms and w not in STOP else w for w in _WORD.findall(str(text).lower()))


@lru_cache(maxsize=65536)
def schema_shape(context: str) -> tuple:
    """``(n_tables, n_columns, column phrases)`` of a ``{table: [columns]}`` schema; the phrases are the lowercased
    column names with ``_`` as a space (zeros and nothing for any other context)."""
    if not context or context[:1] != "{":
        return 0, 0, ()
    try:
        obj = json.loads(context)
    except (json.JSONDecodeError, TypeError):
        return 0, 0, ()
    if not isinstance(obj, dict):
        return 0, 0, ()
    cols = [str(c) for v in obj.values() if isinstance(v, list) for c in v if isinstance(c, (str, int, float))]
    phrases = tuple(sorted({" ".join(_WORD.findall(c.lower().replace("_", " "))) for c in cols} - {""}))
    return len(obj), len(cols), phrases


def _trigrams(w: str) -> frozenset:
    w = f"#{w}#"
    return frozenset(w[i:i + 3] for i in range(len(w) - 2))


@lru_cache(maxsize=262144)
def _fuzzy(word: str, terms: frozenset) -> float:
    """Best character-trigram Jaccard similarity of ``word`` to a schema word (1.0 for an exact match)."""
    if word in terms:
        return 1.0
    g = _trigrams(word)
    best = 0.0
    for t in terms:
        h = _trigrams(t)
        best = max(best, len(g & h) / len(g | h))
    return best


@lru_cache(maxsize=65536)
def _columns_per_word(context: str) -> dict:
    """stemmed word -> how many distinct column names (across tables) hold it."""
    out: dict[str, int] = {}
    for p in schema_shape(context)[2]:
        for w in {_stem(w) for w in p.split() if not w.isdigit()}:
            out[w] = out.get(w, 0) + 1
    return out


N_DENSE = 19
"""Columns of :func:`overlap_features`."""


def overlap_features(texts, contexts) -> np.ndarray:
    """``n x 16`` dense features: the seven of :func:`_basic_features`, then the schema's shape (log1p tables and
    columns), the share of columns the question names as a whole phrase and their count, fuzzy overlap (mean best
    character-trigram similarity of the unmatched content words to a schema word, the share of them above 0.5),
    first/second person, whether the question holds a number or a quoted string, and ambiguity (matched words that
    several columns share: their count (log1p), share of the matched words, most columns one word names (log1p))."""
    basic = _basic_features(texts, contexts)
    out = np.zeros((len(texts), N_DENSE - basic.shape[1]), dtype=np.float64)
    for i, (t, c) in enumerate(zip(texts, contexts)):
        t, c = str(t), str(c or "")
        n_tab, n_col, phrases = schema_shape(c)
        low = " " + " ".join(_WORD.findall(t.lower())) + " "
        named = sum(1 for p in phrases if f" {p} " in low) if phrases else 0
        ov = overlap(t, c)
        terms = schema_terms(c)
        fz = [_fuzzy(w, terms) for w in ov.missing] if terms else []
        cpw = _columns_per_word(c)
        multi = [cpw.get(w, 0) for w in ov.matched]
        n_multi = sum(m >= 2 for m in multi)
        out[i] = [np.log1p(n_tab), np.log1p(n_col), named / len(phrases) if phrases else 0.0, np.log1p(named),
                  float(np.mean(fz)) if fz else 0.0, float(np.mean([f > 0.5 for f in fz])) if fz else 0.0,
                  float(bool(_PERSON.search(t.lower()))), float(bool(re.search(r"\d", t))),
                  float(bool(re.search(r"[\"\u201c\u201d]", t))),
                  np.log1p(n_multi), n_multi / len(multi) if multi else 0.0, np.log1p(max(multi, default=0))]
    return np.hstack([basic, out])


_PERSON = re.compile(r"\b(i|i'm|im|my|me|we|our|you|your)\b")


def _basic_features(texts, contexts) -> np.ndarray:
    """``n x 7`` dense features: has a schema, share of content words in the schema, matched and missing counts
    (log1p), question length (log1p words), ends with ``?``, starts with a wh-word or a command verb."""
    out = np.zeros((len(texts), 7), dtype=np.float64)
    for i, (t, c) in enumerate(zip(texts, contexts)):
        t = str(t)
        ov = overlap(t, str(c or ""))
        n = len(ov.matched) + len(ov.missing)
        words = _WORD.findall(t.lower())
        out[i] = [float(ov.n_schema > 0), len(ov.matched) / n if n else 0.0, np.log1p(len(ov.matched)),
                  np.log1p(len(ov.missing)), np.log1p(len(words)), float(t.strip().endswith("?")),
                  float(bool(words) and words[0] in {"what", "which", "who", "how", "when", "where", "list", "show",
                                                      "find", "give", "count", "name", "return"})]
    return out
