"""Choosing the consensus gate from out-of-fold verdicts (01_calibrate) and applying it (03_resolve).

Two decisions, both made on the seed's out-of-fold verdicts and recorded in ``panel.json``:

1. **Which reasoning check** the unanimous gate uses (:func:`reasoning_checks`, :func:`choose_reasoning`): equal
   reason keys when the seed carries them; otherwise the check among ``evidence`` and ``rationale`` whose accepted
   labels are most precise. A gate that accepts nothing is a loud warning, never a silent 0%.
2. **Which strategy** (:func:`choose_strategy`): with ``target_precision = 0`` the seed's rule, unanimous on
   decision and reasoning. With a target, the ladder from strictest to loosest (unanimous with the reasoning check,
   unanimous on the category only, k-of-n with all judges but one, majority) is walked and the first strategy whose
   out-of-fold precision meets the target at a coverage of at least ``min_coverage`` is chosen; when none does, it
   says so and keeps the strictest.

:func:`gate_for_resolve` turns the record (or a strategy the recipe names) into the fitted-ready strategy.

>>> ladder = pd.DataFrame({"strategy": ["unanimous", "majority"], "precision": [float("nan"), 0.9],
...                        "coverage": [0.0, 0.6], "accepted": [0, 60]})
>>> choose_strategy(ladder, target_precision=0.85)["strategy"]
'majority'
>>> choose_strategy(ladder, target_precision=0.95)["met"]
False
"""

from __future__ import annotations

import json
import warnings

import pandas as pd

from .consensus import Unanimous, make_strategy, precision_coverage
from .consensus.unanimous import REASONING_CHECKS

__all__ = ["REASONING_CHECKS", "GateWarning", "seed_has_reasons", "reasoning_checks", "choose_reasoning",
           "strategy_ladder", "choose_strategy", "gate_record", "gate_for_resolve"]


class GateWarning(UserWarning):
    """The chosen gate accepts nothing, or no strategy meets the precision target."""


def seed_has_reasons(seed_items: pd.DataFrame, *, min_share: float = 0.5) -> bool:
    """True when at least ``min_share`` of the seed rows carry a non-empty ``reason_key``."""
    if "reason_key" not in seed_items.columns or not len(seed_items):
        return False
    filled = seed_items["reason_key"].map(lambda x: isinstance(x, str) and bool(x.strip()))
    return bool(filled.mean() >= min_share)


def reasoning_checks(verdicts: pd.DataFrame, gold: pd.Series, *, judges: list[str], labels: list[str],
                     rationale_similarity: float = 0.0, embedder=None) -> pd.DataFrame:
    """Precision and coverage of the unanimous gate under each reasoning check, on (out-of-fold) verdicts.

    Columns of :func:`~flywheel_lib.curation.consensus.precision_coverage` with ``strategy`` = the check's name.
    The ``rationale`` check embeds every rationale with the MiniLM transformer (minutes on two busy cores), so it is
    measured only when ``rationale_similarity > 0`` asks for it.
    """
    v = verdicts[verdicts["judge"].isin(judges)]
    strategies = {}
    for check in REASONING_CHECKS:
        if check == "rationale" and not rationale_similarity:
            continue
        strategies[check] = Unanimous(reasoning=check, rationale_similarity=rationale_similarity, embedder=embedder,
                                      judges=judges, labels=labels).fit(v)
    return precision_coverage(strategies, gold)


def choose_reasoning(table: pd.DataFrame, *, has_reasons: bool) -> dict:
    """The reasoning check the gate uses: ``reason_key`` when the seed has reason keys, else the more precise of
    ``evidence`` and ``rationale`` among those that accept anything (ties: ``evidence``). ``warning`` is set (and a
    :class:`GateWarning` raised as a warning) when the chosen check accepts nothing."""
    rows = table.set_index("strategy")
    if has_reasons:
        check, why = "reason_key", "the seed carries reason keys: the judges' keys are compared"
    else:
        cands = [c for c in ("evidence", "rationale") if c in rows.index and rows.loc[c, "accepted"] > 0]
        if cands:
            check = max(cands, key=lambda c: (rows.loc[c, "precision"], c == "evidence"))
            why = (f"the seed has no reason keys: {check} agreement is the most precise reasoning check "
                   f"the data supports")
        else:
            check, why = "evidence", "the seed has no reason keys and no reasoning check accepts anything"
    prec, cov = (rows.loc[check, "precision"], rows.loc[check, "coverage"]) if check in rows.index else (None, 0.0)
    out = {"reasoning": check, "why": why, "precision": None if pd.isna(prec) else float(prec),
           "coverage": float(cov), "warning": ""}
    if not out["coverage"]:
        out["warning"] = (f"GATE ACCEPTS NOTHING: unanimous with the {check!r} reasoning check accepts 0 of "
                          f"{int(rows['n'].max()) if len(rows) else 0} out-of-fold seed items; every item would go to "
                          f"review. Consider target_precision or a different panel.")
        warnings.warn(out["warning"], GateWarning, stacklevel=2)
    return out


def strategy_ladder(n_judges: int, *, reasoning: str, rationale_similarity: float = 0.0) -> list[tuple[str, str, dict]]:
    """``(label, strategy name, params)`` from strictest to loosest."""
    ladder = [(f"unanimous[{reasoning}]", "unanimous",
               {"reasoning": reasoning, "rationale_similarity": rationale_similarity}),
              ("unanimous_category_only", "k_of_n", {"k": n_judges})]
    if n_judges > 2:
        ladder.append((f"k_of_n_{n_judges - 1}", "k_of_n", {"k": n_judges - 1}))
    ladder.append(("majority", "majority", {}))
    return ladder


