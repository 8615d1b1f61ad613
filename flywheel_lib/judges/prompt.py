"""The judge prompt and the parser of its answer, side by side.

The prompt is rendered from the taxonomy (definitions, decision rules, reason keys), the domain's schema catalog,
few-shot examples from the seed's pool and the item (with its own schema when ``context`` holds one). The judge
answers one JSON object ``{"category", "reason_key", "rationale"}``; :func:`parse_verdict` reads it back or raises
:class:`ParseError` saying why, which the runner records as an abstention, never a guessed label.

>>> canonical_reason("Amount Spent, number-of-orders", solvable=True)
'amount_spent,number_of_orders'
>>> parse_verdict('```json\\n{"category": "ambiguous", "reason_key": "best customers"}\\n```', ["solvable", "ambiguous"]).reason_key
'best_customers'
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = [
    "SYSTEM_TEMPLATE", "USER_TEMPLATE", "EXAMPLE_TEMPLATE", "ParseError", "Parsed",
    "render_messages", "render_system", "render_examples", "parse_verdict", "canonical_reason", "verdict_schema", "catalog_of",
]

SYSTEM_TEMPLATE = """You label requests sent to an assistant skill. Exactly one category applies.

{taxonomy}

{catalog}
Answer with one JSON object and nothing else:
{{"category": one of {ids}, "reason_key": the category's canonical reason in snake_case, "rationale": one short sentence}}"""

USER_TEMPLATE = """{examples}Request: {text}{context}
Answer:"""

EXAMPLE_TEMPLATE = """Request: {text}
Answer: {answer}

"""


class ParseError(ValueError):
    """A judge's answer cannot be read as a verdict; the message says why."""


@dataclass
class Parsed:
    category: str
    reason_key: str
    rationale: str


def verdict_schema(ids: list[str]) -> dict:
    """JSON schema of a verdict (structured output for OpenAI, the tool input for Anthropic)."""
    return {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": list(ids)},
            "reason_key": {"type": "string"},
            "rationale": {"type": "string"},
        },
        "required": ["category", "reason_key", "rationale"],
        "additionalProperties": False,
    }


@functools.lru_cache(maxsize=8)
def _catalog_file(name: str) -> dict:
    p = Path(__file__).resolve().parents[1] / "domains" / name / "catalog.yaml"
    return yaml.safe_load(p.read_text()) if p.exists() else {}


def catalog_of(domain, taxonomy) -> dict:
    """The schema catalog: the domain's, else the bundled catalog named like the taxonomy, else empty."""
    cat = getattr(domain, "catalog", None)
    if isinstance(cat, dict) and cat:
        return cat
    return _catalog_file(getattr(taxonomy, "name", ""))


@functools.lru_cache(maxsize=16)
def _render_catalog(blob: str) -> str:
    cat = json.loads(blob)
    if not cat:
        return ""
    lines = ["Schema catalog:"]
    for a, spec in (cat.get("attributes") or {}).items():
        lines.append(f"- {a} ({spec.get('type', '')}): {spec.get('description', '')}")
    for f, spec in (cat.get("functions") or {}).items():
        lines.append(f"- {f}(...): {spec.get('description', '')}")
    if cat.get("unknown_attributes"):
        lines.append("Data the store does NOT hold (unknown_attributes): " + ", ".join(cat["unknown_attributes"]))
    if cat.get("other_skills"):
        lines.append("Other skills (other_skills): " + ", ".join(cat["other_skills"]))
    return "\n".join(lines) + "\n"


def _answer_json(category: str, reason_key: str, rationale: str = "") -> str:
    return json.dumps({"category": category, "reason_key": reason_key, "rationale": rationale}, ensure_ascii=False)


def render_system(taxonomy, *, domain=None, with_catalog: bool = True) -> str:
    """The system message: taxonomy definitions and rules, and the schema catalog unless the item brings its own."""
    blob = json.dumps(catalog_of(domain, taxonomy), sort_keys=True, default=str)
    catalog = _render_catalog(blob) if with_catalog else ""
    return SYSTEM_TEMPLATE.format(taxonomy=taxonomy.render(), catalog=catalog, ids=json.dumps(taxonomy.ids))


def render_examples(examples) -> str:
    return "".join(
        EXAMPLE_TEMPLATE.format(text=e["text"], answer=_answer_json(e["label"], str(e.get("reason_key") or "")))
        for e in examples
    )


def render_messages(taxonomy, item: dict, *, examples: list[dict] = (), domain=None,
                    system: str | None = None, examples_text: str | None = None) -> list[dict]:
    """System + user chat messages for one item; ``examples`` are dicts with text, label, reason_key.

    ``system`` and ``examples_text`` may be passed pre-rendered (the same for every item of a run)."""
    context = str(item.get("context") or "").strip()
    if system is None or context:
        system = render_system(taxonomy, domain=domain, with_catalog=not context)
    ex = render_examples(examples) if examples_text is None else examples_text
    ctx = f"\nSchema for this request: {context}" if context else ""
    user = USER_TEMPLATE.format(examples=ex, text=item["text"], context=ctx)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_SNAKE = re.compile(r"[^a-z0-9]+")


def canonical_reason(key, *, solvable: bool = False) -> str:
    """Normalise a reason key: snake_case; for the solvable kind a sorted, comma-separated attribute set."""
    if key is None:
        return ""
    s = str(key).strip().lower()
    if solvable:
        parts = {_SNAKE.sub("_", p).strip("_") for p in re.split(r"[,;/|]| and ", s)}
        return ",".join(sorted(p for p in parts if p))
    return _SNAKE.sub("_", s).strip("_")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_verdict(text: str | dict | None, ids, *, solvable_id: str | None = None, finish_reason: str = "stop") -> Parsed:
    """Read one verdict; raise :class:`ParseError` with the reason when it cannot be read."""
    if isinstance(text, dict):
        obj = text
    else:
        if text is None or not str(text).strip():
            raise ParseError("empty answer" + (" (truncated at max_tokens)" if finish_reason == "length" else ""))
        s = str(text).strip()
        m = _FENCE.search(s)
        if m:
            s = m.group(1).strip()
        start, end = s.find("{"), s.rfind("}")
        if start < 0 or end <= start:
            why = "truncated at max_tokens" if finish_reason == "length" else "no JSON object in the answer"
            raise ParseError(f"{why}: {str(text)[:80]!r}")
        try:
            obj = json.loads(s[start:end + 1])
        except json.JSONDecodeError as e:
            why = "truncated at max_tokens" if finish_reason == "length" else f"malformed JSON ({e.msg})"
            raise ParseError(f"{why}: {str(text)[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ParseError(f"answer is a JSON {type(obj).__name__}, not an object")
    cat = obj.get("category")
    if not isinstance(cat, str) or not cat.strip():
        raise ParseError("answer has no category")
    norm = _SNAKE.sub("_", cat.strip().lower()).strip("_")
    ids = list(ids)
    if norm not in ids:
        raise ParseError(f"category {cat!r} is not one of {', '.join(ids)}")
    rk = canonical_reason(obj.get("reason_key"), solvable=(norm == solvable_id))
    return Parsed(category=norm, reason_key=rk, rationale=str(obj.get("rationale") or "")[:1000])
