"""Warnings where a recipe cannot do what it seems to: checks on the tables a run makes, said in words.

A recipe can run to the end and still hand the next stage nothing to learn from: a taxonomy class no seed row
carries (no judge can learn it, no kappa measures it), a consensus gate that accepts no item, every solvable
production row opted out because its logged output failed the domain's check (a domain without an executor, or
outputs that are not queries), a curated training set with a class left empty. :func:`recipe_warnings` runs the
checks whose tables it is given and returns one sentence per finding; 01_calibrate and 03_resolve print them and
record them as the manifest note ``warnings`` so the run report shows them.

>>> from flywheel_lib.taxonomy import Taxonomy                                  # doctest: +SKIP
>>> recipe_warnings(tax, seed_items=seed)                                       # doctest: +SKIP
["taxonomy class 'needs_context' (refusal) has no seed rows: ..."]
"""

from __future__ import annotations

import pandas as pd

from ..taxonomy import Taxonomy

__all__ = ["recipe_warnings", "seed_warnings", "gate_warnings", "resolution_warnings", "train_set_warnings"]


def _kind(taxonomy: Taxonomy, cid: str) -> str:
    return next((c.kind for c in taxonomy.categories if c.id == cid), "?")


def seed_warnings(taxonomy: Taxonomy, seed_items: pd.DataFrame) -> list[str]:
    """A taxonomy class with no seed rows (``seed_items``: the seed's ``label`` column)."""
    counts = seed_items["label"].value_counts() if len(seed_items) else pd.Series(dtype=int)
    out = []
    for cid in taxonomy.ids:
        if not counts.get(cid, 0):
            out.append(f"taxonomy class {cid!r} ({_kind(taxonomy, cid)}) has no seed rows: no judge can learn it "
                       f"from the seed, no kappa or precision measures it, and a gate cannot be trusted on it; "
                       f"annotate seed rows of this class or drop it from the taxonomy")
    return out


def gate_warnings(consensus: pd.DataFrame) -> list[str]:
    """A consensus gate that accepts nothing (``consensus``: ``item_id, status``)."""
    if not len(consensus):
        return ["the consensus gate judged no items: no production item was judged, so nothing can be accepted"]
    if not (consensus["status"] == "accepted").any():
        why = consensus["status"].value_counts().to_dict()
        return [f"the consensus gate accepted none of the {len(consensus):,} judged items ({why}): no label "
                f"change can be made; every item goes to review or keeps its logged label. Loosen the strategy "
                f"(k_of_n, majority), or check the panel's judges in 01_calibrate"]
    return []


def resolution_warnings(resolutions: pd.DataFrame) -> list[str]:
    """Every solvable row opted out for an invalid output (``resolutions``: ``rule, action``)."""
    if not len(resolutions):
        return []
    invalid = int((resolutions["rule"] == "solvable_output_invalid").sum())
    kept = int(resolutions["action"].isin(["keep", "replace"]).sum())
    if invalid and not kept:
        return [f"every solvable production row opted out: {invalid:,} rows left under solvable_output_invalid "
                f"(their logged outputs failed the domain's check or were missing) and none was kept or "
                f"replaced, so the curated set learns no answer from production. With a domain that cannot "
                f"execute its outputs, set check_outputs: false to keep solvable rows on their labels"]
    return []


def train_set_warnings(taxonomy: Taxonomy, train_sets: pd.DataFrame, *, variant: str = "curated") -> list[str]:
    """A class of the taxonomy with no rows in the ``variant`` training set (``train_sets``: ``variant, label``)."""
    rows = train_sets[train_sets["variant"] == variant]
    if not len(rows):
        return [f"the {variant} training set is empty: there is nothing to fine-tune on"]
    counts = rows["label"].value_counts()
    out = []
    for cid in taxonomy.ids:
        if counts.get(cid, 0):
            continue
        if cid == taxonomy.solvable_id:
            n_nq = len(train_sets.attrs.get("solvable_without_query", []))
            extra = (f"; {n_nq:,} solvable rows were left out for having no query" if n_nq else "")
            out.append(f"the {variant} training set has 0 answerable rows (class {cid!r}): a model fine-tuned on "
                       f"it only learns to refuse or ask{extra}. The data carries no gold outputs, or every "
                       f"solvable row opted out")
        else:
            out.append(f"the {variant} training set has no rows of class {cid!r} ({_kind(taxonomy, cid)}): a "
                       f"model fine-tuned on it never learns that answer")
    return out


def recipe_warnings(taxonomy: Taxonomy, *, seed_items: pd.DataFrame | None = None,
                    consensus: pd.DataFrame | None = None, resolutions: pd.DataFrame | None = None,
                    train_sets: pd.DataFrame | None = None, variant: str = "curated") -> list[str]:
    """Every check whose table is given, in stage order: seed classes, the gate, the resolutions, the training set.

    Returns one sentence per finding (an empty list when the recipe can do what it seems to)."""
    out: list[str] = []
    if seed_items is not None:
        out += seed_warnings(taxonomy, seed_items)
    if consensus is not None:
        out += gate_warnings(consensus)
    if resolutions is not None:
        out += resolution_warnings(resolutions)
    if train_sets is not None:
        out += train_set_warnings(taxonomy, train_sets, variant=variant)
    return out
