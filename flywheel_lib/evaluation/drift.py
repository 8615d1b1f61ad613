"""Two slices for a later cycle: the fixed original eval (regression) and the drift slice (what traffic brought).

A later cycle scores the deployed model and the candidate on both: the **original** eval set, the same in every
cycle, and the **drift slice**, held-out instances of every scenario that has appeared in traffic so far, labelled
by the simulator's truth (:meth:`flywheel_lib.domains.segments.SegmentsDomain.drift_slice`). The promotion rule
weighs both: the candidate must beat the deployed model on the drift slice (McNemar at ``alpha``) and be
non-inferior on the original (its pass rate at most ``margin`` below), without a significant rise in false refusals
beyond the tolerance::

    rep = evaluate_slices(gen, drift_items, {"deployed_prev": {}, "curated": {}}, domain=dom, taxonomy=tax)
    decision = decide_promotion_slices(original_outcomes, rep.outcomes, candidate="curated",
                                       baseline="deployed_prev", margin=0.02)
    patterns = scenario_patterns(rep.predictions, drift_items, deployed="deployed_prev", candidate="curated")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .compare import mcnemar_pair
from .generate import score_predictions
from .metrics import item_outcomes, wilson
from .promote import decide_promotion

__all__ = ["SliceReport", "evaluate_slices", "slice_pass_rates", "scenario_table", "scenario_patterns",
           "decide_promotion_slices", "slice_manifest_metrics", "plot_scenarios", "choose_candidate",
           "versus_first_cycle", "significant"]


@dataclass
class SliceReport:
    """What :func:`evaluate_slices` returns for one slice."""

    predictions: pd.DataFrame
    """Scored predictions (the predictions contract), one row per item and variant."""
    outcomes: pd.DataFrame
    """Per-item 0/1 outcomes (:func:`~flywheel_lib.evaluation.metrics.item_outcomes`)."""
    pass_rates: pd.DataFrame
    """``variant, value, lo, hi, k, n``: pass rate with a Wilson interval."""
    by_scenario: pd.DataFrame
    """``variant, scenario_id, pass_rate, k, n``."""
    notes: dict = field(default_factory=dict)
    """Per variant, what its decision head reported (e.g. how many decisions the example store made)."""


def slice_pass_rates(pred: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Pass rate per variant with a Wilson interval: ``variant, value, lo, hi, k, n``."""
    rows = []
    for v, g in pred.groupby("variant", sort=False):
        k, n = int(g["passed"].astype(bool).sum()), len(g)
        val, lo, hi = wilson(k, n, alpha)
        rows.append({"variant": v, "value": val, "lo": lo, "hi": hi, "k": k, "n": n})
    return pd.DataFrame(rows, columns=["variant", "value", "lo", "hi", "k", "n"])


