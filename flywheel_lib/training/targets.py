"""What the fine-tuned skill answers, and how an answer is read back: the target template beside its parser.

A solvable request's target is its query, on one line. A refusal (any non-solvable category: refusal or clarify
kinds) is one line a 135M model learns within a few dozen steps, because the first two tokens carry the decision
and the category::

    REFUSE missing_capability: The store does not record occupation. Try: Segment on what the store does know, ...

:func:`parse_answer` turns generated text back into ``(refused, category, output)``. It is lenient about case,
spacing, a leading quote or bullet and trailing text, and strict about the category: a category the taxonomy does
not have is kept as ``refusal_category=None`` (a refusal with no usable category), never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SYSTEM_PROMPT", "REFUSE", "Answer", "refusal_sentence", "format_target", "parse_answer"]

SYSTEM_PROMPT = "Write a customer segment query for the merchant's request, or refuse with REFUSE <category>."
"""The system message of every training example and every evaluation prompt (the same for all variants)."""

REFUSE = "REFUSE"

# One sentence per category for the merchant; {reason} is the gold reason key in words.
_SENTENCES = {
    "needs_context": "I need to know which {reason} you mean first.",
    "missing_capability": "The store does not record {reason}.",
    "wrong_skill": "This is a task for the {reason} skill, not a segment.",
    "ambiguous": "'{reason}' could mean several different segments.",
}
_GENERIC = "This request is {title} ({reason})."


def _words(reason: str | None) -> str:
    if not reason or not isinstance(reason, str):
        return "that"
    return reason.replace("_", " ").replace(",", ", ").strip()


def refusal_sentence(category: str, reason_key: str | None, *, title: str = "") -> str:
    """The sentence for the merchant in a refusal target."""
    tmpl = _SENTENCES.get(category, _GENERIC)
    return tmpl.format(reason=_words(reason_key), title=(title or category.replace("_", " ")).lower())


def format_target(
    label: str,
    output: str | None,
    reason_key: str | None = None,
    *,
    solvable_id: str = "solvable",
    suggestion: str = "",
    title: str = "",
    where: str = "",
) -> str:
    """The assistant's target text for one training row.

    >>> format_target("solvable", "amount_spent > 500")
    'amount_spent > 500'
    >>> format_target("wrong_skill", None, "analytics", suggestion="Ask analytics.")
    'REFUSE wrong_skill: This is a task for the analytics skill, not a segment. Try: Ask analytics.'
    """
    if label == solvable_id:
        if output is None or (isinstance(output, float)) or not str(output).strip():
            raise ValueError(f"{where or 'row'}: a solvable row needs its query in `output`, got {output!r}")
        return " ".join(str(output).split())
    text = f"{REFUSE} {label}: {refusal_sentence(label, reason_key, title=title)}"
    if suggestion:
        text += f" Try: {suggestion.strip()}"
    return text


@dataclass(frozen=True)
class Answer:
    """A generated answer, read back."""

    refused: bool
    """The model refused (the answer starts with REFUSE)."""
    refusal_category: str | None
    """The category it refused with; None for a non-refusal, or a refusal naming no known category."""
    output: str | None
    """The query it wrote (first line, stripped); None for a refusal."""


_REFUSE_RE = re.compile(r"^[\s\"'`*\->]*refuse\b[\s:]*([A-Za-z_]+)?", re.IGNORECASE)


def parse_answer(text: str | None, categories: list[str] | tuple[str, ...] | None = None) -> Answer:
    """Read one generated answer. ``categories`` are the known refusal ids (None accepts any snake_case word).

    >>> parse_answer("REFUSE wrong_skill: Not a segment. Try: analytics")
    Answer(refused=True, refusal_category='wrong_skill', output=None)
    >>> parse_answer("  amount_spent > 100\\nmore text")
    Answer(refused=False, refusal_category=None, output='amount_spent > 100')
    >>> parse_answer("refuse: whatever", ["wrong_skill"])
    Answer(refused=True, refusal_category=None, output=None)
    """
    text = "" if text is None else str(text)
    m = _REFUSE_RE.match(text)
    if m:
        cat = (m.group(1) or "").lower() or None
        if cat is not None and categories is not None and cat not in categories:
            cat = None
        return Answer(True, cat, None)
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return Answer(False, None, first)
