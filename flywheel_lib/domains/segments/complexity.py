"""How complex a segment query is: AND/OR clauses, functions and relative dates.

Used by the selection-bias diagnostics of ``03_resolve`` to compare a curated set with the production pool it came
from (a set that keeps only one-condition queries teaches the easy cases only).

>>> query_complexity("amount_spent > 100 AND (city = 'Paris' OR city = 'Lyon')")
{'clauses': 2, 'functions': 0, 'relative_dates': 0}
>>> query_complexity("products_purchased(tag: 'shoes', date: -90d) = true AND last_order_date > -30d")
{'clauses': 1, 'functions': 1, 'relative_dates': 2}
>>> query_complexity("not a query") is None
True
"""

from __future__ import annotations

from .language import And, Function, Or, ParseError, RelDate, parse, walk

__all__ = ["query_complexity"]


def _values(node) -> list:
    vals = []
    for name in ("value", "low", "high"):
        v = getattr(node, name, None)
        if v is not None:
            vals.append(v)
    subj = getattr(node, "subject", None)
    if isinstance(subj, Function):
        vals.extend(v for _, v in subj.args)
    return vals


def query_complexity(query) -> dict[str, int] | None:
    """``{clauses, functions, relative_dates}`` of a query, ``None`` when it is missing or does not parse.

    ``clauses`` counts the AND/OR joins (conditions minus one), ``functions`` the function calls
    (``products_purchased(...)``), ``relative_dates`` the relative dates anywhere (``-30d``, function arguments too).
    """
    if not isinstance(query, str) or not query.strip():
        return None
    try:
        node = parse(query)
    except ParseError:
        return None
    joins = functions = reldates = 0
    for n in walk(node):
        if isinstance(n, (And, Or)):
            joins += len(n.items) - 1
            continue
        functions += isinstance(n.subject, Function)
        reldates += sum(isinstance(v, RelDate) for v in _values(n))
    return {"clauses": joins, "functions": functions, "relative_dates": reldates}
