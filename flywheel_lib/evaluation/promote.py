"""The promotion rule: a candidate replaces the baseline only if it is better where it counts and no worse elsewhere.

The candidate is promoted when

1. its pass rate is higher than the baseline's on the same items, and (by default) significantly so by McNemar's
   test at ``alpha``; and
2. its false-refusal rate does not rise significantly (a higher rate with McNemar p < ``alpha`` blocks promotion),
   unless it stays within ``false_refusal_tolerance``: a product that accepts, say, 10% false refusals in exchange
   for refusing the impossible sets 0.10, and a rise to at most that rate no longer blocks (default 0: any
   significant rise blocks, which against a baseline that never refuses blocks every refusal-aware candidate).

Otherwise the baseline stays, and ``reason`` says which condition failed. The decision is a plain dict, recorded in
the run's manifest with ``st.note("promotion", decision)``.

>>> oc = pd.DataFrame({"item_id": [1, 2, 1, 2], "variant": ["base", "base", "cand", "cand"],
...                    "pass_rate": [0.0, 1.0, 1.0, 1.0], "false_refusal_rate": [0.0, 0.0, 0.0, 0.0]})
>>> decide_promotion(oc, candidate="cand", baseline="base", require_significant=False)["promoted"]
True
"""

from __future__ import annotations

import pandas as pd

from .compare import mcnemar_pair

__all__ = ["decide_promotion"]


def decide_promotion(outcomes: pd.DataFrame, *, candidate: str, baseline: str, alpha: float = 0.05,
                     require_significant: bool = True, false_refusal_tolerance: float = 0.0) -> dict:
    """Promote ``candidate`` over ``baseline``? Returns the decision with its evidence and a reason in words."""
    if not 0.0 <= false_refusal_tolerance < 1.0:
        raise ValueError(f"false_refusal_tolerance must be in [0, 1), got {false_refusal_tolerance}")
    p = mcnemar_pair(outcomes, baseline, candidate, "pass_rate")
    f = mcnemar_pair(outcomes, baseline, candidate, "false_refusal_rate")
    better = p["rate_b"] > p["rate_a"]
    significant = p["p_value"] < alpha
    tolerated = false_refusal_tolerance > 0 and f["rate_b"] <= false_refusal_tolerance
    frr_up = f["rate_b"] > f["rate_a"] and f["p_value"] < alpha and not tolerated
    beats = better and (significant or not require_significant)
    promoted = bool(beats and not frr_up)
    if promoted:
        frr = ("a rise in false refusals within the tolerance of "
               f"{false_refusal_tolerance:.2f}" if tolerated and f["rate_b"] > f["rate_a"] and f["p_value"] < alpha
               else "no significant rise in false refusals")
        reason = (f"{candidate} passes {p['rate_b']:.3f} vs {p['rate_a']:.3f} for {baseline} "
                  f"(McNemar p={p['p_value']:.3g}) with {frr} "
                  f"({f['rate_b']:.3f} vs {f['rate_a']:.3f}, p={f['p_value']:.3g})")
    elif not better:
        reason = (f"{candidate} does not beat {baseline} on pass rate "
                  f"({p['rate_b']:.3f} vs {p['rate_a']:.3f}); the baseline stays")
    elif not beats:
        reason = (f"{candidate} passes more ({p['rate_b']:.3f} vs {p['rate_a']:.3f}) but not significantly "
                  f"(McNemar p={p['p_value']:.3g} >= {alpha}); the baseline stays")
    else:
        reason = (f"{candidate} passes more ({p['rate_b']:.3f} vs {p['rate_a']:.3f}) but its false-refusal rate "
                  f"rises significantly ({f['rate_b']:.3f} vs {f['rate_a']:.3f}, p={f['p_value']:.3g})"
                  + (f" above the tolerance of {false_refusal_tolerance:.2f}" if false_refusal_tolerance else "")
                  + "; the baseline stays")
    return {"promoted": promoted, "candidate": candidate, "baseline": baseline,
            "winner": candidate if promoted else baseline, "reason": reason, "alpha": alpha,
            "require_significant": require_significant, "false_refusal_tolerance": false_refusal_tolerance,
            "pass_rate": {"candidate": p["rate_b"], "baseline": p["rate_a"], "p_value": p["p_value"], "n": p["n"]},
            "false_refusal_rate": {"candidate": f["rate_b"], "baseline": f["rate_a"], "p_value": f["p_value"],
                                   "n": f["n"]}}
