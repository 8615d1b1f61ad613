"""The schema catalog of the segments domain: load ``catalog.yaml`` and look attributes up by name or synonym.

The catalog is data: attribute types and the operators each type allows, enum values, example values of lists,
functions and their argument types, synonyms (phrases a request uses for an attribute), ``unknown_attributes``
(data the store does not hold) and ``other_skills`` (requests that belong to another skill).

>>> cat = load_catalog()
>>> cat.lookup("amount_spent")["type"]
'money'
>>> cat.match_synonyms("customers who spent over 100 and were tagged vip")
('amount_spent', 'customer_tags')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CATALOG_PATH", "Catalog", "load_catalog"]

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
_REQUIRED = ("name", "language", "types", "attributes", "functions", "unknown_attributes", "other_skills")


@dataclass(frozen=True)
class Catalog:
    """A loaded catalog; ``data`` is the YAML as a dict."""

    data: dict[str, Any]
    """The catalog as read from YAML."""
    path: str = ""
    """Where it was read from (for error messages)."""

    @property
    def attributes(self) -> dict[str, dict]:
        return self.data["attributes"]

    @property
    def functions(self) -> dict[str, dict]:
        return self.data["functions"]

    @property
    def types(self) -> dict[str, dict]:
        return self.data["types"]

    @property
    def reference_date(self) -> str:
        """The day relative dates count back from (``'2026-06-30'``)."""
        return str(self.data.get("reference_date", "2026-06-30"))

    def lookup(self, name: str) -> dict | None:
        """The attribute's or function's spec (with ``kind`` = ``attribute`` | ``function``), or None."""
        key = name.lower()
        if key in self.attributes:
            return {"kind": "attribute", "name": key, **self.attributes[key]}
        if key in self.functions:
            return {"kind": "function", "name": key, "type": "bool", **self.functions[key]}
        return None

    def operators(self, type_name: str) -> tuple[str, ...]:
        """Operators the type allows (``BETWEEN``, ``CONTAINS``, ``IS NULL`` ... spelled as in the catalog)."""
        return tuple(self.types[type_name]["operators"])

    def match_synonyms(self, text: str) -> tuple[str, ...]:
        """Sorted attribute/function names whose name or a synonym occurs in ``text`` as whole words."""
        table = {**self.attributes, **self.functions}
        return _match(text, table, lambda k, v: [k, k.replace("_", " "), *v.get("synonyms", [])])

    def match_unknown(self, text: str) -> tuple[str, ...]:
        """Sorted ``unknown_attributes`` keys whose phrases occur in ``text`` (data the store does not hold)."""
        return _match(text, self.data["unknown_attributes"], lambda k, v: list(v))

    def match_other_skill(self, text: str) -> tuple[str, ...]:
        """Sorted ``other_skills`` keys whose phrases occur in ``text`` (a request for another skill)."""
        return _match(text, self.data["other_skills"], lambda k, v: list(v))

    def suggest(self, name: str) -> str | None:
        """The closest attribute or function name to a misspelt or synonym name, or None."""
        import difflib

        key = name.lower()
        hits = self.match_synonyms(key.replace("_", " "))
        if len(hits) == 1:
            return hits[0]
        close = difflib.get_close_matches(key, [*self.attributes, *self.functions], n=1, cutoff=0.6)
        return close[0] if close else None


def _match(text: str, table: dict, phrases) -> tuple[str, ...]:
    low = " " + re.sub(r"[^a-z0-9' ]+", " ", text.lower()) + " "
    out = set()
    for key, spec in table.items():
        for ph in phrases(key, spec):
            ph = re.sub(r"[^a-z0-9' ]+", " ", str(ph).lower()).strip()
            if ph and re.search(rf"(?<![a-z0-9]){re.escape(ph)}(?![a-z0-9])", low):
                out.add(key)
                break
    return tuple(sorted(out))


@lru_cache(maxsize=8)
def _load(path: str) -> Catalog:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"segments catalog not found: {path}") from None
    missing = [k for k in _REQUIRED if k not in (data or {})]
    if missing:
        raise ValueError(f"{path}: catalog lacks section(s) {', '.join(missing)}")
    for name, spec in data["attributes"].items():
        if spec.get("type") not in data["types"]:
            raise ValueError(f"{path}: attribute {name!r} has unknown type {spec.get('type')!r}")
        if spec["type"] == "enum" and not spec.get("values"):
            raise ValueError(f"{path}: enum attribute {name!r} lists no values")
    return Catalog(data, str(path))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load (and cache) the catalog; ``path`` defaults to the bundled ``catalog.yaml``."""
    return _load(str(path or CATALOG_PATH))
