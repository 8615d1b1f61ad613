"""The PII scrubber: hand-checked examples, no false alarms on ordinary requests, recall on planted spans."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib.data.pii import find_pii, scrub_frame, scrub_text, span_recall
from flywheel_lib.domains import get_domain
from flywheel_lib.domains.segments.generator import generate

CASES = [
    ("customers like John Smith", "customers like [NAME]"),
    ("email maria.garcia+shop@example.co.uk about it", "email [EMAIL] about it"),
    ("call (415) 555-0132 or +1 415 555 0132", "call [PHONE] or [PHONE]"),
    ("uk number +44 20 7946 0958 please", "uk number [PHONE] please"),
    ("dial 416.555.0199 now", "dial [PHONE] now"),
    ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("ship to 42 Maple Street, Apt 4 today", "ship to [ADDRESS] today"),
    ("lives at 1600 pennsylvania ave", "lives at [ADDRESS]"),
    ("ask dr. Chen about it", "ask dr. Chen about it"),  # lowercase honorific: not recognised (known limit)
    ("ask Dr. Chen about it", "ask [NAME] about it"),
    ("a customer named Zanele Mbeki", "a customer named [NAME]"),
    ("from sarah johnson, customers in Toronto", "from [NAME], customers in Toronto"),
    ("send the samples to 12 Cedar Court", "send the samples to [ADDRESS]"),  # capitalised: an everyday suffix counts
    ("a customer named Zanele", "a customer named [NAME]"),  # one unknown word after a word for a person
    ("the staff member called Kenji Tanaka", "the staff member called [NAME]"),
]

# Requests that read like an address or a name to a looser pattern but are not personal data.
NOT_PII = [
    # a record id's tail is no house number, and "take place" is no street
    "patient 031-17834 take place",
    "when did the first microbiology test of patient 031-17834 take place in 2105?",
    "how many events take place in 2 days this way",
    "customers who placed 5 orders in the square",
    # a drug (or any thing) that is named or called is not a person
    "what is the price of the drug called Lasix?",
    "patients who were prescribed the drug named Sodium Chloride",
    "count the medications called Heparin Flush",
    "the table named Orders has a column called Status",
    "what was something called Oreo",
]

CLEAN = [
    "customers who spent more than $5000 in the last 90 days",
    "customers who placed at least 10 orders and live in New York",
    "amount_spent BETWEEN 1500 AND 2500",
    "customers who signed up after 2025-01-31 and are tagged vip",
    "customers with 1234567 points",  # 7 digits: not a phone
    "card 4111 1111 1111 1112 failed",  # fails the Luhn check
    "show me customers from Paris who bought shoes",
    "customers who ordered 3 times this way",
    "Grace period customers in Sydney",
]


@pytest.mark.parametrize("text,expected", CASES)
def test_scrub_examples(text, expected):
    assert scrub_text(text)[0] == expected


@pytest.mark.parametrize("text", CLEAN)
def test_no_false_alarms_on_ordinary_text(text):
    assert find_pii(text) == []


@pytest.mark.parametrize("text", NOT_PII)
def test_ids_verbs_and_drug_names_are_kept(text):
    assert scrub_text(text)[0] == text


def test_scrub_frame_reports_types_not_values():
    df = pd.DataFrame({"text": ["mail a@b.com and c@d.org", "call 415-555-0132", "customers in Canada", None]})
    out, report = scrub_frame(df)
    assert out["text"].tolist()[:3] == ["mail [EMAIL] and [EMAIL]", "call [PHONE]", "customers in Canada"]
    assert json.loads(out["pii_found"][0]) == ["EMAIL", "EMAIL"]
    rep = report.set_index("type")
    assert rep.loc["EMAIL", "rows"] == 1 and rep.loc["EMAIL", "spans"] == 2 and rep.loc["PHONE", "spans"] == 1
    assert rep.loc["NAME", "spans"] == 0
    assert "b.com" not in report.to_string()


def test_recall_on_generated_production_and_precision_on_clean_rows():
    data = generate(get_domain("segments").catalog, seed=3, n_production=6000, n_seed_solvable=50,
                    n_seed_refusal=50, n_eval=50, n_conflicts=10, pii_rate=0.1)
    prod = data["production"]
    recall = span_recall(prod["text"], prod["pii_spans"]).set_index("type")
    assert recall["planted"].sum() > 500
    for t in ("EMAIL", "CARD", "PHONE", "ADDRESS"):
        assert recall.loc[t, "recall"] >= 0.95, recall
    assert recall.loc["NAME", "recall"] >= 0.8, recall  # some planted names are not in the name list on purpose
    clean = prod.loc[prod["pii_spans"] == "[]", "text"]
    false_alarms = sum(bool(find_pii(t)) for t in clean)
    assert false_alarms / len(clean) < 0.005
