"""Run a segment query on the customer store: the AST becomes boolean masks over numpy column arrays.

SQL semantics: a comparison with a null value selects nobody (``!=`` too); ``BETWEEN`` is inclusive; relative dates
count back from the store's reference date (``-30d`` days, ``-2w`` weeks, ``-6m`` calendar months, ``-1y``
calendar years); date comparisons are by day, and a date ``BETWEEN`` accepts its bounds in either order.
``CONTAINS``, enum, string and function tag matches ignore case. Functions select customers with a matching row:
``products_purchased(tag:, id:, date:)`` a purchase of a product with that tag / id on or after ``date``;
``email_opened(date:)`` an opened email on or after ``date``; ``= false`` / ``!= true`` select the others.

>>> ex = SegmentExecutor(build_store(seed=0, n_customers=200))
>>> sorted(ex.run("customer_tags CONTAINS 'vip'")) == sorted(
...     ex.store.customers.loc[ex.store.customers.customer_tags.map(lambda t: "vip" in t), "customer_id"])
True
"""

from __future__ import annotations

import calendar
import datetime as dt
import operator
from functools import lru_cache

import numpy as np

from ..base import DomainError
from .catalog import Catalog, load_catalog
from .language import And, Between, Comparison, Contains, Function, IsNull, Node, Or, RelDate, String, Value, parse
from .store import Store, build_store  # noqa: F401  (build_store: doctest)
from .validator import check

__all__ = ["SegmentExecutor", "resolve_date"]

_OPS = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_EPOCH = dt.date(1970, 1, 1)


def resolve_date(v: Value, reference: dt.date) -> int:
    """A date value as days since 1970-01-01 (relative dates count back from ``reference``)."""
    if isinstance(v, String):
        return (dt.date.fromisoformat(v.value) - _EPOCH).days
    if not isinstance(v, RelDate):
        raise DomainError(f"not a date: {v!r}")
    try:
        if v.unit in ("d", "w"):
            day = reference - dt.timedelta(days=v.amount * (7 if v.unit == "w" else 1))
        else:
            months = reference.year * 12 + reference.month - 1 - v.amount * (12 if v.unit == "y" else 1)
            y, m = divmod(months, 12)
            day = dt.date(y, m + 1, min(reference.day, calendar.monthrange(y, m + 1)[1]))
    except (ValueError, OverflowError):
        raise DomainError(f"relative date -{v.amount}{v.unit} is out of range") from None
    return (day - _EPOCH).days


def _day_numbers(series) -> np.ndarray:
    """datetime column -> float days since epoch, NaN for NaT."""
    vals = series.to_numpy(dtype="datetime64[D]")
    out = vals.astype("int64").astype(float)
    out[np.isnat(vals)] = np.nan
    return out


