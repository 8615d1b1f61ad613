"""Taxonomies as data: categories read from YAML, validated, versioned and rendered into prompts.

A taxonomy file (``params/taxonomy/*.yaml``)::

    name: segments
    version: 1
    description: What the skill does and when it must refuse.
    categories:
      - id: solvable
        kind: solvable          # exactly one category is the solvable one
        title: Solvable
        description: The request maps onto the segment language with the store's attributes.
        rule: Choose this when every condition names an attribute the catalog has.
        reason_key: the attributes the query needs, comma-separated and sorted
        suggestion: ""          # what a refusal suggests instead (refusal kinds)
        examples:
          positive: ["customers who spent over $200"]
          negative: ["customers who are doctors"]

``kind`` is ``solvable`` (answer with a query), ``refusal`` (refuse with a reason and a suggestion) or
``clarify`` (ask the merchant to clarify). The seed document's decision tree reads the kinds, not the ids, so
a taxonomy for another domain (TriageSQL's ``answerable``) plugs in unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .io import text_hash

__all__ = ["Category", "Taxonomy", "TaxonomyError", "load_taxonomy"]

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class TaxonomyError(ValueError):
    """A taxonomy file or a label in the data does not fit the taxonomy."""


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    positive: list[str] = Field(default_factory=list)
    """Requests that belong to the category."""
    negative: list[str] = Field(default_factory=list)
    """Near misses that do not (and belong elsewhere)."""


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    """Stable identifier used in every table (lowercase snake case)."""
    kind: Literal["solvable", "refusal", "clarify"]
    """How the decision tree treats it."""
    title: str = ""
    """Human title for plots and prompts."""
    description: str
    """What the category means."""
    rule: str = ""
    """The decision rule a judge applies."""
    reason_key: str = ""
    """What the canonical reason of a verdict in this category is."""
    suggestion: str = ""
    """For refusals and clarifications: what the merchant is told to try instead."""
    examples: Examples = Field(default_factory=Examples)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"category id {v!r} must be lowercase snake case (a-z, 0-9, _)")
        return v

    @field_validator("description")
    @classmethod
    def _check_description(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("description must not be empty")
        return v.strip()


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int | str = 1
    description: str = ""
    categories: list[Category]
    source: str = ""
    """The file it was read from (set by :func:`load_taxonomy`)."""

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        ids = [c.id for c in self.categories]
        if len(ids) < 2:
            raise ValueError("a taxonomy needs at least two categories")
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate category ids: {', '.join(dup)}")
        solvable = [c.id for c in self.categories if c.kind == "solvable"]
        if len(solvable) != 1:
            raise ValueError(f"exactly one category must have kind: solvable, found {solvable or 'none'}")
        return self

    # --- lookups ---------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.categories]

    @property
    def solvable_id(self) -> str:
        return next(c.id for c in self.categories if c.kind == "solvable")

    @property
    def refusal_ids(self) -> list[str]:
        return [c.id for c in self.categories if c.kind == "refusal"]

    @property
    def clarify_ids(self) -> list[str]:
        return [c.id for c in self.categories if c.kind == "clarify"]

    @property
    def decline_ids(self) -> list[str]:
        """Every category a skill answers without a query (refusals and requests for clarification), in taxonomy
        order: what a ``REFUSE <category>:`` answer may name."""
        return [c for c in self.ids if c != self.solvable_id]

    def __getitem__(self, cid: str) -> Category:
        for c in self.categories:
            if c.id == cid:
                return c
        raise KeyError(f"category {cid!r} is not in taxonomy {self.name!r} (known: {', '.join(self.ids)})")

    def kind_of(self, cid: str) -> str:
        return self[cid].kind

    @property
    def version_id(self) -> str:
        """``<name>@<version>+<hash of the content>``: changes whenever a description, rule or example changes."""
        return f"{self.name}@{self.version}+{self.content_hash()}"

    def content_hash(self) -> str:
        return text_hash(self.model_dump(exclude={"source"}), n=10)

    # --- validation of data ----------------------------------------------------------------------
    def check_labels(self, labels: Iterable, where: str = "", ids: Iterable | None = None, allow_missing: bool = True) -> None:
        """Raise :class:`TaxonomyError` naming the first row whose label is not a category of this taxonomy."""
        known = set(self.ids)
        ids = list(ids) if ids is not None else None
        for i, lab in enumerate(labels):
            if lab is None or (isinstance(lab, float) and pd.isna(lab)):
                if allow_missing:
                    continue
                row = ids[i] if ids else i
                raise TaxonomyError(f"{where}: row {row} has no label")
            if lab not in known:
                row = ids[i] if ids else i
                raise TaxonomyError(
                    f"{where}: row {row} has label {lab!r}, which is not in taxonomy {self.name!r} "
                    f"(known: {', '.join(self.ids)})"
                )

    # --- rendering -------------------------------------------------------------------------------
    def render(self, with_examples: bool = True) -> str:
        """The category definitions as prompt text: id, description, rule, reason key, examples."""
        lines = [self.description.strip(), ""] if self.description else []
        for c in self.categories:
            lines.append(f"- {c.id}: {c.description}")
            if c.rule:
                lines.append(f"  Rule: {c.rule}")
            if c.reason_key:
                lines.append(f"  reason_key: {c.reason_key}")
            if with_examples and c.examples.positive:
                lines.append("  Belongs: " + " | ".join(c.examples.positive[:4]))
            if with_examples and c.examples.negative:
                lines.append("  Does not belong: " + " | ".join(c.examples.negative[:4]))
        return "\n".join(lines)

    def example_items(self) -> pd.DataFrame:
        """The categories' positive examples as labelled rows (``item_id, text, label, reason_key, source``).

        Offline judges fit on them together with the seed's few-shot pool, so editing a category's examples in the
        taxonomy lab changes what every judge learns, just as it changes an LLM judge's prompt.
        """
        rows = [{"item_id": f"taxonomy:{c.id}:{i}", "text": t, "label": c.id, "reason_key": None,
                 "source": "taxonomy", "workload_id": "", "timestamp": None, "output": None, "context": "",
                 "split": "fewshot"}
                for c in self.categories for i, t in enumerate(c.examples.positive)]
        return pd.DataFrame(rows, columns=["item_id", "text", "source", "workload_id", "timestamp", "label", "output",
                                           "context", "split", "reason_key"])

    def edited(self, category: str, field: str, value) -> Taxonomy:
        """A new version with one field of one category changed.

        ``field`` is ``description``, ``rule``, ``reason_key``, ``suggestion``, ``title``, ``examples.positive`` or
        ``examples.negative`` (a list replaces, a string is appended), or ``add_positive`` / ``add_negative``
        (strings or lists appended). The version number goes up by one.
        """
        data = self.model_dump()
        cats = {c["id"]: c for c in data["categories"]}
        if category not in cats:
            raise TaxonomyError(f"no category {category!r} in taxonomy {self.name!r} (known: {', '.join(cats)})")
        c = cats[category]
        if field in ("add_positive", "add_negative", "examples.positive", "examples.negative"):
            key = "positive" if "positive" in field else "negative"
            vals = [value] if isinstance(value, str) else list(value)
            c["examples"][key] = vals if field.startswith("examples.") and not isinstance(value, str) else \
                c["examples"][key] + vals
        elif field in ("description", "rule", "reason_key", "suggestion", "title"):
            c[field] = str(value)
        else:
            raise TaxonomyError(f"cannot edit field {field!r}: use description, rule, reason_key, suggestion, title, "
                                "examples.positive, examples.negative, add_positive or add_negative")
        v = data.get("version", 1)
        data["version"] = v + 1 if isinstance(v, int) else f"{v}.1"
        out = Taxonomy(**data)
        out.source = self.source
        return out

    def save(self, path: str | Path) -> Path:
        """Write the taxonomy as YAML (a new version file for the taxonomy lab)."""
        from .io import atomic_path

        data = self.model_dump(exclude={"source"})
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))
        return Path(path)


def load_taxonomy(path: str | Path) -> Taxonomy:
    """Load and validate a taxonomy YAML file; errors name the file and the offending key."""
    from .io import load_yaml_model

    tax = load_yaml_model(path, Taxonomy, TaxonomyError, "taxonomy file")
    tax.source = str(path)
    return tax
