"""Conflict resolution: the decision tree of the first seed document, one decision per production item.

"The annotation pipeline decides whether to keep a production label, replace it with an annotated label, ask for
clarification, or opt out entirely. Ambiguous requests are separated first, unsolvable requests become refusal
examples, and solvable requests are checked against the original label."

The tree reads taxonomy *kinds*, not ids, so any taxonomy plugs in (``needs_context`` is a refusal kind in the
segments taxonomy). For each query item (production / traffic rows), in order:

0. ``human_review``: a reviewed decision exists -> it overrides everything (``decided_by = human``).
1. ``no_consensus``: the consensus gate did not accept a label (disagreement, abstention, or not judged) -> ``opt_out``.
2. ``consensus_matches_neither_source``: the item conflicts with a reference row and the accepted label is neither
   the production label nor the reference label -> ``opt_out`` (two sources and the panel all differ).
3. ``ambiguous_first``: the accepted category is a clarify kind -> ``clarify`` (a clarification example).
4. ``unsolvable_to_refusal``: a refusal kind -> ``refusal``, with the category's suggestion of what to try instead.
5. solvable, checked against the original label and output: the logged output is valid (or not checked) ->
   ``keep``; it is invalid and an annotated row with the same request carries a gold output -> ``replace``;
   invalid with nothing to replace it -> ``opt_out`` (``solvable_output_invalid``).

Every row keeps its evidence as JSON: the rule, the consensus (status, category, reason key, votes), the
conflicting source row, the human decision.

**What the gate governs** (``gate_scope``). ``"all"``: the unanimous gate decides every item, so an item the
panel does not agree on (category AND reasoning) is opted out even when nothing says its logged label is wrong;
the gate then also decides which requests enter the training set, and it keeps the easy ones. ``"changes"``: the
gate governs label *changes* only ("we required all judges to agree on both the decision and the reasoning before
accepting any label change"). An item without an accepted consensus keeps its logged label
(``uncontradicted_keeps_production``) when the panel does not unanimously contradict it, that is at least one
judge votes the logged label (abstentions neither support nor contradict; a panel whose every vote is another
category, or that gave no vote, contradicts or says nothing; ``contradiction = "majority"`` or ``"any"`` make
the test stricter: more votes against than for, or a single vote against), it has no conflict with a reference row of another
label (keeping it would resolve the conflict against the annotation without the gate: ``conflict_not_unanimous``),
and its logged output passes the domain's check (invalid ones are replaced by a gold output of the same request
or opted out, as in step 5). Otherwise it is opted out: ``panel_contradicts_production`` (every vote another
category, but no accepted change) or ``no_consensus`` / ``not_judged``. A kept item where some judge voted
another category is marked ``contested`` in its evidence so the review queue can put it before plain
disagreements.
"""

from __future__ import annotations

import json

import pandas as pd

from ..taxonomy import Taxonomy
from ._votes import is_missing

__all__ = ["resolve", "check_outputs", "RESOLUTION_COLUMNS", "GATE_SCOPES", "CONTRADICTIONS"]

GATE_SCOPES = ("all", "changes")
CONTRADICTIONS = ("unanimous", "majority", "any")

RESOLUTION_COLUMNS = ["item_id", "label_before", "label_after", "action", "evidence", "rule", "decided_by",
                      "output_before", "output_after", "suggestion", "conflict_with", "category_kind"]


def _clean(x):
    return None if is_missing(x) else x


def check_outputs(items: pd.DataFrame, domain, *, sources=("production", "traffic")) -> pd.Series | None:
    """``item_id -> valid`` for the logged outputs of ``sources`` rows, each distinct output checked once with
    ``domain.check_output``. ``None`` when there is no domain or it cannot check outputs ("no executor"), so
    :func:`resolve` keeps solvable rows without checking them. Rows without an output are left out."""
    if domain is None:
        return None
    rows = items[items["source"].isin(sources)]
    rows = rows[[not is_missing(o) for o in rows["output"]]] if "output" in rows else rows.iloc[:0]
    cache: dict = {}
    for o in pd.unique(rows["output"]) if len(rows) else []:
        chk = domain.check_output(o)
        if not chk.valid and chk.error and "no executor" in chk.error:
            return None
        cache[o] = bool(chk.valid)
    return pd.Series([cache[o] for o in rows["output"]], index=rows["item_id"].to_numpy(), dtype=bool, name="valid")


