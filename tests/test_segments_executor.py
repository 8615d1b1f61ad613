"""Executor, store and domain object of the segments domain."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.domains import get_domain
from flywheel_lib.domains.base import Domain, DomainError
from flywheel_lib.domains.segments import SegmentsDomain
from flywheel_lib.domains.segments.executor import SegmentExecutor, resolve_date
from flywheel_lib.domains.segments.language import RelDate, String
from flywheel_lib.domains.segments.store import Store, build_store

NaT, nan = pd.NaT, float("nan")
D = pd.Timestamp


def tiny_store() -> Store:
    """Four customers, as of 2026-06-30; the expected answers below are read off this table."""
    cols = ["customer_id", "amount_spent", "number_of_orders", "first_order_date", "last_order_date",
            "customer_added_date", "abandoned_checkout_date", "email_subscription_status", "sms_subscription_status",
            "customer_account_status", "predicted_spend_tier", "customer_tags", "customer_cities",
            "customer_countries", "customer_email_domain", "store_credit_balance", "accepts_marketing"]
    rows = [
        (1, 250.00, 3, D("2025-01-10"), D("2026-06-20"), D("2024-12-01"), NaT, "SUBSCRIBED", "NOT_SUBSCRIBED",
         "ENABLED", "HIGH", ("vip",), ("Toronto",), ("CA",), "gmail.com", nan, True),
        (2, 40.00, 1, D("2026-01-15"), D("2026-01-15"), D("2026-01-01"), D("2026-06-25"), "UNSUBSCRIBED",
         "SUBSCRIBED", "ENABLED", "LOW", ("wholesale",), ("New York", "Toronto"), ("US", "CA"), "yahoo.com", 15.0, True),
        (3, 0.00, 0, NaT, NaT, D("2026-05-31"), D("2026-06-01"), "PENDING", "NOT_SUBSCRIBED", "INVITED", "LOW",
         (), ("London",), ("GB",), None, nan, False),
        (4, 99.99, 2, D("2023-03-01"), D("2024-12-31"), D("2023-02-01"), NaT, "NOT_SUBSCRIBED", "UNSUBSCRIBED",
         "DISABLED", "MEDIUM", ("vip", "loyalty"), ("Paris",), ("FR",), "gmail.com", 0.0, False),
    ]
    customers = pd.DataFrame(rows, columns=cols)
    purchases = pd.DataFrame([(11, 1, D("2026-06-20"), 1001, "shoes"), (12, 1, D("2025-01-10"), 1002, "bags"),
                              (21, 2, D("2026-01-15"), 1001, "shoes"), (41, 4, D("2024-12-31"), 1003, "shoes")],
                             columns=["order_id", "customer_id", "order_date", "product_id", "product_tag"])
    orders = purchases[["order_id", "customer_id", "order_date"]].assign(total=1.0)
    opens = pd.DataFrame({"customer_id": [1, 4], "opened_date": [D("2026-06-15"), D("2025-01-01")]})
    return Store(customers, orders, purchases, opens, D("2026-06-30"), 0)


@pytest.fixture(scope="module")
def tiny():
    return SegmentExecutor(tiny_store())


@pytest.mark.parametrize("query, expected", [
    ("amount_spent > 50", {1, 4}),
    ("amount_spent BETWEEN 40 AND 99.99", {2, 4}),
    ("amount_spent >= 40 AND amount_spent <= 99.99", {2, 4}),
    ("number_of_orders = 0", {3}),
    ("last_order_date > -30d", {1}),
    ("last_order_date != '2026-06-20'", {2, 4}),          # a null date is not "different"
    ("last_order_date IS NULL", {3}),
    ("first_order_date < -12m", {1, 4}),                  # before 2025-06-30
    ("customer_added_date = '2026-05-31'", {3}),
    ("customer_added_date = -1m", set()),                 # -1m is 2026-05-30
    ("customer_added_date >= -1m", {3}),
    ("abandoned_checkout_date BETWEEN -1w AND -1d", {2}),
    ("abandoned_checkout_date BETWEEN -1d AND -1w", {2}),  # date bounds in either order
    ("email_subscription_status = SUBSCRIBED", {1}),
    ("email_subscription_status != SUBSCRIBED", {2, 3, 4}),
    ("email_subscription_status = 'PENDING'", {3}),
    ("customer_tags CONTAINS 'VIP'", {1, 4}),
    ("customer_tags NOT CONTAINS 'vip'", {2, 3}),
    ("customer_cities CONTAINS 'toronto'", {1, 2}),
    ("customer_countries NOT CONTAINS 'US'", {1, 3, 4}),
    ("customer_email_domain = 'gmail.com'", {1, 4}),
    ("customer_email_domain != 'gmail.com'", {2}),
    ("customer_email_domain IS NULL", {3}),
    ("store_credit_balance IS NOT NULL", {2, 4}),
    ("store_credit_balance > 0", {2}),
    ("accepts_marketing = false", {3, 4}),
    ("products_purchased(tag: 'shoes') = true", {1, 2, 4}),
    ("products_purchased(tag: 'shoes', date: -6m) = true", {1, 2}),
    ("products_purchased(tag: 'shoes', date: '2026-01-16') = true", {1}),
    ("products_purchased(tag: 'shoes') = false", {3}),
    ("products_purchased(id: 1002) = true", {1}),
    ("products_purchased() = true", {1, 2, 4}),
    ("products_purchased(tag: 'nope') = true", set()),
    ("email_opened(date: -30d) = true", {1}),
    ("email_opened() = true", {1, 4}),
    ("email_opened() != true", {2, 3}),
    ("amount_spent > 50 OR number_of_orders = 0 AND email_subscription_status = PENDING", {1, 3, 4}),
    ("(amount_spent > 50 OR number_of_orders = 0) AND customer_tags CONTAINS 'vip'", {1, 4}),
])
def test_tiny_store_answers(tiny, query, expected):
    assert tiny.run(query) == frozenset(expected)


def test_invalid_queries_raise_domain_errors(tiny):
    for q in ["amount_spent >", "age > 30", "customer_tags = 'vip'"]:
        with pytest.raises(DomainError):
            tiny.run(q)


@pytest.mark.parametrize("ref, value, expected", [
    ("2026-06-30", RelDate(30, "d"), "2026-05-31"),
    ("2026-06-30", RelDate(2, "w"), "2026-06-16"),
    ("2026-03-31", RelDate(1, "m"), "2026-02-28"),
    ("2026-06-30", RelDate(18, "m"), "2024-12-30"),
    ("2024-02-29", RelDate(1, "y"), "2023-02-28"),
    ("2026-06-30", String("2020-01-02"), "2020-01-02"),
])
def test_resolve_date(ref, value, expected):
    days = resolve_date(value, dt.date.fromisoformat(ref))
    assert dt.date(1970, 1, 1) + dt.timedelta(days=days) == dt.date.fromisoformat(expected)


# ---------------------------------------------------------------- the generated store
@pytest.fixture(scope="module")
def dom():
    return SegmentsDomain(store_seed=0, n_customers=3000)


def test_store_is_deterministic():
    from flywheel_lib.domains.segments.catalog import load_catalog

    a = build_store(seed=3, n_customers=3000, catalog=load_catalog())
    b = build_store(seed=3, n_customers=3000, catalog=load_catalog())
    c = build_store(seed=4, n_customers=3000, catalog=load_catalog())
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.purchases, b.purchases)
    assert not a.customers["amount_spent"].equals(c.customers["amount_spent"])


def test_store_is_consistent_and_covers_the_catalog(dom):
    st = dom.store
    cust = st.customers.set_index("customer_id")
    assert len(cust) == 3000 and set(dom.catalog["attributes"]) <= set(cust.columns)
    per = st.orders.groupby("customer_id")["total"].agg(["sum", "count", "min"])
    np.testing.assert_allclose(cust.loc[per.index, "amount_spent"], per["sum"], atol=0.01)
    assert (cust.loc[per.index, "number_of_orders"] == per["count"]).all()
    assert (cust.loc[per.index, "first_order_date"] == st.orders.groupby("customer_id")["order_date"].min()).all()
    assert 0.15 < (cust["number_of_orders"] == 0).mean() < 0.35
    assert (st.orders["order_date"] <= st.reference_date).all()
    for name, spec in dom.catalog["attributes"].items():   # every enum value and listed value occurs
        if spec["type"] == "enum":
            assert set(cust[name]) == set(spec["values"]), name
        if spec["type"] == "list":
            assert set(cust[name].explode().dropna()) == set(spec["values"]), name


def reference(store: Store, query: str) -> frozenset:
    """A few queries answered straight from pandas, independently of the executor."""
    c, ref = store.customers, store.reference_date
    masks = {
        "amount_spent > 100 AND number_of_orders >= 3": (c.amount_spent > 100) & (c.number_of_orders >= 3),
        "last_order_date < -90d": c.last_order_date < ref - pd.Timedelta(days=90),
        "customer_tags CONTAINS 'vip' OR customer_countries CONTAINS 'CA'":
            c.customer_tags.map(lambda t: "vip" in t) | c.customer_countries.map(lambda t: "CA" in t),
        "sms_subscription_status != SUBSCRIBED AND accepts_marketing = true":
            (c.sms_subscription_status != "SUBSCRIBED") & c.accepts_marketing,
        "store_credit_balance BETWEEN 10 AND 30": c.store_credit_balance.between(10, 30),
        "first_order_date BETWEEN '2025-01-01' AND '2025-12-31'":
            c.first_order_date.between(D("2025-01-01"), D("2025-12-31")),
    }
    if query.startswith("products_purchased"):
        p = store.purchases
        hit = p[(p.product_tag == "shoes") & (p.order_date >= ref - pd.Timedelta(days=90))].customer_id
        return frozenset(hit.tolist())
    return frozenset(c.customer_id[masks[query]].tolist())


@pytest.mark.parametrize("query", [
    "amount_spent > 100 AND number_of_orders >= 3", "last_order_date < -90d",
    "customer_tags CONTAINS 'vip' OR customer_countries CONTAINS 'CA'",
    "sms_subscription_status != SUBSCRIBED AND accepts_marketing = true", "store_credit_balance BETWEEN 10 AND 30",
    "first_order_date BETWEEN '2025-01-01' AND '2025-12-31'", "products_purchased(tag: 'shoes', date: -90d) = true",
])
def test_executor_agrees_with_pandas(dom, query):
    got = dom.execute(query)
    assert got == reference(dom.store, query)
    assert 0 < len(got) < 3000


def test_domain_api(dom):
    assert isinstance(dom, Domain) and dom.name == "segments"
    chk = dom.check_output("products_purchased(tag: 'shoes') = true AND amount_spent > 10 AND amount_spent < 99")
    assert chk.valid and chk.error is None and chk.attributes == ("amount_spent", "products_purchased")
    bad = dom.check_output("age > 30 AND amount_spent > 1")
    assert not bad.valid and "column 1" in bad.error and bad.attributes == ("age", "amount_spent")
    assert not dom.check_output("amount_spent >").valid
    assert dom.canonical("amount_spent>100 and customer_tags contains \"vip\"") == \
        "amount_spent > 100 AND customer_tags CONTAINS 'vip'"
    assert dom.same_result("number_of_orders >= 1", "first_order_date IS NOT NULL")
    assert dom.same_result("amount_spent BETWEEN 10 AND 20", "amount_spent >= 10 AND amount_spent <= 20")
    assert not dom.same_result("amount_spent > 10", "amount_spent > 20")
    assert not dom.same_result("amount_spent > 10", "age > 3")
    with pytest.raises(DomainError):
        dom.execute("age > 30")
    assert type(get_domain("segments", n_customers=200)).__name__ == "SegmentsDomain"


def test_generate_delegates_to_the_generator():
    out = SegmentsDomain(n_customers=200).generate(seed=1, n_production=20, n_seed_solvable=5, n_seed_refusal=5,
                                                   n_eval=5, n_conflicts=2)
    assert set(out) == {"production", "seed", "eval"}
    dom = SegmentsDomain(n_customers=200)
    for split in ("seed", "eval"):  # the generator writes gold queries in this language
        for q in out[split]["output"].dropna():
            assert dom.check_output(q).valid, (split, q, dom.check_output(q).error)
