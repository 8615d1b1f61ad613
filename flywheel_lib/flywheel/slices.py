"""The drift slice of a later cycle, and how each drift scenario entered the corpus.

- :func:`drift_slice_for` — held-out instances of every scenario that appeared in the lineage's traffic so far,
  none of them a text any cycle's traffic or this run's items hold;
- :func:`scenario_entry` — per drift scenario of this cycle's judged traffic, how its rows entered the curated
  corpus: accepted by the unanimous panel, labelled through the review queue, or not at all.
"""

from __future__ import annotations

import pandas as pd

from ..levers.cycle import cycle_of
from .lineage import lineage_chain

__all__ = ["drift_slice_for", "scenario_entry", "scenario_entry_for"]


def drift_slice_for(st, domain, *, schedule, seed: int, n_per_cycle: int) -> pd.DataFrame:
    """The drift slice for stage ``st`` of cycle ``k``: scenarios of the traffic of cycles ``1..k-1`` (empty in a
    first cycle or for a domain without ``drift_slice``)."""
    upto = cycle_of(st) - 1
    if upto < 1 or st.parent is None or not callable(getattr(domain, "drift_slice", None)):
        return pd.DataFrame(columns=["item_id", "text", "label", "output", "scenario_id", "scenario_cycle"])
    seen = [st.read("items")["text"]]
    for run in lineage_chain(st.parent):
        if run.exists("traffic"):
            seen.append(run.read("traffic")["text"])
    exclude = pd.concat(seen, ignore_index=True).astype(str).tolist()
    return domain.drift_slice(seed=seed, upto=upto, schedule=schedule, n_per_cycle=n_per_cycle, exclude=exclude)


ENTRY_COLUMNS = ["scenario_id", "judged", "panel", "review", "kept", "left_out", "label_right"]


def scenario_entry(truth: pd.DataFrame, consensus: pd.DataFrame, corpus: pd.DataFrame,
                   reviewed: set | None = None) -> pd.DataFrame:
    """Per drift scenario (``truth.scenario_id``, empty ones skipped): rows judged; rows in the curated ``corpus``
    labelled by the panel (``consensus`` accepted), by a person (``reviewed``: the item ids a review decided), or
    kept with the deployed model's logged label without either (``kept``: the tree's
    ``uncontradicted_keeps_production``); rows left out; and how many of the corpus labels are the true category."""
    if "scenario_id" not in truth.columns:  # a truth without scenarios (user data, an older simulator)
        return pd.DataFrame(columns=ENTRY_COLUMNS)
    t = truth[truth["scenario_id"].fillna("").astype(str) != ""]
    if t.empty:
        return pd.DataFrame(columns=ENTRY_COLUMNS)
    acc = set(consensus.loc[consensus["status"] == "accepted", "item_id"])
    reviewed = set(reviewed or ())
    lab = corpus.drop_duplicates("item_id").set_index("item_id")["label"]
    rows = []
    for sid, g in t.groupby("scenario_id"):
        ids = g["item_id"]
        inc = ids[ids.isin(lab.index)]
        right = (lab.reindex(inc).to_numpy() == g.set_index("item_id").loc[inc, "true_label"].to_numpy()).sum()
        by_review = inc.isin(reviewed)
        by_panel = inc.isin(acc) & ~by_review
        rows.append({"scenario_id": sid, "judged": len(g), "panel": int(by_panel.sum()),
                     "review": int(by_review.sum()), "kept": int((~by_panel & ~by_review).sum()),
                     "left_out": int(len(g) - len(inc)), "label_right": int(right)})
    return pd.DataFrame(rows, columns=ENTRY_COLUMNS)


def scenario_entry_for(st, *, schedule, cycle: int, corpus_variant: str = "curated") -> pd.DataFrame:
    """:func:`scenario_entry` for this run (its ``truth``, ``consensus`` and ``train_sets``), with ``new``: the
    scenario first appeared in the previous cycle's traffic (the traffic this cycle judged). Empty without them."""
    from ..domains.segments.drift import DriftSchedule, load_drift_schedule

    if not all(st.exists(n) for n in ("truth", "consensus", "train_sets")):
        return pd.DataFrame(columns=[*ENTRY_COLUMNS, "new"])
    ts = st.read("train_sets")
    corpus = ts[ts["variant"] == corpus_variant] if "variant" in ts else ts
    res = st.read("resolutions") if st.exists("resolutions") else pd.DataFrame(columns=["item_id", "decided_by"])
    reviewed = set(res.loc[res["decided_by"] == "human", "item_id"])
    entry = scenario_entry(st.read("truth"), st.read("consensus"), corpus, reviewed)
    sched = schedule if isinstance(schedule, DriftSchedule) else load_drift_schedule(schedule)
    seen = sched.scenarios(upto=cycle - 1)
    new = set(seen.loc[seen["cycle"] == cycle - 1, "scenario_id"])
    return entry.assign(new=entry["scenario_id"].isin(new))