def ladder_table(verdicts: pd.DataFrame, gold: pd.Series, *, judges: list[str], labels: list[str], reasoning: str,
                 rationale_similarity: float = 0.0, embedder=None) -> pd.DataFrame:
    """Precision/coverage of every rung of :func:`strategy_ladder` (columns of ``precision_coverage`` plus
    ``name`` and ``params``), strictest first."""
    v = verdicts[verdicts["judge"].isin(judges)]
    fitted, meta = {}, {}
    for label, name, params in strategy_ladder(len(judges), reasoning=reasoning,
                                               rationale_similarity=rationale_similarity):
        extra = {"embedder": embedder} if name == "unanimous" else {}
        fitted[label] = make_strategy(name, judges=judges, labels=labels, **params, **extra).fit(v)
        meta[label] = (name, params)
    out = precision_coverage(fitted, gold)
    out["name"] = [meta[s][0] for s in out["strategy"]]
    out["params"] = [json.dumps(meta[s][1], sort_keys=True) for s in out["strategy"]]
    return out


def choose_strategy(ladder: pd.DataFrame, *, target_precision: float, min_coverage: float = 0.0) -> dict:
    """With ``target_precision = 0``: the strictest rung (the seed's rule). Else the first rung, strictest first,
    whose precision meets the target and whose coverage is above zero and at least ``min_coverage``; when none
    does, the strictest rung with ``met = False`` and a warning (never a pretended pass)."""
    rows = ladder.reset_index(drop=True)
    if not len(rows):
        raise ValueError("choose_strategy: empty strategy ladder")

    def pick(i, met, why):
        r = rows.iloc[i]
        return {"strategy": str(r["strategy"]), "name": str(r.get("name", r["strategy"])),
                "params": json.loads(r["params"]) if "params" in r and isinstance(r["params"], str) else {},
                "precision": None if pd.isna(r["precision"]) else float(r["precision"]),
                "coverage": float(r["coverage"]), "target_precision": float(target_precision),
                "min_coverage": float(min_coverage), "met": met, "why": why}

    if not target_precision:
        return pick(0, None, "the seed's rule: unanimous on decision and reasoning (no target_precision)")
    for i, r in rows.iterrows():
        if r["accepted"] > 0 and r["coverage"] >= min_coverage and r["precision"] >= target_precision:
            return pick(i, True, f"the strictest strategy whose out-of-fold precision {r['precision']:.3f} meets "
                                 f"the target {target_precision} (coverage {r['coverage']:.3f})")
    msg = (f"NO STRATEGY MEETS target_precision {target_precision} at coverage >= {min_coverage} on the out-of-fold "
           f"verdicts (best precision {rows['precision'].max():.3f}); keeping the strictest, {rows.iloc[0]['strategy']}")
    warnings.warn(msg, GateWarning, stacklevel=2)
    return pick(0, False, msg)


def gate_record(reasoning: dict, choice: dict, ladder: pd.DataFrame, checks: pd.DataFrame) -> dict:
    """The ``gate`` entry of ``panel.json``."""
    def rows(df):
        return [{k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}
                for r in df[["strategy", "accepted", "coverage", "precision"]].to_dict("records")]
    return {"reasoning": reasoning, "choice": choice, "ladder": rows(ladder), "reasoning_checks": rows(checks)}


def gate_for_resolve(record: dict, *, strategy: str, judges: list[str], labels: list[str],
                     k_of_n: int = 0, min_posterior: float = 0.0, rationale_similarity: float = 0.0):
    """The consensus strategy 03_resolve uses, unfitted, and a note of what it is and why.

    ``strategy="auto"`` (03's default) takes 01_calibrate's choice in ``panel.json`` (``gate.choice``), or the seed's
    rule (``unanimous``) when 01 recorded none; any other name is the recipe's own choice and wins. A unanimous
    gate takes 01_calibrate's reasoning check either way."""
    gate = record.get("gate") or {}
    named = strategy != "auto"
    if not named:
        strategy = "unanimous"
    reasoning = (gate.get("reasoning") or {}).get("reasoning", "reason_key")
    choice = gate.get("choice")
    opts: dict = {"labels": labels, "judges": judges}
    if named or not choice:
        name, source = strategy, "recipe" if named else "default (no gate choice in panel.json)"
        if name == "unanimous":
            opts.update(rationale_similarity=rationale_similarity, reasoning=reasoning)
        elif name == "k_of_n":
            opts["k"] = k_of_n or max(len(judges) - 1, 1)
        elif name == "dawid_skene":
            opts.update(min_posterior=min_posterior, init_confusion={j: record["confusion"][j] for j in judges
                                                                     if j in record.get("confusion", {})})
    else:
        name, source = choice["name"], "01_calibrate"
        params = dict(choice.get("params") or {})
        if name == "k_of_n" and params.get("k", 0) > len(judges):
            params["k"] = len(judges)
        if name == "unanimous" and not params.get("rationale_similarity"):
            params["rationale_similarity"] = rationale_similarity
        opts.update(params)
    note = {"name": name, "source": source, "chosen_as": choice.get("strategy") if choice else None,
            **{k: v for k, v in opts.items() if k not in ("labels", "init_confusion")}}
    return make_strategy(name, **opts), note
