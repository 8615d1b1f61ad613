"""A tiny hand-made seed and item set for the segments taxonomy, readable at a glance.

``toy_seed()``: 30 labelled requests (6 per category) with gold ``reason_key``; ``toy_items()``: 10 unseen
requests with their expected category in ``label`` (2 per category), for tests that need a known answer.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["toy_seed", "toy_items", "SEED_ROWS", "ITEM_ROWS"]

SEED_ROWS = [
    # (text, label, reason_key)
    ("customers who spent more than $500", "solvable", "amount_spent"),
    ("customers with more than 3 orders", "solvable", "number_of_orders"),
    ("subscribers in Canada who ordered in the last 30 days", "solvable", "customer_countries,email_subscription_status,last_order_date"),
    ("customers tagged vip", "solvable", "customer_tags"),
    ("customers who abandoned checkout in the last week", "solvable", "abandoned_checkout_date"),
    ("customers from Toronto with store credit over $20", "solvable", "customer_cities,store_credit_balance"),
    ("customers who bought it", "needs_context", "product"),
    ("people who got the email we sent yesterday", "needs_context", "campaign"),
    ("customers who bought that product", "needs_context", "product"),
    ("shoppers in the collection we discussed", "needs_context", "collection"),
    ("customers above the usual threshold", "needs_context", "threshold"),
    ("everyone who used that discount", "needs_context", "discount"),
    ("customers who are doctors", "missing_capability", "occupation"),
    ("shoppers older than 40", "missing_capability", "age"),
    ("customers with a salary over 100k", "missing_capability", "income"),
    ("female customers in Texas", "missing_capability", "gender"),
    ("customers who are dog owners", "missing_capability", "pets"),
    ("married customers who spent over $100", "missing_capability", "marital_status"),
    ("what were my total sales last month", "wrong_skill", "analytics"),
    ("send an email to my subscribers", "wrong_skill", "email"),
    ("create a discount code for 10% off", "wrong_skill", "discounts"),
    ("which items are out of stock", "wrong_skill", "inventory"),
    ("refund the order from yesterday", "wrong_skill", "orders"),
    ("show me a chart of revenue by week", "wrong_skill", "analytics"),
    ("show me my best customers", "ambiguous", "best_customers"),
    ("customers who are kind of active", "ambiguous", "active"),
    ("recent buyers", "ambiguous", "recent"),
    ("my loyal shoppers", "ambiguous", "loyal"),
    ("big spenders", "ambiguous", "big_spenders"),
    ("engaged customers", "ambiguous", "engaged"),
]

ITEM_ROWS = [
    # (text, expected label, expected reason_key)
    ("customers who spent over $1000", "solvable", "amount_spent"),
    ("customers tagged wholesale with more than 5 orders", "solvable", "customer_tags,number_of_orders"),
    ("customers who bought that product again", "needs_context", "product"),
    ("people who clicked the campaign we discussed", "needs_context", "campaign"),
    ("customers who are teachers", "missing_capability", "occupation"),
    ("customers younger than 25 years old", "missing_capability", "age"),
    ("what is my conversion rate this week", "wrong_skill", "analytics"),
    ("restock the blue hoodies", "wrong_skill", "inventory"),
    ("show me my top customers", "ambiguous", "top_customers"),
    ("my most loyal customers", "ambiguous", "loyal"),
]


def _frame(rows, source: str, prefix: str) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["text", "label", "reason_key"])
    df.insert(0, "item_id", [f"{prefix}{i:03d}" for i in range(len(df))])
    df["source"] = source
    df["workload_id"] = "toy"
    df["timestamp"] = pd.Timestamp("2026-01-01")
    df["output"] = None
    df["context"] = ""
    df["split"] = "fewshot" if source == "seed" else "eval"
    return df


def toy_seed() -> pd.DataFrame:
    """30 labelled seed rows (items contract + ``reason_key``), split ``fewshot``."""
    return _frame(SEED_ROWS, "seed", "s")


def toy_items() -> pd.DataFrame:
    """10 unseen rows (items contract + expected ``label`` and ``reason_key``)."""
    return _frame(ITEM_ROWS, "eval", "i")
