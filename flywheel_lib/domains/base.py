"""The domain Protocol: what a skill's output language must offer the workbench."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pandas as pd

__all__ = ["Domain", "DomainError", "OutputCheck", "output_grammar"]


class DomainError(ValueError):
    """An output cannot be parsed, validated or executed; the message points at the column where it can."""


@dataclass
class OutputCheck:
    """The result of checking one skill output."""

    valid: bool
    """Parses and validates against the schema catalog."""
    error: str | None = None
    """Why not, with the column where the parser stopped."""
    attributes: tuple[str, ...] = ()
    """Catalog attributes and functions the output uses (sorted): the solvable reason key."""


@runtime_checkable
class Domain(Protocol):
    name: str
    catalog: dict[str, Any]

    def check_output(self, output: str) -> OutputCheck:
        """Parse and validate one output."""

    def execute(self, output: str) -> frozenset:
        """Run a valid output; return the ids it selects. Raises :class:`DomainError`."""

    def generate(self, seed: int = 0, **sizes: int) -> dict[str, pd.DataFrame]:
        """Deterministic synthetic data: ``{"production": items, "seed": items, "eval": items}``."""


def output_grammar(domain: Any) -> str | None:
    """The domain's output language as GBNF rules with start rule ``query`` (what parses *and* validates), or None.

    An optional hook: a domain that can describe its outputs as a context-free grammar defines
    ``output_grammar() -> str``; constrained decoding (:mod:`flywheel_lib.evaluation.constrained`) adds the refusal
    line beside it. Domains without the method (user data, ``triagesql``) decode unconstrained.
    """
    fn = getattr(domain, "output_grammar", None)
    return fn() if callable(fn) else None


def traffic_simulator(domain: Any):
    """The domain's traffic simulator, or None (user data: the next cycle's log is a file instead).

    An optional hook: a domain that can simulate its users defines ``traffic_requests(seed=, cycle=, n=,
    schedule=) -> items`` (new requests for a cycle as its drift schedule says, truth columns included),
    ``drift_slice(seed=, upto=, schedule=, n_per_cycle=, exclude=) -> items`` (held-out, truth-labelled instances
    of every drift scenario seen in the traffic so far: the slice a later cycle is scored on) and
    ``plant_requests(rows, seed=, rates=, key=, eligible=) -> rows`` (off-topic, foreign-language and injection
    requests planted at small rates, for the input validators). Stages branch on this hook, never on a domain name.
    """
    return domain if callable(getattr(domain, "traffic_requests", None)) else None