def scenario_table(pred: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Pass rate per variant and scenario (``items`` carries ``item_id, scenario_id``)."""
    t = pred.merge(items[["item_id", "scenario_id"]], on="item_id")
    g = t.groupby(["variant", "scenario_id"], sort=False)["passed"]
    return pd.DataFrame({"pass_rate": g.mean(), "k": g.sum().astype(int), "n": g.size()}).reset_index()


def evaluate_slices(gen, items: pd.DataFrame, variants: dict[str, dict], *, domain, taxonomy, alpha: float = 0.05,
                    **gen_kw) -> SliceReport:
    """Generate and score ``items`` for each of ``variants`` (name -> ``{"variant": adapter to decode with,
    "head": a decision head to decide with instead of the adapter's own}``; ``{}`` decodes the name itself).

    ``gen`` is a :class:`~flywheel_lib.evaluation.VariantGenerator`; ``gen_kw`` go to its ``generate``.
    """
    from ..levers.store_head import consult_store

    refusal_ids = taxonomy.decline_ids
    texts = items["text"].astype(str).tolist()
    preds, notes, gold_cache = [], {}, {}
    for name, spec in variants.items():
        adapter = spec.get("variant", name)
        head = spec.get("head")
        if head is not None:
            with consult_store(gen, adapter, head):
                answers = gen.generate(texts, variant=adapter, **gen_kw)
            notes[name] = head.summary()
        else:
            answers = gen.generate(texts, variant=adapter, **gen_kw)
        preds.append(score_predictions(items, answers, variant=name, domain=domain, refusal_ids=refusal_ids,
                                       solvable_id=taxonomy.solvable_id, gold_cache=gold_cache))
    pred = pd.concat(preds, ignore_index=True)
    return SliceReport(pred, item_outcomes(pred, taxonomy.solvable_id), slice_pass_rates(pred, alpha),
                       scenario_table(pred, items), notes)


def scenario_patterns(pred: pd.DataFrame, items: pd.DataFrame, *, deployed: str, candidate: str,
                      fail_below: float = 0.5) -> pd.DataFrame:
    """Per drift scenario: the deployed model's and the candidate's pass rates and a status: ``fixed`` (the
    deployed model fails it, below ``fail_below``, and the candidate passes it), ``still_failing``, ``held``
    (both pass) or ``broken`` (the candidate fails what the deployed model passed)."""
    t = scenario_table(pred[pred["variant"].isin([deployed, candidate])], items)
    w = t.pivot(index="scenario_id", columns="variant", values="pass_rate")
    n = t[t["variant"] == candidate].set_index("scenario_id")["n"]
    if deployed not in w or candidate not in w:
        raise KeyError(f"scenario_patterns: predictions need variants {deployed!r} and {candidate!r}")
    cyc = items.drop_duplicates("scenario_id").set_index("scenario_id")["scenario_cycle"] \
        if "scenario_cycle" in items else None
    rows = []
    for sid, r in w.iterrows():
        d_ok, c_ok = r[deployed] >= fail_below, r[candidate] >= fail_below
        status = {(False, True): "fixed", (False, False): "still_failing", (True, True): "held",
                  (True, False): "broken"}[(bool(d_ok), bool(c_ok))]
        rows.append({"scenario_id": sid, "cycle": int(cyc[sid]) if cyc is not None else None,
                     "deployed": round(float(r[deployed]), 4), "candidate": round(float(r[candidate]), 4),
                     "n": int(n.get(sid, 0)), "status": status})
    return pd.DataFrame(rows).sort_values(["cycle", "scenario_id"]).reset_index(drop=True)


def decide_promotion_slices(original: pd.DataFrame, drift: pd.DataFrame | None, *, candidate: str, baseline: str,
                            alpha: float = 0.05, margin: float = 0.02, false_refusal_tolerance: float = 0.0) -> dict:
    """The promotion rule of a later cycle, on both slices (per-item outcomes of each).

    Without a drift slice (``None`` or no rows), the first cycle's rule (:func:`decide_promotion`). With one: the
    candidate must pass more drift items than ``baseline`` (McNemar p < ``alpha``), stay within ``margin`` of its pass
    rate on the original eval (non-inferiority), and not raise false refusals there significantly beyond
    ``false_refusal_tolerance``.
    """
    if drift is None or drift.empty:
        return decide_promotion(original, candidate=candidate, baseline=baseline, alpha=alpha,
                                false_refusal_tolerance=false_refusal_tolerance)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    d = mcnemar_pair(drift, baseline, candidate, "pass_rate")
    o = mcnemar_pair(original, baseline, candidate, "pass_rate")
    f = mcnemar_pair(original, baseline, candidate, "false_refusal_rate")
    drift_better = d["diff"] > 0 and d["p_value"] < alpha
    non_inferior = o["diff"] >= -margin
    tolerated = false_refusal_tolerance > 0 and f["rate_b"] <= false_refusal_tolerance
    frr_up = f["rate_b"] > f["rate_a"] and f["p_value"] < alpha and not tolerated
    promoted = bool(drift_better and non_inferior and not frr_up)
    ev = (f"drift slice {d['rate_b']:.3f} vs {d['rate_a']:.3f} (McNemar p={d['p_value']:.3g}); original "
          f"{o['rate_b']:.3f} vs {o['rate_a']:.3f} (diff {o['diff']:+.3f}, margin -{margin:.2f})")
    if promoted:
        reason = f"{candidate} beats {baseline} on the drift slice and holds the original: {ev}"
    elif not drift_better:
        reason = f"{candidate} does not beat {baseline} significantly on the drift slice: {ev}; the baseline stays"
    elif not non_inferior:
        reason = f"{candidate} falls more than {margin:.2f} below {baseline} on the original eval: {ev}; the baseline stays"
    else:
        reason = (f"{candidate}'s false refusals on the original rise significantly ({f['rate_b']:.3f} vs "
                  f"{f['rate_a']:.3f}, p={f['p_value']:.3g}): {ev}; the baseline stays")
    return {"promoted": promoted, "candidate": candidate, "baseline": baseline,
            "winner": candidate if promoted else baseline, "reason": reason, "alpha": alpha, "margin": margin,
            "rule": "drift slice better, original non-inferior",
            "false_refusal_tolerance": false_refusal_tolerance,
            "pass_rate": {"candidate": o["rate_b"], "baseline": o["rate_a"], "p_value": o["p_value"], "n": o["n"]},
            "drift": {"candidate": d["rate_b"], "baseline": d["rate_a"], "p_value": d["p_value"], "n": d["n"],
                      "diff": d["diff"]},
            "false_refusal_rate": {"candidate": f["rate_b"], "baseline": f["rate_a"], "p_value": f["p_value"],
                                   "n": f["n"]}}


def significant(key: str, value) -> float:
    """A figure as the manifest keeps it: p-values (``p_*``) to three significant digits, so a small one stays
    readable (``1.8e-08``, not 0); everything else to six decimals.

    >>> significant("p_drift_candidate_vs_deployed", 1.834e-8), significant("pass_rate_curated_drift", 0.91254321)
    (1.83e-08, 0.912543)
    """
    v = float(value)
    return float(f"{v:.3g}") if key.startswith("p_") else round(v, 6)


def slice_manifest_metrics(original: pd.DataFrame, drift: SliceReport | None, *, candidate: str,
                           deployed: str = "deployed_prev", store: str = "deployed_store",
                           alpha: float = 0.05, newest: set | None = None) -> dict[str, float]:
    """The manifest's two-slice figures: ``pass_rate_<v>_drift`` and ``pass_rate_<v>_original`` (with ``_lo`` and
    ``_hi``), ``diff_/p_drift_candidate_vs_deployed``, ``diff_/p_original_candidate_vs_deployed`` and, with the
    store-consulting variant, ``diff_/p_drift_store_vs_deployed`` and ``store_gap_share`` (the share of the drift
    gap between the deployed model and the candidate that the store closes before any fine-tune). With ``newest``
    (the item ids of the scenarios the cycle before brought, those the store meets in the cycle they first appear),
    the same two differences there: ``diff_drift_new_candidate_vs_deployed``, ``diff_drift_new_store_vs_deployed``
    and ``store_gap_share_new``."""
    out: dict[str, float] = {}
    for v in (deployed, candidate):
        x = original.loc[original["variant"] == v, "pass_rate"].dropna()
        if len(x):
            val, lo, hi = wilson(int(x.sum()), len(x), alpha)
            out.update({f"pass_rate_{v}_original": val, f"pass_rate_{v}_original_lo": lo,
                        f"pass_rate_{v}_original_hi": hi})
    if {deployed, candidate} <= set(original["variant"]):
        o = mcnemar_pair(original, deployed, candidate, "pass_rate")
        out.update(diff_original_candidate_vs_deployed=o["diff"], p_original_candidate_vs_deployed=o["p_value"])
    if drift is None or drift.predictions.empty:
        return out
    for r in drift.pass_rates.itertuples():
        out.update({f"pass_rate_{r.variant}_drift": r.value, f"pass_rate_{r.variant}_drift_lo": r.lo,
                    f"pass_rate_{r.variant}_drift_hi": r.hi})
    names = set(drift.outcomes["variant"])
    if {deployed, candidate} <= names:
        d = mcnemar_pair(drift.outcomes, deployed, candidate, "pass_rate")
        out.update(diff_drift_candidate_vs_deployed=d["diff"], p_drift_candidate_vs_deployed=d["p_value"])
    if {deployed, store} <= names:
        s = mcnemar_pair(drift.outcomes, deployed, store, "pass_rate")
        out.update(diff_drift_store_vs_deployed=s["diff"], p_drift_store_vs_deployed=s["p_value"])
        gap = out.get("diff_drift_candidate_vs_deployed")
        if gap is not None and gap > 0:
            out["store_gap_share"] = round(s["diff"] / gap, 4)
        if newest and {deployed, store, candidate} <= names:
            part = drift.outcomes[drift.outcomes["item_id"].isin(newest)]
            c_new = mcnemar_pair(part, deployed, candidate, "pass_rate")["diff"]
            s_new = mcnemar_pair(part, deployed, store, "pass_rate")["diff"]
            out.update(diff_drift_new_candidate_vs_deployed=c_new, diff_drift_new_store_vs_deployed=s_new)
            if c_new > 0:
                out["store_gap_share_new"] = round(s_new / c_new, 4)
    return out


def plot_scenarios(by_scenario: pd.DataFrame, title: str = "Drift slice: pass rate per scenario"):
    """Grouped bars: each variant's pass rate on each drift scenario."""
    import matplotlib.pyplot as plt

    w = by_scenario.pivot(index="scenario_id", columns="variant", values="pass_rate")
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(w) + 2), 3.6))
    width = 0.8 / max(len(w.columns), 1)
    for i, v in enumerate(w.columns):
        ax.bar([x + i * width for x in range(len(w))], w[v].to_numpy(), width, label=v)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(w))], w.index, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass rate")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def choose_candidate(original: pd.DataFrame, drift: SliceReport | None, candidates: list[str]) -> tuple[str, dict]:
    """Of ``candidates`` (e.g. the model retrained on the grown corpus and the deployed model trained further), the
    one with the higher drift-slice pass rate (the original eval's without a drift slice); the first on a tie.
    Returns the choice and the evidence: ``{"chosen", "by", "pass_rates"}``."""
    have = [c for c in candidates if c in set(original["variant"])]
    if not have:
        raise KeyError(f"choose_candidate: none of {candidates} has predictions")
    if drift is not None and not drift.predictions.empty:
        by, rates = "drift", drift.pass_rates.set_index("variant")["value"]
    else:
        by, rates = "original", original.groupby("variant")["pass_rate"].mean()
    scores = {c: round(float(rates.get(c, float("nan"))), 4) for c in have}
    chosen = max(have, key=lambda c: (scores[c], -have.index(c)))
    return chosen, {"chosen": chosen, "by": by, "pass_rates": scores}


