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

__all__ = ["schema_terms", "overlap", "masked_question", "overlap_features", "Overlap", "STOP"]

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


def overlap_features(texts, contexts) -> np.ndarray:
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
