"""Surface noise for generated requests: typos, casing, fillers, close paraphrases, and planted personal data.

Used by :mod:`.generator`; every function draws only from the ``random.Random`` it is given, so output is a pure
function of the seed. ``plant_pii`` returns the planted spans (type, start, end, text) as ground truth for the
scrubber's recall test.
"""

from __future__ import annotations

import random

from . import phrasing as P

__all__ = ["noise", "typo", "paraphrase", "plant_pii", "luhn_card"]


def typo(r: random.Random, text: str) -> str:
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not idx:
        return text
    i = r.choice(idx)
    w = words[i]
    j = r.randrange(1, len(w) - 1)
    op = r.randrange(3)
    if op == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif op == 1:
        w = w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def noise(r: random.Random, text: str) -> str:
    if r.random() < 0.14:
        text = typo(r, text)
    if r.random() < 0.12:
        text = r.choice(P.PREFIXES) + text
    if r.random() < 0.30:
        text = text + r.choice(P.SUFFIXES)
    u = r.random()
    if u < 0.45:
        text = text.lower()
    elif u < 0.49:
        text = text.upper()
    elif u < 0.75:
        text = text[:1].upper() + text[1:]
    if r.random() < 0.03:
        text = text.replace(" ", "  ", 1)
    return text


def luhn_card(r: random.Random) -> str:
    digits = [4] + [r.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    sep = r.choice([" ", "-", ""])
    return sep.join(s[k:k + 4] for k in range(0, 16, 4))


def _pii_value(r: random.Random, kind: str) -> str:
    if kind == "EMAIL":
        return f"{r.choice(P.PII_EMAIL_USERS)}{r.choice(['', str(r.randrange(10, 99))])}@" \
               f"{r.choice(['gmail.com', 'example.com', 'shopmail.net', 'yahoo.co.uk'])}"
    if kind == "PHONE":
        a, b, c = r.randrange(201, 989), r.randrange(100, 999), r.randrange(1000, 9999)
        return r.choice([f"({a}) 555-{c}", f"{a}-555-{c}", f"+1 {a} 555 {c}", f"{a}.555.{c}",
                         f"+44 20 {b}{c % 10} {c}", f"{a}555{c}"])
    if kind == "CARD":
        return luhn_card(r)
    if kind == "ADDRESS":
        addr = f"{r.randrange(1, 9999)} {r.choice(P.PII_STREETS)}"
        return addr + r.choice(["", "", f", Apt {r.randrange(1, 40)}", f", Suite {r.randrange(100, 900)}"])
    name = r.choice(P.PII_NAMES)
    return name.lower() if r.random() < 0.25 else name


_PII_TEMPLATES = {
    "EMAIL": ["{t}, my email is {v}", "{t} and cc {v}", "for {v}: {t}", "{t} (send results to {v})"],
    "PHONE": ["{t} - call me at {v}", "{t}, text {v} when done", "{t}; customer phone {v}"],
    "CARD": ["{t}, the customer paid with {v}", "{t} (card {v} was charged twice)", "card {v} - {t}"],
    "ADDRESS": ["{t} near {v}", "{t}, like the one at {v}", "{t} - ship samples to {v}"],
    "NAME": ["{t}, this is for {v}", "{v} asked: {t}", "{t}, including {v}", "{t} like {v}"],
}


def plant_pii(r: random.Random, text: str) -> tuple[str, list[dict]]:
    kinds = [r.choice(sorted(_PII_TEMPLATES))]
    if r.random() < 0.15:
        kinds.append(r.choice(sorted(_PII_TEMPLATES)))
    spans: list[dict] = []
    for kind in kinds:
        value = _pii_value(r, kind)
        template = r.choice(_PII_TEMPLATES[kind])
        before, after = template.split("{v}")
        if "{t}" in before:
            prefix = before.format(t=text)
            spans_shift = 0
            text = prefix + value + after
        else:
            prefix = before
            spans_shift = len(prefix) + len(value) + len(after.split("{t}")[0])
            text = prefix + value + after.format(t=text)
        spans = [{**s, "start": s["start"] + spans_shift, "end": s["end"] + spans_shift} for s in spans]
        spans.append({"type": kind, "start": len(prefix), "end": len(prefix) + len(value), "text": value})
    return text, sorted(spans, key=lambda s: s["start"])


def paraphrase(r: random.Random, text: str) -> str:
    """A close paraphrase: other casing, punctuation, a filler word or a typo."""
    out = text
    for _ in range(5):
        op = r.randrange(4)
        if op == 0:
            out = out.lower() if out != out.lower() else out.capitalize()
        elif op == 1:
            out = out.rstrip("?.! ") + r.choice(["?", ".", " pls", " please", " thanks"])
        elif op == 2:
            out = r.choice(["hey ", "hi, ", "ok so ", "can you do "]) + out
        else:
            out = typo(r, out)
        if out != text:
            return out
    return out + "?"