class SegmentExecutor:
    """Compiled column arrays of one store; ``run(query)`` returns the frozenset of selected customer ids."""

    def __init__(self, store: Store, catalog: Catalog | None = None):
        self.store = store
        self.catalog = catalog or load_catalog()
        self.reference_ = store.reference_date.date()
        cust = store.customers
        self.ids_ = cust["customer_id"].to_numpy()
        self.n_ = len(cust)
        pos = {int(c): i for i, c in enumerate(self.ids_)}
        self.columns_: dict[str, tuple[str, np.ndarray]] = {}
        self.lists_: dict[str, dict[str, np.ndarray]] = {}
        for name, spec in self.catalog.attributes.items():
            if name not in cust:
                raise DomainError(f"store lacks a column for catalog attribute {name!r}")
            t, col = spec["type"], cust[name]
            if t == "date":
                self.columns_[name] = ("num", _day_numbers(col))
            elif t in ("money", "count"):
                self.columns_[name] = ("num", col.to_numpy(dtype=float))
            elif t == "bool":
                self.columns_[name] = ("bool", col.to_numpy(dtype=bool))
            elif t == "list":
                index: dict[str, np.ndarray] = {}
                for i, items in enumerate(col):
                    for it in items:
                        index.setdefault(str(it).lower(), np.zeros(self.n_, bool))[i] = True
                self.lists_[name] = index
            else:
                vals = col.to_numpy(dtype=object)
                low = np.array([None if v is None or v != v else str(v).lower() for v in vals], dtype=object)
                self.columns_[name] = ("str", low)
        p = store.purchases
        self.purchase_cust_ = p["customer_id"].map(pos).to_numpy(dtype=int)
        self.purchase_day_ = _day_numbers(p["order_date"])
        self.purchase_pid_ = p["product_id"].to_numpy(dtype=int)
        tags = p["product_tag"].astype(str).str.lower().to_numpy(dtype=object)
        self.purchase_tag_rows_ = {t: np.flatnonzero(tags == t) for t in np.unique(tags)}
        self.open_cust_ = store.email_opens["customer_id"].map(pos).to_numpy(dtype=int)
        self.open_day_ = _day_numbers(store.email_opens["opened_date"])
        self._run_cached = lru_cache(maxsize=20_000)(self._run)

    # -------------------------------------------------------------- public
    def run(self, query: str | Node) -> frozenset:
        """Ids of the customers a query selects; raises :class:`DomainError` when it is invalid."""
        if isinstance(query, str):
            return self._run_cached(query)
        return frozenset(self.ids_[self.mask(check(query, self.catalog))].tolist())

    def mask(self, node: Node) -> np.ndarray:
        """Boolean mask over customers for a validated AST."""
        if isinstance(node, And):
            out = self.mask(node.items[0]).copy()
            for c in node.items[1:]:
                out &= self.mask(c)
            return out
        if isinstance(node, Or):
            out = self.mask(node.items[0]).copy()
            for c in node.items[1:]:
                out |= self.mask(c)
            return out
        if isinstance(node.subject, Function):
            return self._function(node)
        name = node.subject.name
        if isinstance(node, Contains):
            hit = self.lists_[name].get(str(node.value.value).lower())
            hit = np.zeros(self.n_, bool) if hit is None else hit
            return ~hit if node.negated else hit.copy()
        kind, arr = self.columns_[name]
        if isinstance(node, IsNull):
            if kind == "num":
                null = np.isnan(arr)
            else:
                null = (arr == None) if kind == "str" else np.zeros(self.n_, bool)  # noqa: E711
            return ~null if node.negated else null
        if kind == "num":
            date = self.catalog.attributes[name]["type"] == "date"
            conv = (lambda v: resolve_date(v, self.reference_)) if date else (lambda v: float(v.value))
            with np.errstate(invalid="ignore"):
                if isinstance(node, Between):
                    lo, hi = conv(node.low), conv(node.high)
                    lo, hi = (min(lo, hi), max(lo, hi)) if date else (lo, hi)
                    return (arr >= lo) & (arr <= hi)
                v = conv(node.value)
                return ~np.isnan(arr) & _OPS[node.op](arr, v)
        if kind == "bool":
            return _OPS[node.op](arr, bool(node.value.value))
        v = str(node.value.value).lower()
        eq = arr == v
        return eq if node.op == "=" else (arr != None) & ~eq  # noqa: E711

    # -------------------------------------------------------------- internals
    def _run(self, text: str) -> frozenset:
        node = check(parse(text), self.catalog, text=text)
        return frozenset(self.ids_[self.mask(node)].tolist())

    def _function(self, node: Comparison) -> np.ndarray:
        subj = node.subject
        args = dict(subj.args)
        since = resolve_date(args["date"], self.reference_) if "date" in args else None
        if subj.name == "products_purchased":
            if "tag" in args:
                rows = self.purchase_tag_rows_.get(str(args["tag"].value).lower(), np.zeros(0, int))
            else:
                rows = np.arange(len(self.purchase_cust_))
            if "id" in args:
                rows = rows[self.purchase_pid_[rows] == int(args["id"].value)]
            if since is not None:
                rows = rows[self.purchase_day_[rows] >= since]
            cust = self.purchase_cust_[rows]
        elif subj.name == "email_opened":
            cust = self.open_cust_ if since is None else self.open_cust_[self.open_day_ >= since]
        else:
            raise DomainError(f"no executor for function {subj.name!r}")
        hit = np.zeros(self.n_, bool)
        hit[cust] = True
        want = bool(node.value.value) if node.op == "=" else not bool(node.value.value)
        return hit if want else ~hit