def resolve(
    items: pd.DataFrame,
    consensus: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    conflicts: pd.DataFrame | None = None,
    reviewed: pd.DataFrame | None = None,
    output_valid: pd.Series | None = None,
    query_sources=("production", "traffic"),
    reference_sources=("seed",),
    gate_scope: str = "all",
    contradiction: str = "unanimous",
) -> pd.DataFrame:
    """The resolutions table (``item_id, label_before, label_after, action, evidence`` plus ``rule, decided_by,
    output_before, output_after, suggestion, conflict_with, category_kind``) for every query item.

    ``consensus``: the consensus contract (items without a row count as not judged). ``conflicts``: from
    :func:`~flywheel_lib.curation.conflicts.find_conflicts`. ``reviewed``: from
    :func:`~flywheel_lib.curation.review.import_review` (``item_id, human_label, human_output, note``).
    ``output_valid``: ``item_id -> bool`` from checking the logged outputs with the domain. ``gate_scope``:
    ``"all"`` (the gate decides every item) or ``"changes"`` (the gate decides label changes; see the module doc).
    ``contradiction`` (``changes`` only): which votes contradict a logged label, so that it is not kept:
    ``"unanimous"`` every cast vote is another category (the issue's definition), ``"majority"`` more votes for
    other categories than for the logged one, ``"any"`` a single vote for another category.
    """
    from ..data.stats import match_key

    if gate_scope not in GATE_SCOPES:
        raise ValueError(f"resolve: gate_scope {gate_scope!r} is not one of {', '.join(GATE_SCOPES)}")
    if contradiction not in CONTRADICTIONS:
        raise ValueError(f"resolve: contradiction {contradiction!r} is not one of {', '.join(CONTRADICTIONS)}")

    q = items[items["source"].isin(query_sources)]
    cons = consensus.drop_duplicates("item_id").set_index("item_id").to_dict("index") if len(consensus) else {}
    conf = (conflicts.drop_duplicates("item_id").set_index("item_id").to_dict("index")
            if conflicts is not None and len(conflicts) else {})
    rev = (reviewed.drop_duplicates("item_id", keep="last").set_index("item_id").to_dict("index")
           if reviewed is not None and len(reviewed) else {})
    ref = items[items["source"].isin(reference_sources) & (items["label"] == taxonomy.solvable_id)]
    gold_by_text = {}
    for t, o in zip(ref["text"], ref["output"]):
        if not is_missing(o):
            gold_by_text.setdefault(match_key(t), o)
    kinds = {c.id: c.kind for c in taxonomy.categories}
    suggestions = {c.id: c.suggestion for c in taxonomy.categories}
    valid = output_valid.to_dict() if output_valid is not None else {}

    def output_ok(iid, out) -> bool:
        """A kept solvable row's logged query passes the domain's check. With no checker (user data without an
        executor, e.g. TriageSQL) the label stands on its own; with one, a row without a query has nothing to keep."""
        if output_valid is None:
            return True
        return out is not None and bool(valid.get(iid, True))

    def check_solvable(iid, text, out, keep_rule: str, replace_rule: str) -> tuple[str, str, object]:
        """Step 5 for a solvable label: ``(rule, action, output_after)``: keep a logged query that passes, else
        replace it with the seed's gold query for the same request, else opt out."""
        if output_ok(iid, out):
            return keep_rule, "keep", out
        if match_key(text) in gold_by_text:
            return replace_rule, "replace", gold_by_text[match_key(text)]
        return "solvable_output_invalid", "opt_out", None

    rows = []
    for it in q[["item_id", "text", "label", "output"]].itertuples(index=False):
        iid, before, out_before = it.item_id, _clean(it.label), _clean(it.output)
        c = cons.get(iid)
        cf = conf.get(iid)
        ev = {
            "consensus": None if c is None else {k: _clean(c.get(k)) for k in ("status", "category", "reason_key", "detail")}
            | {"votes": json.loads(c["votes"]) if isinstance(c.get("votes"), str) else c.get("votes")},
            "conflict": None if cf is None else {"other_id": cf["other_id"], "other_label": cf["other_label"],
                                                 "match": cf["match"], "similarity": round(float(cf["similarity"]), 4),
                                                 "other_text": cf["other_text"], "other_source": cf["other_source"]},
            "human": None,
        }
        after, out_after, decided_by = None, None, "tree"
        if iid in rev:
            h = rev[iid]
            after, decided_by, rule = h["human_label"], "human", "human_review"
            ev["human"] = {"label": after, "output": _clean(h.get("human_output")), "note": _clean(h.get("note")),
                           "reviewer": _clean(h.get("reviewer"))}
            if kinds.get(after) == "solvable":
                ho = _clean(h.get("human_output"))
                action = "replace" if ho is not None and ho != out_before else "keep"
                out_after = ho if ho is not None else out_before
            else:
                action = "clarify" if kinds.get(after) == "clarify" else "refusal"
        elif (c is None or c["status"] != "accepted") and gate_scope == "changes":
            votes = ev["consensus"]["votes"] if c is not None else None
            cast = [x for x in (votes or {}).values() if not is_missing(x)]
            support = sum(x == before for x in cast)
            ev["panel"] = {"support": support, "against": len(cast) - support, "abstained": len(votes or {}) - len(cast)}
            if c is None:
                rule, action = "not_judged", "opt_out"
            elif not cast:
                rule, action = "no_consensus", "opt_out"
            elif support == 0 or (contradiction == "majority" and len(cast) - support > support) or (
                    contradiction == "any" and len(cast) > support):
                rule, action = "panel_contradicts_production", "opt_out"
            elif cf is not None and cf["other_label"] != before:
                rule, action = "conflict_not_unanimous", "opt_out"
            elif kinds.get(before) != "solvable":
                rule, action, after = "uncontradicted_keeps_production", ("clarify" if kinds.get(before) == "clarify"
                                                                          else "refusal"), before
            else:
                rule, action, out_after = check_solvable(iid, it.text, out_before, "uncontradicted_keeps_production",
                                                         "uncontradicted_output_replaced")
                after = before if action != "opt_out" else None
            ev["contested"] = action != "opt_out" and len(cast) > support
        elif c is None or c["status"] != "accepted":
            rule, action = ("not_judged" if c is None else "no_consensus"), "opt_out"
        else:
            cat = c["category"]
            kind = kinds.get(cat)
            if kind is None:
                raise ValueError(f"resolve: consensus for item {iid!r} has category {cat!r}, which is not in "
                                 f"taxonomy {taxonomy.name!r} (known: {', '.join(kinds)})")
            if cf is not None and cat not in (before, cf["other_label"]):
                rule, action = "consensus_matches_neither_source", "opt_out"
            elif kind == "clarify":
                rule, action, after = "ambiguous_first", "clarify", cat
            elif kind == "refusal":
                rule, action, after = "unsolvable_to_refusal", "refusal", cat
            else:
                rule, action, out_after = check_solvable(iid, it.text, out_before, "solvable_keeps_production",
                                                         "solvable_output_replaced")
                after = cat if action != "opt_out" else None
            if cf is not None and action != "opt_out":
                rule += "+conflict_to_" + ("reference" if after == cf["other_label"] else "production")
        ev["rule"] = rule
        rows.append({
            "item_id": iid, "label_before": before, "label_after": after, "action": action,
            "evidence": json.dumps(ev, default=str), "rule": rule, "decided_by": decided_by,
            "output_before": out_before, "output_after": out_after if action in ("keep", "replace") else None,
            "suggestion": suggestions.get(after, "") if action in ("refusal", "clarify") else "",
            "conflict_with": None if cf is None else cf["other_id"],
            "category_kind": kinds.get(after) if after is not None else None,
        })
    out = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in RESOLUTION_COLUMNS})
    return out