def versus_first_cycle(drift: SliceReport | None, model: str, *, first: str = "first_cycle",
                       deployed: str = "deployed_prev", oracle: str = "oracle") -> dict[str, float]:
    """What the loop gained since its first cycle, on the whole drift slice (every scenario seen so far):
    ``diff_drift_vs_first_cycle`` and ``p_drift_vs_first_cycle`` of ``model`` (the model this cycle deploys) against
    the lineage's first deployed model (``first``; in cycle 2 that is ``deployed``), and with an ``oracle`` scored
    too, ``oracle_gap_closed``: the share of the gap between the first model and the oracle that ``model`` closes."""
    if drift is None or drift.outcomes.empty:
        return {}
    names = set(drift.outcomes["variant"])
    base = first if first in names else deployed
    if model == base or not {base, model} <= names:
        return {}
    d = mcnemar_pair(drift.outcomes, base, model, "pass_rate")
    out = {"diff_drift_vs_first_cycle": d["diff"], "p_drift_vs_first_cycle": d["p_value"]}
    if oracle in names:
        o = mcnemar_pair(drift.outcomes, base, oracle, "pass_rate")
        out["oracle_gap"] = o["diff"]
        if o["diff"] > 0:
            out["oracle_gap_closed"] = round(d["diff"] / o["diff"], 4)
    return out
