"""Data at the door: loading user data sets, scrubbing personal data, and describing the items table.

- :mod:`.ingest`: ``gather_items`` and ``scrub_items``, the 00_data stage's logic;
- :mod:`.loaders`: ``load_items`` (JSONL/CSV/Parquet/datasets folder by a column mapping), ``split_labelled``;
- :mod:`.pii`: ``scrub_text`` / ``scrub_frame`` with typed placeholders, ``span_recall`` against planted spans;
- :mod:`.stats`: class balance, lengths, conflicts, signal rates, zero-result rate.
"""

from .ingest import TRUTH_COLUMNS, gather_from_parent, gather_items, order_columns, scrub_items, split_truth
from .loaders import DataError, load_items, read_any, split_labelled
from .pii import PII_TYPES, find_pii, scrub_frame, scrub_text, span_recall
from .stats import (
    class_balance,
    dedup_report,
    exact_refusal_conflicts,
    length_stats,
    match_key,
    signal_rates,
    zero_result_rate,
)

__all__ = [
    "TRUTH_COLUMNS", "gather_from_parent", "gather_items", "order_columns", "scrub_items", "split_truth",
    "DataError", "load_items", "read_any", "split_labelled",
    "PII_TYPES", "find_pii", "scrub_frame", "scrub_text", "span_recall",
    "class_balance", "dedup_report", "exact_refusal_conflicts", "length_stats", "match_key", "signal_rates",
    "zero_result_rate",
]
