"""Privacy at the door: find and scrub personal data in request text before any later stage sees it.

Careful regular expressions plus a list of common given names and surnames, not presidio: presidio's recognisers
need a spaCy language model, which is a download from a model hub (impossible offline), and its pattern recognisers
alone are no better than these. Each finding is replaced by a typed placeholder:

============  ===============================================================================================
``[EMAIL]``   ``local@domain.tld``
``[CARD]``    13-19 digits in groups (spaces or dashes) that pass the Luhn check
``[PHONE]``   10-15 digits with phone punctuation: ``(415) 555-0132``, ``+1 415 555 0132``, ``+44 20 7946 0958``
``[ADDRESS]`` a house number on its own (not the tail of ``031-17834``), street words and a street suffix
              (``42 Maple Street, Apt 4``); a suffix that is also an everyday word (place, way, court, drive,
              square, lane, terrace ...) only after capitalised street words (``12 Cedar Court``, not ``17834 take
              place``)
``[NAME]``    a known given name followed by a capitalised word or a known surname; an honorific and a name;
              ``named``/``called`` and a person's name: two capitalised words, a known name, or one capitalised
              word after a word for a person (``a customer named Zanele``); never after a word for a thing
              (``a drug called Lasix``, ``the table named Orders``)
============  ===============================================================================================

>>> scrub_text("customers like John Smith, mail jane.doe@example.com or call (415) 555-0132")[0]
'customers like [NAME], mail [EMAIL] or call [PHONE]'

Money (``$5000``), counts, dates and relative dates never match: phones need phone punctuation or 10+ digits,
cards need the Luhn check. Names are the weakest type (a given name used as a word, an unknown name): the tests
measure recall on the generator's planted spans and false positives on clean requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

__all__ = ["PII_TYPES", "Finding", "find_pii", "scrub_text", "scrub_frame", "span_recall"]

PII_TYPES = ("EMAIL", "CARD", "PHONE", "ADDRESS", "NAME")

GIVEN = set("""
aaron abigail adam adrian ahmed aisha alan albert alex alexander alice alicia amanda amber amy ana andrea andrew
angela anita ann anna anne anthony antonio arjun ashley barbara ben benjamin beth betty brandon brenda brian bruce
carlos carmen carol caroline catherine charles charlotte chloe chris christina christine christopher claire cynthia
daniel david deborah debra denise dennis diana diego donald donna dorothy douglas dylan edward elena elizabeth ella
emily emma eric ethan evelyn fatima fernando frances frank gabriel gary george gloria gregory hannah harold harry
heather helen henry hiroshi isabella jack jacob james jamal jane janet jason jennifer jeremy jerry jessica joan joe
john jonathan jose joseph joshua joyce juan judith julia julie justin karen katherine kathleen keith kelly kenji
kenneth kevin kimberly kyle larry laura lauren linda lisa lucas luis madison margaret maria marie marilyn martha
mary matthew megan melissa michael michelle mohammed muhammad nancy natalie nathan nicholas nicole noah olivia
omar pamela patricia patrick paul peter priya rachel raj ralph raymond rebecca richard robert ronald rose ruth
ryan samantha samuel sandra sara sarah scott sean sharon shirley sofia sophia stephanie stephen steven susan
teresa thomas timothy tyler victoria vincent walter wei william yuki zachary zoe
""".split())

SURNAMES = set("""
adams allen anderson baker brown campbell carter chen clark collins cook cooper davis diaz dubois edwards evans
fischer garcia gomez gonzalez green hall harris hernandez hill ito jackson johnson jones khan kim king kowalski lee
lewis li lopez martin martinez miller mitchell moore morgan murphy nelson nguyen noor o'connor parker patel perez
phillips ramirez roberts robinson rodriguez rossi sanchez schmidt scott singh smith tanaka taylor thomas thompson
turner walker wang washington white williams wilson wright young zhang
""".split())

_EMAIL = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d{4}[ -]?){3}\d{1,7}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w$])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{2,4}[ .-]?\d{3,4}(?:[ .-]\d{3,4})?(?![\w])"
    r"|(?<![\w$.-])\d{10,11}(?![\w.])"
)
_STREET = (r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|terrace|"
           r"parkway|pkwy|highway|hwy|square|sq|crescent|cres)")
# Suffixes that are everyday words too ("take place", "this way", "in court"): an address only after capitalised
# street words.
_PLAIN_SUFFIX = {"lane", "drive", "dr", "way", "court", "ct", "place", "pl", "terrace", "square", "sq", "crescent"}
_ADDRESS = re.compile(
    rf"(?<![\w./-])\d{{1,5}}\s+(?:[A-Za-z][A-Za-z'.-]*\s+){{1,3}}{_STREET}\b\.?(?:\s+[NSEW]\b)?"
    r"(?:,?\s+(?:apt|apartment|suite|unit|#)\.?\s*\w+)?",
    re.IGNORECASE,
)
# Words that never name a street: "3 times this way", "5 orders in a row".
_NOT_STREET = set("""a an and any at by each every for from in into less more my of on one or our over per same than
that the their them these this those to under with your times orders order days weeks months years dollars bucks
items customers people shoppers buyers""".split())
_WORD = r"[A-Za-z][A-Za-z'-]+"
_TOKEN = re.compile(_WORD)
_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?")
_NAMED = re.compile(r"(?:\b([A-Za-z]+)\s+)?\b(?:named|called)\s+([A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?)")
# "<person word> named X" names a person even when X is one unknown word; "<thing word> called X" never does.
_PERSON_WORDS = set("""customer customers client clients user users person people patient patients man woman guy
girl boy kid child member members staff employee employees agent rep someone somebody doctor nurse friend buyer
shopper seller owner manager contact student teacher player author artist actor singer driver""".split())
_THING_WORDS = set("""drug drugs medication medications medicine medicines pill pills product products item items
brand brands table tables column columns field fields file files database company companies store stores shop
app apps tool tools song songs film films movie movies show shows book books album albums team teams city cities
town place places street country project feature segment segments list report tag tags category game games
thing something anything dish recipe procedure test tests diagnosis treatment device vaccine hospital""".split())


@dataclass(frozen=True)
class Finding:
    """One piece of personal data found in a text."""

    type: str
    """One of :data:`PII_TYPES`."""
    start: int
    """Start offset in the original text."""
    end: int
    """End offset (exclusive)."""
    text: str
    """The matched text (kept in memory for tests; never written to artifacts)."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _names(text: str) -> Iterable[tuple[int, int]]:
    for m in _HONORIFIC.finditer(text):
        yield m.start(), m.end()
    for m in _NAMED.finditer(text):
        before = (m.group(1) or "").lower()
        if before in _THING_WORDS:
            continue
        words = m.group(2).split()
        known = any(w.lower() in GIVEN or w.lower() in SURNAMES for w in words)
        if len(words) == 2 or known or before in _PERSON_WORDS:
            yield m.start(2), m.end(2)
    toks = list(_TOKEN.finditer(text))
    for a, b in zip(toks, toks[1:]):
        if text[a.end():b.start()] != " ":
            continue
        first, last = a.group(), b.group()
        fl, ll = first.lower(), last.lower()
        if fl not in GIVEN:
            continue
        capitalised = first[0].isupper() and last[0].isupper() and not last.isupper() and not first.isupper()
        if ll in SURNAMES or (capitalised and ll not in GIVEN):
            yield a.start(), b.end()


