"""The levers across the cycles of a lineage: arena ratings per cycle, the store's growth, whether gains level off.

Each cycle rates its own models; the deployed model carries its rating into the next cycle as that cycle's anchor
(05 anchors ``deployed_prev`` at the parent's Elo of the model it promoted), so the Elo scale is shared along the
lineage. A model is named by where it was trained (``c<cycle>:<variant>``), so the deployed model of cycle 1 is the
same row in cycle 2's table as ``deployed_prev``.
"""

from __future__ import annotations

import pandas as pd

from ..flywheel.lineage import lineage_chain  # noqa: F401  (re-exported for notebooks)
from ..stage import RunView

__all__ = ["arena_across_cycles", "store_across_cycles", "elo_verdict"]


def _cycle(run: RunView, i: int) -> int:
    return int((run.manifest.get("parent") or {}).get("cycle") or i + 1)


def arena_across_cycles(chain: list) -> pd.DataFrame:
    """Every cycle's ``arena`` ratings: ``cycle, run_id, model, identity, elo, elo_lo, elo_hi, battles``."""
    frames = []
    for i, run in enumerate(chain):
        run = run if isinstance(run, RunView) else RunView(run)
        if run.exists("arena"):
            frames.append(run.read("arena").assign(cycle=_cycle(run, i), run_id=run.run_id))
    cols = ["cycle", "run_id", "model", "identity", "elo", "elo_lo", "elo_hi", "battles"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def store_across_cycles(chain: list) -> pd.DataFrame:
    """The example store of the newest cycle that has one, as rows added per cycle and label (with totals)."""
    from .store import store_growth

    for run in reversed(chain):
        run = run if isinstance(run, RunView) else RunView(run)
        if run.exists("example_store"):
            return store_growth(run.read("example_store"))
    return store_growth(pd.DataFrame())


def elo_verdict(arena: pd.DataFrame) -> str:
    """Whether the best model's Elo still climbs from cycle to cycle, or the gains have levelled off."""
    if arena.empty:
        return "no arena ratings yet (the arena runs from the second cycle on, when there is judged traffic)"
    best = arena.sort_values("elo", ascending=False).groupby("cycle").head(1).sort_values("cycle")
    parts = [f"cycle {int(r.cycle)}: {r.identity} {r.elo:.0f} [{r.elo_lo:.0f}, {r.elo_hi:.0f}]"
             for r in best.itertuples()]
    if len(best) < 2:
        return "best model per cycle: " + "; ".join(parts) + " (one rated cycle: no trend yet)"
    last, prev = best.iloc[-1], best.iloc[-2]
    gain = last.elo - prev.elo
    overlap = last.elo_lo <= prev.elo_hi and prev.elo_lo <= last.elo_hi
    tail = (f"the last cycle moved the best Elo by {gain:+.0f}; "
            + ("the intervals overlap: the gains have levelled off (or are within noise)" if overlap
               else "the intervals do not overlap: still improving" if gain > 0 else "it got worse"))
    return "best model per cycle: " + "; ".join(parts) + ". " + tail
