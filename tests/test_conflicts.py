"""Conflict detection: exact after normalisation, and paraphrases by embedding similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.curation.conflicts import CONFLICT_COLUMNS, find_conflicts

ITEMS = pd.DataFrame(
    [  # item_id  text                                         source        label
        ("p1", "Customers who are DOCTORS?!", "production", "solvable"),
        ("p2", "customers who spent over $500", "production", "solvable"),
        ("p3", "show me my best customers please", "production", "solvable"),
        ("p4", "customers who spent over $500", "production", "solvable"),
        ("s1", "customers who are doctors", "seed", "missing_capability"),
        ("s2", "customers who spent over $500", "seed", "solvable"),  # same text, same label: no conflict
        ("s3", "show me my best customers", "seed", "ambiguous"),
        ("s4", "what were my total sales last month", "seed", "wrong_skill"),
    ],
    columns=["item_id", "text", "source", "label"],
)


def bag_of_words(texts):
    """A real (if crude) embedder: unit bag-of-words vectors, so similarities are readable by hand."""
    vocab = sorted({w for t in texts for w in t.split()})
    m = np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


def test_exact_conflicts_only():
    c = find_conflicts(ITEMS, paraphrases=False)
    assert list(c.columns) == CONFLICT_COLUMNS
    assert c[["item_id", "other_id", "match", "similarity", "other_label"]].values.tolist() == [
        ["p1", "s1", "exact", 1.0, "missing_capability"]]
    assert c.attrs["n_exact"] == 1 and c.attrs["n_embedded"] == 0


def test_paraphrase_conflicts_with_threshold():
    # p3 vs s3: "show me my best customers please" / "show me my best customers": cos = 5 / sqrt(6*5) = 0.913
    c = find_conflicts(ITEMS, similarity_threshold=0.9, embedder=bag_of_words)
    got = c.set_index("item_id")[["other_id", "match"]].to_dict("index")
    assert got == {"p1": {"other_id": "s1", "match": "exact"}, "p3": {"other_id": "s3", "match": "paraphrase"}}
    assert c.set_index("item_id").loc["p3", "similarity"] == pytest.approx(5 / np.sqrt(30), abs=1e-4)
    strict = find_conflicts(ITEMS, similarity_threshold=0.95, embedder=bag_of_words)
    assert strict["item_id"].tolist() == ["p1"]


def test_same_label_twins_are_not_conflicts_and_blocking_prunes():
    c = find_conflicts(ITEMS, similarity_threshold=0.5, embedder=bag_of_words, prefilter=0.99)
    assert "p2" not in set(c["item_id"]) and "p4" not in set(c["item_id"])
    assert c.attrs["n_candidates"] == 0  # nothing lexically that close to a different-label seed row


def test_no_reference_rows():
    c = find_conflicts(ITEMS[ITEMS.source == "production"], embedder=bag_of_words)
    assert c.empty and list(c.columns) == CONFLICT_COLUMNS


@pytest.mark.slow
def test_paraphrase_with_the_real_sentence_encoder():
    items = pd.DataFrame(
        [("p1", "shoppers who are older than forty", "production", "solvable"),
         ("p2", "customers who placed more than 3 orders", "production", "solvable"),
         ("s1", "customers older than 40", "seed", "missing_capability")],
        columns=["item_id", "text", "source", "label"])
    c = find_conflicts(items, similarity_threshold=0.7)
    assert c["item_id"].tolist() == ["p1"] and c["match"].tolist() == ["paraphrase"]
