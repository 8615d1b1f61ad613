"""Parser, printer and validator of the segment query language."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel_lib.domains.base import DomainError
from flywheel_lib.domains.segments import language as L
from flywheel_lib.domains.segments.catalog import load_catalog
from flywheel_lib.domains.segments.language import (
    And,
    Attribute,
    Between,
    Bool,
    Comparison,
    Contains,
    Enum,
    Function,
    IsNull,
    Number,
    Or,
    ParseError,
    RelDate,
    String,
    parse,
    subjects,
    to_text,
)
from flywheel_lib.domains.segments.validator import ValidationError, validate

DOC_EXAMPLES = [ln.strip() for ln in L.__doc__.split("::")[1].split("Public API")[0].splitlines() if ln.strip()]


def test_docstring_has_ten_canonical_examples():
    assert len(DOC_EXAMPLES) == 10
    for q in DOC_EXAMPLES:
        assert to_text(parse(q)) == q
        assert validate(parse(q), text=q) == [], q


def test_tree_of_a_small_query():
    q = "amount_spent > 100 and (customer_tags contains 'vip' OR last_order_date is not null)"
    assert parse(q) == And((
        Comparison(Attribute("amount_spent"), ">", Number(Decimal(100))),
        Or((Contains(Attribute("customer_tags"), String("vip")), IsNull(Attribute("last_order_date"), negated=True))),
    ))


def test_and_binds_tighter_than_or_and_chains_flatten():
    assert parse("a = 1 OR b = 2 AND c = 3") == Or((
        Comparison(Attribute("a"), "=", Number(Decimal(1))),
        And((Comparison(Attribute("b"), "=", Number(Decimal(2))), Comparison(Attribute("c"), "=", Number(Decimal(3))))),
    ))
    assert to_text(parse("a = 1 OR b = 2 AND c = 3")) == "a = 1 OR (b = 2 AND c = 3)"
    assert len(parse("a = 1 AND (b = 2 AND c = 3) AND d = 4").items) == 4


def test_values_of_every_kind():
    q = ("f(tag: \"it's\", id: 7, date: -3M) = TRUE AND d BETWEEN 2025-01-02 AND -2y "
         "AND s = UNSUBSCRIBED AND n != -4.50 AND x <> false")
    node = parse(q)
    assert node.items[0] == Comparison(Function("f", (("tag", String("it's")), ("id", Number(Decimal(7))),
                                                       ("date", RelDate(3, "m")))), "=", Bool(True))
    assert node.items[1] == Between(Attribute("d"), String("2025-01-02"), RelDate(2, "y"))
    assert node.items[2].value == Enum("UNSUBSCRIBED")
    assert node.items[3] == Comparison(Attribute("n"), "!=", Number(Decimal("-4.5")))
    assert node.items[4].op == "!="
    assert to_text(node) == ("f(tag: 'it\\'s', id: 7, date: -3m) = true AND d BETWEEN '2025-01-02' AND -2y "
                             "AND s = UNSUBSCRIBED AND n != -4.50 AND x != false")


def test_keywords_inside_names_are_names():
    node = parse("orders = 1 AND is_vip = true AND notes IS NULL AND android CONTAINS 'x'")
    assert subjects(node) == ("android", "is_vip", "notes", "orders")


@pytest.mark.parametrize("query, line, column, words", [
    ("amount_spent >", 1, 15, "ends early; expected a value"),
    ("amount_spent > AND x = 1", 1, 16, "unexpected 'AND'"),
    ("amount_spent >> 3", 1, 15, "unexpected '>'"),
    ("x = 1 AND (y = 2", 1, 17, "expected ')'"),
    ("a BETWEEN 1", 1, 12, "expected AND"),
    ("p(tag: ) = true", 1, 8, "unexpected ')'"),
    ("x = $", 1, 5, "unexpected character '$'"),
    ("x = 1\nAND y == 2", 2, 8, "unexpected '='"),
    ("   ", 1, 1, "empty query"),
])
def test_parse_errors_point_at_the_column(query, line, column, words):
    with pytest.raises(ParseError) as info:
        parse(query)
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert words in str(err)
    assert isinstance(err, DomainError)
    caret_line = err.pointer.splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1


@pytest.mark.parametrize("query, column, words", [
    ("age > 30", 1, "unknown attribute 'age'; the store holds no age data"),
    ("spend > 3", 1, "unknown attribute 'spend'; did you mean amount_spent?"),
    ("amount_spent CONTAINS 'x'", 1, "operator CONTAINS is not allowed for amount_spent (money)"),
    ("customer_tags = 'vip'", 1, "operator = is not allowed for customer_tags (list)"),
    ("number_of_orders IS NULL", 1, "operator IS NULL is not allowed for number_of_orders (count)"),
    ("email_subscription_status = SUBSCRIBD", 29, "SUBSCRIBD is not one of SUBSCRIBED"),
    ("number_of_orders > 2.5", 20, "2.5 is not a whole number"),
    ("last_order_date > '2026-13-01'", 19, "is not a date"),
    ("last_order_date > 30", 19, "30 is not a date"),
    ("last_order_date > -99999y", 19, "-99999y is not a date"),
    ("accepts_marketing = 1", 21, "1 is not true or false"),
    ("amount_spent BETWEEN 10 AND 5", 22, "low bound is above the high bound"),
    ("products_purchased(color: 'red') = true", 27, "has no argument 'color'"),
    ("products_purchased(tag: 'a', tag: 'b') = true", 35, "argument 'tag' given twice"),
    ("products_purchased(tag: 3) = true", 25, "argument tag: 3 is not a quoted string"),
    ("products_purchased(tag: 'shoes') > true", 1, "operator > is not allowed"),
    ("email_opened = true", 1, "email_opened is a function, not an attribute"),
    ("amount_spent() > 3", 1, "amount_spent is an attribute, not a function"),
])
def test_validator_errors(query, column, words):
    errs = validate(parse(query), load_catalog(), text=query)
    assert errs and isinstance(errs[0], ValidationError)
    assert words in str(errs[0])
    assert errs[0].column == column


def test_validator_accepts_quoted_enums_and_all_operator_kinds():
    ok = ["email_subscription_status = 'PENDING'", "store_credit_balance IS NULL", "customer_email_domain = 'gmail.com'",
          "customer_added_date BETWEEN -1y AND -6m", "email_opened() = true", "number_of_orders BETWEEN 1 AND 3",
          "products_purchased(id: 1002, date: '2026-01-01') != false"]
    for q in ok:
        assert validate(parse(q), text=q) == [], q


def test_every_catalog_operator_parses():
    cat = load_catalog()
    example = {"number": "1", "integer": "1", "date": "-1d", "enum": "X", "string": "'s'", "bool": "true"}
    for spec in cat.types.values():
        for op in spec["operators"]:
            v = example[spec["value"]]
            tail = f" BETWEEN {v} AND {v}" if op == "BETWEEN" else f" {op}" if "NULL" in op else f" {op} {v}"
            assert to_text(parse("a" + tail)) == "a" + tail


# ---------------------------------------------------------------- property: print . parse is the identity on trees
KEYWORDS = {"and", "or", "between", "contains", "not", "is", "null", "true", "false"}
names = st.from_regex(r"\A[a-z_][a-z0-9_]{0,12}\Z").filter(lambda s: s not in KEYWORDS)
enums = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,10}\Z").filter(lambda s: s.lower() not in KEYWORDS)
values = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6).map(Number),
    st.integers(-10**9, 10**9).map(lambda i: Number(Decimal(i))),
    st.text(max_size=12).map(String),
    st.booleans().map(Bool),
    enums.map(Enum),
    st.builds(RelDate, st.integers(0, 5000), st.sampled_from("dwmy")),
)
subjects_st = st.one_of(
    names.map(Attribute),
    st.builds(Function, names, st.lists(st.tuples(names, values), max_size=3).map(tuple)),
)
conditions = st.one_of(
    st.builds(Comparison, subjects_st, st.sampled_from(["=", "!=", ">", ">=", "<", "<="]), values),
    st.builds(Between, subjects_st, values, values),
    st.builds(Contains, subjects_st, values, st.booleans()),
    st.builds(IsNull, subjects_st, st.booleans()),
)
trees = st.recursive(conditions, lambda kids: st.one_of(
    st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
    st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))), max_leaves=8)


def flatten(node):
    if isinstance(node, (And, Or)):
        items = []
        for c in map(flatten, node.items):
            items.extend(c.items if type(c) is type(node) else [c])
        return type(node)(tuple(items))
    return node


@settings(max_examples=200, deadline=None)
@given(trees)
def test_print_then_parse_gives_the_same_tree(tree):
    text = to_text(tree)
    again = parse(text)
    assert again == flatten(tree)
    assert to_text(again) == to_text(flatten(tree))


@settings(max_examples=60, deadline=None)
@given(trees)
def test_noisy_spacing_and_case_parse_to_the_same_tree(tree):
    text = to_text(tree)
    # lower-case the keywords outside strings and widen spaces around operators
    parts = re.split(r"('(?:[^'\\]|\\.)*')", text)
    noisy = "".join(p if i % 2 else re.sub(r"\b(AND|OR|BETWEEN|CONTAINS|NOT|IS|NULL)\b", lambda m: m.group(1).lower(),
                                            p).replace(" = ", "   =  ") for i, p in enumerate(parts))
    assert parse(noisy) == flatten(tree)