def find_pii(text: str) -> list[Finding]:
    """Every finding in ``text``, earliest first; overlaps resolved in favour of the earlier-listed type."""
    if not isinstance(text, str) or not text:
        return []
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, s: int, e: int) -> None:
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        found.append(Finding(kind, s, e, text[s:e]))

    for m in _EMAIL.finditer(text):
        add("EMAIL", m.start(), m.end())
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            add("CARD", m.start(), m.end())
    for m in _PHONE.finditer(text):
        if 10 <= len(re.sub(r"\D", "", m.group())) <= 15:
            add("PHONE", m.start(), m.end())
    for m in _ADDRESS.finditer(text):
        head = re.match(rf"\d+\s+((?:[A-Za-z][A-Za-z'.-]*\s+){{1,3}}?)({_STREET})\b", m.group(), re.IGNORECASE)
        words = head.group(1).split()
        if any(w.lower().strip(".") in _NOT_STREET for w in words):
            continue
        if head.group(2).lower() in _PLAIN_SUFFIX and not all(w[0].isupper() for w in words):
            continue
        add("ADDRESS", m.start(), m.end())
    for s, e in _names(text):
        add("NAME", s, e)
    return sorted(found, key=lambda f: f.start)


def scrub_text(text: str) -> tuple[str, list[Finding]]:
    """``text`` with each finding replaced by ``[TYPE]``, and the findings."""
    found = find_pii(text)
    out = text
    for f in sorted(found, key=lambda f: f.start, reverse=True):
        out = out[: f.start] + f"[{f.type}]" + out[f.end:]
    return out, found


def scrub_frame(df: pd.DataFrame, column: str = "text") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scrub one text column of a table.

    Returns the scrubbed copy (plus a ``pii_found`` column: JSON list of the types found per row, never the values)
    and a report with one row per type: ``type, rows, spans``.
    """
    out = df.copy()
    texts, kinds = [], []
    counts = {t: [0, 0] for t in PII_TYPES}
    for text in df[column].tolist():
        new, found = scrub_text(text) if isinstance(text, str) else (text, [])
        texts.append(new)
        types = [f.type for f in found]
        kinds.append(json.dumps(types))
        for t in set(types):
            counts[t][0] += 1
        for t in types:
            counts[t][1] += 1
    out[column] = texts
    out["pii_found"] = kinds
    report = pd.DataFrame([{"type": t, "rows": c[0], "spans": c[1]} for t, c in counts.items()])
    return out, report


def span_recall(texts: Iterable[str], spans: Iterable[str | list]) -> pd.DataFrame:
    """Recall of :func:`find_pii` against planted ground truth: per type, how many planted spans a finding of the
    same type overlaps. ``spans`` are JSON lists of ``{"type", "start", "end"}`` (the generator's ``pii_spans``)."""
    hit = {t: [0, 0] for t in PII_TYPES}
    for text, sp in zip(texts, spans):
        planted = json.loads(sp) if isinstance(sp, str) else list(sp or [])
        if not planted:
            continue
        found = find_pii(text)
        for s in planted:
            hit[s["type"]][1] += 1
            if any(f.type == s["type"] and f.start < s["end"] and s["start"] < f.end for f in found):
                hit[s["type"]][0] += 1
    return pd.DataFrame([{"type": t, "found": h[0], "planted": h[1], "recall": h[0] / h[1] if h[1] else float("nan")}
                         for t, h in hit.items()])
