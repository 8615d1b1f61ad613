"""Check a parsed segment query against the schema catalog.

Three kinds of problem, each located at its column: an unknown attribute or function (with a suggestion from the
synonyms), an operator the attribute's type does not allow, and a bad value (wrong type, an enum value not in the
list, a malformed date, a BETWEEN whose low bound is above its high bound, an unknown or repeated function argument).

>>> from .language import parse
>>> q = "amount_spent CONTAINS 'x'"
>>> validate(parse(q), text=q)[0].reason
'operator CONTAINS is not allowed for amount_spent (money); allowed: = != > >= < <= BETWEEN IS NULL IS NOT NULL'
"""

from __future__ import annotations

import datetime as dt

from .catalog import Catalog, load_catalog
from .language import (
    And,
    Attribute,
    Between,
    Bool,
    Comparison,
    Contains,
    Enum,
    LocatedError,
    Node,
    Number,
    Or,
    RelDate,
    String,
    Value,
    walk,
)

__all__ = ["ValidationError", "validate", "check", "operator_of", "date_value"]


class ValidationError(LocatedError):
    """A query that parses but does not fit the catalog."""


def operator_of(node: Node) -> str:
    """The catalog spelling of a condition's operator (``=``, ``BETWEEN``, ``NOT CONTAINS``, ``IS NULL`` ...)."""
    if isinstance(node, Comparison):
        return node.op
    if isinstance(node, Between):
        return "BETWEEN"
    if isinstance(node, Contains):
        return "NOT CONTAINS" if node.negated else "CONTAINS"
    return "IS NOT NULL" if node.negated else "IS NULL"


def date_value(v: Value) -> bool:
    """Whether a value is a date: a relative date or a quoted ``'YYYY-MM-DD'`` that is a real day."""
    if isinstance(v, RelDate):
        return v.amount * {"d": 1, "w": 7, "m": 31, "y": 366}[v.unit] <= 200 * 366  # at most 200 years back
    if isinstance(v, String) and len(v.value) == 10:
        try:
            dt.date.fromisoformat(v.value)
            return True
        except ValueError:
            return False
    return False


def _value_problem(v: Value, kind: str, spec: dict) -> str | None:
    """None when ``v`` fits the catalog value kind, else what is wrong."""
    if kind == "number" and isinstance(v, Number):
        return None
    if kind == "integer" and isinstance(v, Number):
        return None if v.value == v.value.to_integral_value() else f"{_show(v)} is not a whole number"
    if kind == "date":
        if date_value(v):
            return None
        if isinstance(v, String):
            return f"{_show(v)} is not a date; write 'YYYY-MM-DD' or a relative date like -30d"
    if kind == "enum" and isinstance(v, (Enum, String)):
        allowed = [str(x) for x in spec.get("values", [])]
        return None if v.value in allowed else f"{_show(v)} is not one of {', '.join(allowed)}"
    if kind == "string" and isinstance(v, String):
        return None
    if kind == "bool" and isinstance(v, Bool):
        return None
    want = {"number": "a number", "integer": "a whole number", "date": "a date", "enum": "an enum value",
            "string": "a quoted string", "bool": "true or false"}[kind]
    return f"{_show(v)} is not {want}"


def _show(v: Value) -> str:
    from .language import _fmt_value

    return _fmt_value(v)


def _problems(node: Node, cat: Catalog):
    """Yield ``(message, pos)`` for every problem of one condition."""
    subj = node.subject
    spec = cat.lookup(subj.name)
    if spec is None or spec["kind"] != ("attribute" if isinstance(subj, Attribute) else "function"):
        what = "attribute" if isinstance(subj, Attribute) else "function"
        if spec is not None:
            yield (f"{subj.name} is a{'n attribute' if spec['kind'] == 'attribute' else ' function'}, "
                   f"not a{'n attribute' if what == 'attribute' else ' function'}"), subj.pos
            return
        hint, missing = cat.suggest(subj.name), cat.match_unknown(subj.name.replace("_", " "))
        tail = f"; did you mean {hint}?" if hint else f"; the store holds no {missing[0]} data" if missing else ""
        yield f"unknown {what} {subj.name!r}{tail}", subj.pos
        return
    type_name = spec["type"] if spec["kind"] == "attribute" else spec.get("returns", "bool")
    if spec["kind"] == "function":
        seen = set()
        for arg, val in subj.args:
            if arg not in spec["args"]:
                yield (f"{subj.name} has no argument {arg!r}; arguments: {', '.join(spec['args'])}"), val.pos
            elif arg in seen:
                yield f"argument {arg!r} given twice", val.pos
            else:
                bad = _value_problem(val, spec["args"][arg], {})
                if bad:
                    yield f"argument {arg}: {bad}", val.pos
            seen.add(arg)
    op = operator_of(node)
    allowed = cat.operators(type_name)
    if op not in allowed:
        yield (f"operator {op} is not allowed for {subj.name} ({type_name}); allowed: {' '.join(allowed)}"), subj.pos
        return
    kind = cat.types[type_name]["value"]
    values = [node.value] if isinstance(node, (Comparison, Contains)) else \
        [node.low, node.high] if isinstance(node, Between) else []
    for v in values:
        bad = _value_problem(v, kind, spec)
        if bad:
            yield f"{subj.name} ({type_name}): {bad}", v.pos
            return
    if isinstance(node, Between) and all(isinstance(v, Number) for v in values) and node.low.value > node.high.value:
        yield f"BETWEEN {_show(node.low)} AND {_show(node.high)}: the low bound is above the high bound", node.low.pos


def validate(node: Node, catalog: Catalog | None = None, *, text: str = "") -> list[ValidationError]:
    """Every problem of a parsed query, in source order (empty when the query fits the catalog)."""
    cat = catalog or load_catalog()
    out = []
    for n in walk(node):
        if isinstance(n, (And, Or)):
            continue
        for msg, pos in _problems(n, cat):
            out.append(ValidationError(msg, text=text, pos=pos if pos is not None and text else None))
    return out


def check(node: Node, catalog: Catalog | None = None, *, text: str = "") -> Node:
    """Return ``node`` when valid; raise the first :class:`ValidationError` otherwise."""
    errs = validate(node, catalog, text=text)
    if errs:
        raise errs[0]
    return node

