"""The segment query language: parse to a typed AST, print the AST back as canonical text.

Syntax reference
----------------
A query is a WHERE-clause-only filter: conditions ``subject operator value`` joined by ``AND`` / ``OR``, grouped with
parentheses; ``AND`` binds tighter than ``OR``. Keywords (AND OR BETWEEN CONTAINS NOT IS NULL true false) are
case-insensitive; the canonical form writes them uppercase (true/false lowercase).

- subject: an attribute name (``amount_spent``) or a function with named arguments
  (``products_purchased(tag: 'shoes', date: -90d)``), compared with ``= true`` / ``= false``.
- operators: ``= != > >= < <=`` ; ``BETWEEN low AND high`` ; ``CONTAINS`` / ``NOT CONTAINS`` (lists) ;
  ``IS NULL`` / ``IS NOT NULL``.
- values: numbers (``100``, ``49.99``); single-quoted strings (``'vip'``, ``'O\\'Brien'``); booleans ``true`` /
  ``false``; enum values bare uppercase (``SUBSCRIBED``); relative dates ``-30d -12w -6m -1y`` (days, weeks,
  months, years before the store's reference date); absolute dates quoted ``'2026-01-31'`` (a bare
  ``2026-01-31`` is read as the same quoted string).

Examples (each is canonical: ``to_text(parse(q)) == q``)::

    amount_spent > 100
    number_of_orders >= 3 AND last_order_date < -90d
    email_subscription_status = SUBSCRIBED
    customer_tags CONTAINS 'vip' OR customer_tags CONTAINS 'wholesale'
    customer_countries NOT CONTAINS 'US'
    first_order_date BETWEEN '2025-01-01' AND '2025-12-31'
    amount_spent BETWEEN 50 AND 500 AND (customer_cities CONTAINS 'Toronto' OR customer_cities CONTAINS 'Ottawa')
    abandoned_checkout_date > -7d AND last_order_date IS NULL
    products_purchased(tag: 'shoes', date: -90d) = true
    email_opened(date: -30d) = false AND accepts_marketing = true

Public API: :func:`parse` (text -> AST, raises :class:`ParseError`), :func:`to_text` (AST -> canonical text),
:func:`walk` (every node), :func:`subjects` (the attribute/function names used), and the node dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from ..base import DomainError

__all__ = [
    "LocatedError", "ParseError", "parse", "to_text", "walk", "subjects",
    "Number", "String", "Bool", "Enum", "RelDate", "Value",
    "Attribute", "Function", "Subject",
    "Comparison", "Between", "Contains", "IsNull", "And", "Or", "Node",
]

GRAMMAR = Path(__file__).with_name("grammar.lark")


class LocatedError(DomainError):
    """An error at a place in the query; ``line``/``column`` are 1-based and ``pointer`` shows the caret."""

    def __init__(self, message: str, *, text: str = "", line: int = 1, column: int = 1, pos: int | None = None):
        if pos is not None:
            line = text.count("\n", 0, pos) + 1
            column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        self.reason = message
        """The message without the place."""
        self.line = line
        """1-based line where the parser stopped."""
        self.column = column
        """1-based column where the parser stopped."""
        lines = text.splitlines() or [""]
        src = lines[min(line, len(lines)) - 1]
        self.pointer = f"  {src}\n  {' ' * (column - 1)}^"
        """The offending line with a caret under the column."""
        super().__init__(f"line {line}, column {column}: {message}\n{self.pointer}")


class ParseError(LocatedError):
    """A query that does not parse."""


# ---------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Number:
    value: Decimal
    """The number, exact (``Decimal('49.99')``)."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source (not part of equality)."""


@dataclass(frozen=True)
class String:
    value: str
    """The unescaped text; an absolute date is a string ``'YYYY-MM-DD'``."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


@dataclass(frozen=True)
class Bool:
    value: bool
    """true or false."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


@dataclass(frozen=True)
class Enum:
    value: str
    """The bare enum value, uppercased (``SUBSCRIBED``)."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


@dataclass(frozen=True)
class RelDate:
    amount: int
    """How many units before the reference date (``-30d`` -> 30)."""
    unit: str
    """``d`` days, ``w`` weeks, ``m`` calendar months, ``y`` calendar years."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


Value = Number | String | Bool | Enum | RelDate


