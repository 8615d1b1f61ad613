"""Domains plug a skill's output language into the workbench.

A domain provides its schema catalog, a checker for the skill's outputs, an executor that scores an output by
what it selects, and a data generator. ``get_domain(name)`` returns the registered one; the bundled domain is
``segments`` (a customer-segment query language); ``triagesql`` carries user data with per-item schemas.
"""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from .base import Domain, DomainError, OutputCheck

__all__ = ["Domain", "DomainError", "OutputCheck", "get_domain", "register_domain", "DOMAINS"]

DOMAINS = Registry("domain", {
    "segments": "flywheel_lib.domains.segments:SegmentsDomain",
    "triagesql": "flywheel_lib.domains.triagesql:TriageSQLDomain",
})


def register_domain(name: str, target: str | Callable[..., Domain]) -> None:
    """Register a domain by ``"module:Class"`` path or factory."""
    DOMAINS.register(name, target)


def get_domain(name: str, **options) -> Domain:
    """The registered domain ``name``, built with ``options``."""
    return DOMAINS.create(name, **options)
