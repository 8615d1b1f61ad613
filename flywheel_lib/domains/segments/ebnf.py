"""The segment language as a typed EBNF grammar for constrained decoding, built from the schema catalog.

``grammar.lark`` says what *parses*; this grammar says what parses **and validates**: every attribute is followed
only by the operators its catalog type allows and by a value of that type (an enum by one of its own values, a count
by a whole number, a date by a relative date of at most 200 years or a real calendar day, a function by its own
arguments, each at most once). It is written in the GBNF dialect that xgrammar, llama.cpp and transformers-cfg read,
with ``query`` as the start rule, so a decoder can add other branches (the refusal line) beside it::

    >>> g = query_grammar()
    >>> g.splitlines()[0]
    'query ::= conj (" OR " conj){0,2}'

The canonical spelling only (uppercase keywords, single spaces, single-quoted strings), one nesting level (a
parenthesised OR of conditions inside an AND) and at most 3 x 3 conditions: a query a small model writes ends within
a bounded number of tokens. One validator rule a context-free grammar cannot hold is ``BETWEEN low AND high`` with
``low <= high`` for numbers; :mod:`flywheel_lib.evaluation.constrained` keeps it while decoding.
"""

from __future__ import annotations

from .catalog import Catalog, load_catalog

__all__ = ["query_grammar"]

_OPS = {"=": '"="', "!=": '"!="', ">": '">"', ">=": '">="', "<": '"<"', "<=": '"<="'}

# Shared terminals. Numbers carry no sign and no leading zeros (what the catalog's money and counts hold).
_TERMINALS = r'''
num ::= int ("." [0-9]{1,2})?
int ::= "0" | [1-9] [0-9]{0,6}
str ::= "'" [^'\\\n]{1,40} "'"
bool ::= "true" | "false"
date ::= reldate | absdate
reldate ::= "-" [1-9] [0-9]{0,2} [dwm] | "-" [1-9] [0-9]? "y"
absdate ::= "'" [12] [0-9] [0-9] [0-9] "-" mmdd "'"
mmdd ::= ("0" [13578] | "1" [02]) "-" d31 | ("0" [469] | "11") "-" d30 | "02-" d28
d28 ::= "0" [1-9] | "1" [0-9] | "2" [0-8]
d30 ::= d28 | "29" | "30"
d31 ::= d30 | "31"
'''

_VALUE_RULE = {"number": "num", "integer": "int", "date": "date", "string": "str", "bool": "bool"}


def _lit(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alt(items) -> str:
    return " | ".join(items)


def _operator_tail(ops: tuple[str, ...], value: str) -> str:
    """The part after ``subject " "``: each allowed operator with its value."""
    parts = []
    cmp = [o for o in ops if o in _OPS]
    if cmp:
        parts.append(f'({_alt(_OPS[o] for o in cmp)}) " " {value}')
    if "BETWEEN" in ops:
        parts.append(f'"BETWEEN " {value} " AND " {value}')
    if "CONTAINS" in ops:
        parts.append(f'"CONTAINS " {value}')
    if "NOT CONTAINS" in ops:
        parts.append(f'"NOT CONTAINS " {value}')
    if "IS NULL" in ops:
        parts.append('"IS NULL"')
    if "IS NOT NULL" in ops:
        parts.append('"IS NOT NULL"')
    return _alt(parts)


def _ordered_subsets(names: list[str]) -> list[list[str]]:
    out = [[]]
    for n in names:
        out += [s + [n] for s in out]
    return [s for s in out if s]


def query_grammar(catalog: Catalog | None = None) -> str:
    """GBNF rules whose start rule ``query`` accepts exactly the canonical queries that validate (see module doc)."""
    cat = catalog or load_catalog()
    rules, conds = [], []
    by_type: dict[str, list[str]] = {}
    for name, spec in cat.attributes.items():
        if spec["type"] == "enum":
            rule = f"c_{name}"
            vals = _alt(_lit(str(v)) for v in spec.get("values", []))
            ops = cat.operators("enum")
            rules.append(f'{rule} ::= {_lit(name)} " " ({_alt(_OPS[o] for o in ops if o in _OPS)}) " " ({vals})')
            conds.append(rule)
        else:
            by_type.setdefault(spec["type"], []).append(name)
    for type_name, names in by_type.items():
        if type_name not in cat.types:
            raise KeyError(f"catalog.yaml: attribute type {type_name!r} of {names[0]!r} is not under `types`")
        value = _VALUE_RULE[cat.types[type_name]["value"]]
        rule = f"c_{type_name}"
        tail = _operator_tail(cat.operators(type_name), value)
        rules.append(f'{rule} ::= ({_alt(_lit(n) for n in names)}) " " ({tail})')
        conds.append(rule)
    for name, spec in cat.functions.items():
        args = list(spec.get("args", {}))
        combos = [' ", " '.join(f'"{a}: " {_VALUE_RULE[spec["args"][a]]}' for a in sub)
                  for sub in _ordered_subsets(args)] or ['""']
        rtype = spec.get("returns", "bool")
        value = _VALUE_RULE[cat.types[rtype]["value"]]
        rule = f"f_{name}"
        tail = _operator_tail(cat.operators(rtype), value)
        rules.append(f'{rule} ::= {_lit(name)} "(" ({_alt(combos)}) ") " ({tail})')
        conds.append(rule)
    head = [
        'query ::= conj (" OR " conj){0,2}',
        'conj ::= atom (" AND " atom){0,2}',
        'atom ::= cond | "(" cond (" OR " cond){1,2} ")"',
        f"cond ::= {_alt(conds)}",
    ]
    return "\n".join(head + rules) + "\n" + _TERMINALS.strip() + "\n"