# ---------------------------------------------------------------------------- subjects
@dataclass(frozen=True)
class Attribute:
    name: str
    """Attribute name, lowercased."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


@dataclass(frozen=True)
class Function:
    name: str
    """Function name, lowercased."""
    args: tuple[tuple[str, Value], ...] = ()
    """Named arguments in source order: ``(("tag", String("shoes")), ("date", RelDate(90, "d")))``."""
    pos: int | None = field(default=None, compare=False, repr=False)
    """0-based character offset in the source."""


Subject = Attribute | Function


# ---------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Comparison:
    subject: Subject
    """What is compared."""
    op: str
    """One of ``= != > >= < <=`` (``<>`` is read as ``!=``)."""
    value: Value
    """The right-hand side."""


@dataclass(frozen=True)
class Between:
    subject: Subject
    """What is compared."""
    low: Value
    """Lower bound (inclusive)."""
    high: Value
    """Upper bound (inclusive)."""


@dataclass(frozen=True)
class Contains:
    subject: Subject
    """A list attribute."""
    value: Value
    """The element looked for."""
    negated: bool = False
    """``NOT CONTAINS``."""


@dataclass(frozen=True)
class IsNull:
    subject: Subject
    """What is tested."""
    negated: bool = False
    """``IS NOT NULL``."""


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]
    """Two or more operands (nested ANDs are flattened)."""


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]
    """Two or more operands (nested ORs are flattened)."""


Node = Comparison | Between | Contains | IsNull | And | Or

# ---------------------------------------------------------------------------- parsing
_TOKEN_NAMES = {
    "COMPOP": "an operator (= != > >= < <=)", "BETWEEN": "BETWEEN", "CONTAINS": "CONTAINS", "NOT": "NOT",
    "IS": "IS", "NULL": "NULL", "AND": "AND", "OR": "OR", "NAME": "a name", "STRING": "a quoted string",
    "NUMBER": "a number", "RELDATE": "a relative date (-30d)", "DATE": "a date", "TRUE": "true",
    "FALSE": "false", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "COLON": "':'", "$END": "end of query",
}


def _describe(expected) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected})
    if {"a quoted string", "a number", "a relative date (-30d)"} <= set(names):
        return "a value"
    return ", ".join(names)


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _unquote(tok: str) -> str:
    return re.sub(r"\\(.)", r"\1", tok[1:-1], flags=re.S)


def _value(tree) -> Value:
    tok = tree.children[0]
    kind, col = tree.data, tok.start_pos
    if kind == "string":
        return String(_unquote(str(tok)), col)
    if kind == "bare_date":
        return String(str(tok), col)
    if kind == "reldate":
        return RelDate(int(tok[1:-1]), tok[-1].lower(), col)
    if kind == "number":
        return Number(Decimal(str(tok)), col)
    if kind in ("true", "false"):
        return Bool(kind == "true", col)
    return Enum(str(tok).upper(), col)


def _subject(tree) -> Subject:
    name = tree.children[0]
    if tree.data == "attribute":
        return Attribute(str(name).lower(), name.start_pos)
    args = tuple((str(a.children[0]).lower(), _value(a.children[1])) for a in tree.children[1:])
    return Function(str(name).lower(), args, name.start_pos)


def _node(tree) -> Node:
    kind, ch = tree.data, [c for c in tree.children if not _is_kw(c)]
    if kind in ("or_expr", "and_expr"):
        cls = Or if kind == "or_expr" else And
        items: list[Node] = []
        for c in ch:
            n = _node(c)
            items.extend(n.items if isinstance(n, cls) else [n])
        return cls(tuple(items))
    subj = _subject(ch[0])
    if kind == "comparison":
        op = str(ch[1])
        return Comparison(subj, "!=" if op == "<>" else op, _value(ch[2]))
    if kind == "between":
        return Between(subj, _value(ch[1]), _value(ch[2]))
    if kind in ("contains", "not_contains"):
        return Contains(subj, _value(ch[1]), kind == "not_contains")
    return IsNull(subj, kind == "is_not_null")


def _is_kw(c) -> bool:
    return getattr(c, "type", None) in ("AND", "OR", "BETWEEN", "CONTAINS", "NOT", "IS", "NULL")


def parse(text: str) -> Node:
    """Parse one query; raises :class:`ParseError` pointing at the line and column where it stops."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty query", text=text if isinstance(text, str) else "")
    try:
        tree = _parser().parse(text)
    except UnexpectedToken as e:
        if e.token.type == "$END":
            line, col = _end_pos(text)
            raise ParseError(f"query ends early; expected {_describe(e.expected)}", text=text, line=line,
                             column=col) from None
        raise ParseError(f"unexpected {str(e.token)!r}; expected {_describe(e.expected)}", text=text,
                         line=e.line, column=e.column) from None
    except UnexpectedCharacters as e:
        raise ParseError(f"unexpected character {text[e.pos_in_stream]!r}", text=text, line=e.line,
                         column=e.column) from None
    except UnexpectedEOF as e:
        line, col = _end_pos(text)
        raise ParseError(f"query ends early; expected {_describe(e.expected)}", text=text, line=line,
                         column=col) from None
    return _node(tree)


def _end_pos(text: str) -> tuple[int, int]:
    lines = text.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


# ---------------------------------------------------------------------------- printing
def _fmt_value(v: Value) -> str:
    if isinstance(v, Number):
        return format(v.value, "f")
    if isinstance(v, String):
        return "'" + v.value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, Bool):
        return "true" if v.value else "false"
    if isinstance(v, Enum):
        return v.value
    return f"-{v.amount}{v.unit}"


def _fmt_subject(s: Subject) -> str:
    if isinstance(s, Attribute):
        return s.name
    return f"{s.name}(" + ", ".join(f"{k}: {_fmt_value(v)}" for k, v in s.args) + ")"


def to_text(node: Node) -> str:
    """Canonical text: uppercase keywords, single quotes, one space around operators, ``(...)`` around an OR
    inside an AND and around an AND inside an OR."""
    if isinstance(node, (And, Or)):
        sep = " AND " if isinstance(node, And) else " OR "
        return sep.join(f"({to_text(c)})" if isinstance(c, (And, Or)) else to_text(c) for c in node.items)
    s = _fmt_subject(node.subject)
    if isinstance(node, Comparison):
        return f"{s} {node.op} {_fmt_value(node.value)}"
    if isinstance(node, Between):
        return f"{s} BETWEEN {_fmt_value(node.low)} AND {_fmt_value(node.high)}"
    if isinstance(node, Contains):
        return f"{s} {'NOT CONTAINS' if node.negated else 'CONTAINS'} {_fmt_value(node.value)}"
    return f"{s} IS {'NOT NULL' if node.negated else 'NULL'}"


def walk(node: Node) -> Iterator[Node]:
    """Every condition and connective of the tree, depth-first."""
    yield node
    if isinstance(node, (And, Or)):
        for c in node.items:
            yield from walk(c)


def subjects(node: Node) -> tuple[str, ...]:
    """Sorted names of the attributes and functions the query uses."""
    return tuple(sorted({n.subject.name for n in walk(node) if not isinstance(n, (And, Or))}))
