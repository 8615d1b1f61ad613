"""Stale refusals: when the product starts to support what it used to refuse, the corpus's old labels are wrong.

A capability change (a drift schedule's ``capability_changes``, :mod:`flywheel_lib.domains.segments.drift`) makes an
unknown attribute answerable. Every curated row that refused a request of it as ``missing_capability`` now teaches
the model to refuse what it can do. A later cycle's ``03_resolve`` finds those rows in the corpus it carries
(:func:`find_stale`: the row's reason key names the attribute, or its text holds one of the attribute's phrasings),
takes them out of the curated sets and sends them to review (:func:`relabel_stale`): answered from the truth table
by the simulated reviewer, they come back relabelled as answerable with their query; left for people, they stay out
of training until a reviewed file answers them.

The naive merge and the production-only set keep their rows as they are: the baselines do not curate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["find_stale", "relabel_stale", "StaleRelabel", "truth_answers", "reviewed_answers", "relabel_for_stage"]


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(s).lower()).strip()


def _holds(text: str, phrase: list[str], share: float = 0.75) -> bool:
    """Whether ``text`` holds the words of ``phrase`` (typos allowed: a word within edit ratio 0.8 counts)."""
    from difflib import SequenceMatcher

    words = text.split()
    hit = sum(1 for p in phrase if p in words or (len(p) > 3 and any(
        SequenceMatcher(None, p, w).ratio() >= 0.8 for w in words if abs(len(w) - len(p)) <= 2)))
    return hit >= share * len(phrase)


def find_stale(corpus: pd.DataFrame, changes: pd.DataFrame, *, variant_prefix: str = "curated") -> pd.Series:
    """Rows of ``corpus`` (train sets: ``item_id, text, label, output, reason_key, variant``) that refuse a request
    ``changes`` (``key, category, phrasings``) made answerable: label the change's category, variant starting with
    ``variant_prefix``, and the change's key as reason key or one of its phrasings in the text (three in four of
    its words, typos allowed)."""
    mask = pd.Series(False, index=corpus.index)
    if corpus.empty or changes is None or changes.empty:
        return mask
    curated = corpus["variant"].astype(str).str.startswith(variant_prefix)
    reason = corpus["reason_key"].fillna("").astype(str) if "reason_key" in corpus else pd.Series("", corpus.index)
    text = corpus["text"].map(_norm)
    for ch in changes.itertuples(index=False):
        by_key = reason.str.split(",").map(lambda keys, k=ch.key: k in keys)
        phrases = [p.split() for p in (_norm(x) for x in ch.phrasings) if p]
        by_text = text.map(lambda t, ps=phrases: any(_holds(t, p) for p in ps)) if phrases else False
        mask |= curated & (corpus["label"] == ch.category) & (by_key | by_text)
    return mask


@dataclass
class StaleRelabel:
    """What :func:`relabel_stale` did: rows found stale, relabelled from review answers, left out waiting."""

    found: int = 0
    relabelled: int = 0
    waiting: int = 0
    by_key: dict[str, int] = field(default_factory=dict)
    waiting_rows: pd.DataFrame = field(default_factory=pd.DataFrame)

    def as_dict(self) -> dict:
        return {"found": self.found, "relabelled": self.relabelled, "waiting": self.waiting, "by_key": self.by_key}


def relabel_stale(train_sets: pd.DataFrame, changes: pd.DataFrame, answers: pd.DataFrame | None, *,
                  solvable_id: str, variant_prefix: str = "curated") -> tuple[pd.DataFrame, StaleRelabel]:
    """Take the stale refusals (:func:`find_stale`) out of the curated variants and put back the answered ones.

    ``answers``: ``item_id, label, output`` per answered item (a reviewer's, or the truth table's for the simulated
    reviewer); an answer that says solvable needs a query. A stale row without a usable answer is left out of
    training and listed in ``waiting_rows`` (one row per item, for the review file). Returns the new train sets and
    a :class:`StaleRelabel`.
    """
    stale = find_stale(train_sets, changes, variant_prefix=variant_prefix)
    out = StaleRelabel(found=int(stale.sum()))
    if not out.found:
        return train_sets, out
    rows = train_sets[stale].copy()
    for ch in changes.itertuples(index=False):
        n = int(find_stale(rows, changes[changes["key"] == ch.key], variant_prefix=variant_prefix).sum())
        if n:
            out.by_key[str(ch.key)] = n
    ans = (answers if answers is not None else pd.DataFrame(columns=["item_id", "label", "output"]))
    ans = ans.drop_duplicates("item_id", keep="last").set_index("item_id")
    label = ans["label"].reindex(rows["item_id"]).to_numpy()
    output = ans["output"].reindex(rows["item_id"]).to_numpy() if "output" in ans else [None] * len(rows)
    lab = pd.Series(label, index=rows.index)
    has_query = pd.Series([isinstance(o, str) and bool(o.strip()) for o in output], index=rows.index)
    usable = lab.notna() & ((lab != solvable_id) | has_query)
    rows["label"] = label
    rows["output"] = output
    answered = rows[usable]
    waiting = train_sets.loc[stale][~usable.to_numpy()]
    out.relabelled = int(answered["item_id"].nunique())
    out.waiting = int(waiting["item_id"].nunique())
    out.waiting_rows = waiting.drop_duplicates("item_id").reset_index(drop=True)
    kept = train_sets[~stale]
    return pd.concat([kept, answered], ignore_index=True)[train_sets.columns], out


def truth_answers(stale_ids, truths: pd.DataFrame, changes: pd.DataFrame, *, solvable_id: str,
                  error_rate: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """The simulated reviewer's answers to stale rows, from the lineage's truth tables (``item_id, true_label,
    gold_output, reason_key, supported_output``; first row per item wins): a request of a changed attribute is now
    answerable with its ``supported_output``; anything else keeps its true label and query. With probability
    ``error_rate`` the reviewer misses the change and confirms the old refusal."""
    import numpy as np

    t = truths.drop_duplicates("item_id").set_index("item_id").reindex(list(dict.fromkeys(stale_ids)))
    t = t[t["true_label"].notna()] if "true_label" in t else t.iloc[:0]
    keys = set(changes["key"].astype(str))
    sup = t["supported_output"] if "supported_output" in t else pd.Series(None, index=t.index, dtype=object)
    reason = t["reason_key"].fillna("").astype(str) if "reason_key" in t else pd.Series("", index=t.index)
    changed = reason.str.split(",").map(lambda ks: bool(keys & set(ks))) & sup.notna()
    label = t["true_label"].where(~changed, solvable_id)
    output = t["gold_output"].where(~changed, sup) if "gold_output" in t else sup.where(changed)
    wrong = np.random.default_rng(seed).random(len(t)) < error_rate
    cat = dict(zip(changes["key"].astype(str), changes["category"]))
    old = reason.map(lambda ks: next((cat[k] for k in ks.split(",") if k in cat), None))
    label = label.where(~(wrong & old.notna().to_numpy()), old)
    output = output.where(label == solvable_id, None)
    return pd.DataFrame({"item_id": t.index, "label": label.to_numpy(), "output": output.to_numpy()})


def reviewed_answers(reviewed: pd.DataFrame | None) -> pd.DataFrame:
    """People's answers (an imported review file: ``item_id, human_label, human_output``) as ``item_id, label,
    output``."""
    if reviewed is None or reviewed.empty:
        return pd.DataFrame(columns=["item_id", "label", "output"])
    out = reviewed.get("human_output", pd.Series(None, index=reviewed.index))
    return pd.DataFrame({"item_id": reviewed["item_id"], "label": reviewed["human_label"], "output": out})


def relabel_for_stage(st, train_sets: pd.DataFrame, *, schedule, taxonomy, simulated: bool,
                      reviewed: pd.DataFrame | None = None, error_rate: float = 0.0,
                      seed: int = 0) -> tuple[pd.DataFrame, StaleRelabel, pd.DataFrame]:
    """:func:`relabel_stale` for a later cycle's ``03_resolve`` (stage ``st``): the capability changes in effect in
    the traffic this cycle judged (the schedule's cycles ``1..k-1``), answered by the simulated reviewer from the
    lineage's truth tables, or by people through ``reviewed``. Returns the train sets, the summary and the changes
    (empty without a schedule or in a first cycle)."""
    from ..domains.segments.drift import DriftSchedule, load_drift_schedule
    from ..flywheel.lineage import lineage_chain
    from ..levers.cycle import cycle_of

    cycle = cycle_of(st)
    if not schedule or st.parent is None or cycle < 2:
        return train_sets, StaleRelabel(), pd.DataFrame(columns=["scenario_id", "category", "key", "cycle",
                                                                 "phrasings"])
    sched = schedule if isinstance(schedule, DriftSchedule) else load_drift_schedule(schedule)
    changes = sched.capability_changes(upto=cycle - 1)
    stale = find_stale(train_sets, changes)
    if simulated and stale.any():
        truths = [st.read("truth")] if st.exists("truth") else []
        for run in reversed(lineage_chain(st.parent)):
            truths += [run.read(n) for n in ("truth", "traffic_truth") if run.exists(n)]
        answers = truth_answers(train_sets.loc[stale, "item_id"], pd.concat(truths, ignore_index=True), changes,
                                solvable_id=taxonomy.solvable_id, error_rate=error_rate, seed=seed)
    else:
        answers = reviewed_answers(reviewed)
    sets, summary = relabel_stale(train_sets, changes, answers, solvable_id=taxonomy.solvable_id)
    return sets, summary, changes
