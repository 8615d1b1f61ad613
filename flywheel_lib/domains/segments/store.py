"""A deterministic synthetic customer store for executing segment queries.

``build_store(seed=0, n_customers=3000)`` returns a :class:`Store` of four DataFrames generated as of the catalog's
``reference_date`` (2026-06-30), with values drawn from the catalog's vocabularies (tags, cities, countries,
email domains, product tags), so every attribute of the catalog has data behind it:

customers
    ``customer_id`` (1..n) and one column per catalog attribute. Money in the store's currency (float, NaN = null);
    dates as ``datetime64[ns]`` (NaT = null); enums as uppercase strings; lists as tuples of strings;
    ``customer_email_domain`` a string; ``accepts_marketing`` a bool. ``amount_spent``, ``number_of_orders``,
    ``first_order_date`` and ``last_order_date`` are computed from ``orders``, so they agree with it.
orders
    ``order_id, customer_id, order_date, total``.
purchases
    One row per (order line, product tag): ``order_id, customer_id, order_date, product_id, product_tag``.
email_opens
    ``customer_id, opened_date``: one row per opened marketing email.

Distributions: signups skew recent over five years; about a quarter of customers never ordered; order counts are
negative-binomial, with a loyal 6% ordering about 19 times (the long tail); order totals are log-normal (median
about 55); products are drawn Zipf-like.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .catalog import Catalog, load_catalog

__all__ = ["Store", "build_store"]

HISTORY_DAYS = 5 * 365
CITY_COUNTRY = {"New York": "US", "Los Angeles": "US", "Chicago": "US", "Austin": "US", "Seattle": "US",
                "Toronto": "CA", "Vancouver": "CA", "Montreal": "CA", "Ottawa": "CA", "London": "GB",
                "Manchester": "GB", "Sydney": "AU", "Melbourne": "AU", "Berlin": "DE", "Paris": "FR"}
TAG_RATES = {"wholesale": 0.04, "loyalty": 0.12, "influencer": 0.02, "staff": 0.01,
             "b2b": 0.03, "local": 0.10, "high-risk": 0.02}


@dataclass(frozen=True)
class Store:
    """The generated store."""

    customers: pd.DataFrame
    """One row per customer (see the module docstring)."""
    orders: pd.DataFrame
    """One row per order."""
    purchases: pd.DataFrame
    """One row per (order line, product tag)."""
    email_opens: pd.DataFrame
    """One row per opened email."""
    reference_date: pd.Timestamp
    """The day the store is generated as of; relative dates count back from it."""
    seed: int
    """The seed it was generated with."""


def _pick(rng, values, probs, n):
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=np.asarray(probs) / np.sum(probs))]


def _days(ref: pd.Timestamp, ago: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ref.to_datetime64() - ago.astype("timedelta64[D]"))


def build_store(*, seed: int = 0, n_customers: int = 3000, catalog: Catalog | None = None) -> Store:
    """Generate the store (cached for the bundled catalog)."""
    if catalog is None:
        return _cached(seed, n_customers)
    return _build(seed, n_customers, catalog)


@lru_cache(maxsize=4)
def _cached(seed: int, n: int) -> Store:
    return _build(seed, n, load_catalog())


def _build(seed: int, n: int, cat: Catalog) -> Store:
    rng = np.random.default_rng(seed)
    ref = pd.Timestamp(cat.reference_date)
    attrs, fn = cat.attributes, cat.functions["products_purchased"]
    ids = np.arange(1, n + 1)
    added_ago = np.floor(rng.beta(1.0, 1.6, n) * HISTORY_DAYS).astype(int)

    # orders: ~25% never ordered; the rest 1 + negative binomial, dates between signup and the reference date
    # (a loyal 6% order far more often: the long tail that thresholds like "more than 20 orders" need)
    loyal = rng.random(n) < 0.06
    n_orders = np.where(loyal, 1 + rng.negative_binomial(2, 0.1, n), 1 + rng.negative_binomial(1, 0.35, n))
    n_orders = np.where(~loyal & (rng.random(n) < 0.27), 0, n_orders).clip(0, 120)
    cust_idx = np.repeat(np.arange(n), n_orders)
    order_ago = np.floor(rng.random(len(cust_idx)) * (added_ago[cust_idx] + 1)).astype(int)
    totals = np.round(np.exp(rng.normal(4.0, 0.75, len(cust_idx))), 2)
    order_ids = np.arange(1, len(cust_idx) + 1) + 100_000
    orders = pd.DataFrame({"order_id": order_ids, "customer_id": ids[cust_idx],
                           "order_date": _days(ref, order_ago), "total": totals})

    # products with 1-3 tags each, lines drawn Zipf-like
    lo, hi = fn["values"]["id"]
    product_ids = np.arange(lo, hi + 1)
    ptags = [str(t) for t in fn["values"]["tag"]]
    prod_tags = {int(p): tuple(rng.choice(ptags, size=rng.integers(1, 4), replace=False)) for p in product_ids}
    weights = 1.0 / np.arange(1, len(product_ids) + 1) ** 0.8
    n_lines = 1 + rng.poisson(0.6, len(cust_idx))
    line_order = np.repeat(np.arange(len(cust_idx)), n_lines)
    line_prod = product_ids[rng.choice(len(product_ids), size=len(line_order), p=weights / weights.sum())]
    lines = pd.DataFrame({"order_id": order_ids[line_order], "customer_id": ids[cust_idx[line_order]],
                          "order_date": orders["order_date"].to_numpy()[line_order], "product_id": line_prod})
    lines = lines.drop_duplicates(["order_id", "product_id"])
    lines["product_tag"] = lines["product_id"].map(prod_tags)
    purchases = lines.explode("product_tag", ignore_index=True)

    # attributes derived from orders
    spent = np.bincount(cust_idx, weights=totals, minlength=n).round(2)
    first_ago = np.full(n, np.nan)
    last_ago = np.full(n, np.nan)
    if len(cust_idx):
        np.fmax.at(first_ago, cust_idx, order_ago)
        np.fmin.at(last_ago, cust_idx, order_ago)

    def dates_or_nat(ago):
        out = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
        ok = ~np.isnan(ago)
        out[ok] = _days(ref, ago[ok].astype(int))
        return out

    has_abandoned = rng.random(n) < 0.3
    abandoned_ago = np.where(has_abandoned, np.floor(rng.beta(1, 3, n) * (added_ago + 1)), np.nan)
    email = _pick(rng, attrs["email_subscription_status"]["values"], [45, 35, 5, 15], n)
    sms = _pick(rng, attrs["sms_subscription_status"]["values"], [15, 70, 3, 12], n)
    account = _pick(rng, attrs["customer_account_status"]["values"], [55, 25, 15, 5], n)
    score = np.log1p(spent) + rng.normal(0, 0.8, n)
    tier = np.where(score > 5.6, "HIGH", np.where(score > 4.2, "MEDIUM", "LOW")).astype(object)

    cities = list(attrs["customer_cities"]["values"])
    city_w = np.array([CITY_COUNTRY.get(c, "US") == "US" for c in cities]) * 2.0 + 1.0
    city1 = rng.choice(len(cities), size=n, p=city_w / city_w.sum())
    city2 = np.where(rng.random(n) < 0.15, rng.choice(len(cities), size=n), -1)
    vip_cut = np.quantile(spent, 0.92)
    tags_all = []
    tag_draw = {t: rng.random(n) < p for t, p in TAG_RATES.items()}
    newsletter = (email == "SUBSCRIBED") & (rng.random(n) < 0.35)
    for i in range(n):
        tags = []
        if spent[i] >= vip_cut and spent[i] > 0:
            tags.append("vip")
        if n_orders[i] >= 2:
            tags.append("returning" if n_orders[i] < 5 else "repeat-buyer")
        elif n_orders[i] == 1:
            tags.append("first-time")
        if newsletter[i]:
            tags.append("newsletter")
        tags.extend(t for t, d in tag_draw.items() if d[i])
        tags_all.append(tuple(sorted(set(tags))))
    city_lists = [tuple(dict.fromkeys([cities[a]] + ([cities[b]] if b >= 0 else []))) for a, b in zip(city1, city2)]
    countries = [tuple(dict.fromkeys(CITY_COUNTRY.get(c, "US") for c in cl)) for cl in city_lists]
    domains = _pick(rng, attrs["customer_email_domain"]["values"], [40, 12, 14, 8, 14, 4, 8], n)
    credit = np.where(rng.random(n) < 0.12, np.round(np.exp(rng.normal(3.3, 1.0, n)), 2), np.nan)

    customers = pd.DataFrame({
        "customer_id": ids,
        "amount_spent": spent,
        "number_of_orders": n_orders.astype(int),
        "first_order_date": dates_or_nat(first_ago),
        "last_order_date": dates_or_nat(last_ago),
        "customer_added_date": _days(ref, added_ago),
        "abandoned_checkout_date": dates_or_nat(abandoned_ago),
        "email_subscription_status": email,
        "sms_subscription_status": sms,
        "customer_account_status": account,
        "predicted_spend_tier": tier,
        "customer_tags": tags_all,
        "customer_cities": city_lists,
        "customer_countries": countries,
        "customer_email_domain": domains,
        "store_credit_balance": credit,
        "accepts_marketing": ((email == "SUBSCRIBED") | (sms == "SUBSCRIBED")) ^ (rng.random(n) < 0.05),
    })

    # email opens: subscribers open often and recently, others rarely and long ago
    rate = np.where(email == "SUBSCRIBED", 6.0, np.where(email == "UNSUBSCRIBED", 1.0, 0.3))
    n_opens = rng.poisson(rate)
    open_idx = np.repeat(np.arange(n), n_opens)
    span = np.where(email[open_idx] == "SUBSCRIBED", 365, HISTORY_DAYS)
    open_ago = np.minimum(np.floor(rng.random(len(open_idx)) * span), added_ago[open_idx]).astype(int)
    opens = pd.DataFrame({"customer_id": ids[open_idx], "opened_date": _days(ref, open_ago)})
    return Store(customers, orders, purchases, opens, ref, seed)
