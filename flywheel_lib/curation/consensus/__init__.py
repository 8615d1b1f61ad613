"""Consensus strategies as estimators: ``fit(verdicts) -> self``, ``labels_``, ``status_``, ``reason_keys_``.

``unanimous`` (decision AND reasoning), ``k_of_n``, ``majority`` and ``dawid_skene``; :func:`make_strategy` builds
one by name from recipe parameters, :func:`precision_coverage` compares them against human labels.
"""

from __future__ import annotations

from .base import ConsensusStrategy
from .dawid_skene import DawidSkene
from .evaluate import precision_coverage
from .k_of_n import KOfN
from .majority import MajorityVote
from .unanimous import Unanimous

__all__ = ["ConsensusStrategy", "DawidSkene", "KOfN", "MajorityVote", "Unanimous", "STRATEGIES", "make_strategy",
           "precision_coverage"]

STRATEGIES = {"unanimous": Unanimous, "k_of_n": KOfN, "majority": MajorityVote, "dawid_skene": DawidSkene}


def make_strategy(name: str, **params) -> ConsensusStrategy:
    """A strategy by name (``unanimous | k_of_n | majority | dawid_skene``) with keyword parameters."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown consensus strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**params)
