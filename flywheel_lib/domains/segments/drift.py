"""A world that changes across cycles: the drift schedule of the bundled traffic simulator, and the drift slice.

Once a model ships, merchants start asking for new things and phrase familiar requests in new ways. The schedule is
data (a YAML file a recipe names, ``params/drift/segments.yaml`` by default), validated like a taxonomy, so a
researcher scripts the drift they want to study::

    sched = load_drift_schedule("params/drift/segments.yaml")
    sched.scenarios(upto=2)            # every scenario that has appeared in the traffic of cycles 1..2
    traffic = traffic_requests(catalog, seed=7, cycle=2, n=1500, schedule=sched)
    slice_ = drift_slice(catalog, sched, seed=7, upto=2, n_per_cycle=200, exclude=traffic["text"])

Cycle ``k`` of the schedule is what first appears in the traffic that cycle ``k``'s deployed model answers (its
``06_flywheel``); cycle ``k + 1`` learns from it and is scored on the **drift slice**: held-out instances of every
scenario seen so far, labelled by the simulator's truth and never a traffic row. A refusal scenario's instances use
the schedule's ``slice_frames`` (frames no traffic uses); a new frame's instances are other requests in that frame.
A cycle's slice rows depend only on the seed and that cycle, so a later cycle's slice contains the earlier ones.

Scenario ids are ``<category>:<key>`` for refusal scenarios (``missing_capability:shoe_size``) and
``frame:<id>`` for new sentence frames of solvable requests.

**Capability changes.** The product changes too: a cycle's ``capability_changes`` names an unknown attribute of an
earlier cycle that the store now supports, with the query each of its phrasings means. From that cycle on, the
simulator's truth for the scenario is a solvable request with that query (in traffic, and in a drift slice scored
after it); rows generated before keep the text they had and carry the query in ``supported_output``, so a later
cycle can relabel the corpus's stale refusals (:mod:`flywheel_lib.curation.stale`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import generator as G
from . import noise as N

__all__ = ["DriftSchedule", "CycleDrift", "Scenario", "Frame", "CapabilityChange", "DriftScheduleError",
           "load_drift_schedule", "drift_slice", "SCENARIO_KINDS"]

SCENARIO_KINDS = {"unknown_attributes": "missing_capability", "vague_words": "ambiguous",
                  "context_references": "needs_context"}
"""Schedule key -> the true category of its requests."""


class DriftScheduleError(ValueError):
    """A drift schedule that does not load or validate; the message names the file and the key."""


class Scenario(BaseModel):
    """One new thing merchants ask for."""

    model_config = ConfigDict(extra="forbid")
    phrasings: list[str] = Field(min_length=2)
    """Condition phrases (``{c}`` of a frame), e.g. ``wear shoe size 9``."""
    emitted: str
    """What a model without the scenario makes up: the query production logs as a success."""


class Frame(BaseModel):
    """A sentence frame; ``{c}`` marks where the conditions go."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """The phrasing family id (the ``family`` column)."""
    text: str
    """The frame, e.g. ``any customers who {c}?``."""

    @field_validator("text")
    @classmethod
    def _slot(cls, v: str) -> str:
        if v.count("{c}") != 1:
            raise ValueError(f"a frame holds {{c}} exactly once: {v!r}")
        return v


class CapabilityChange(BaseModel):
    """An unknown attribute the product starts to support: the query each of its phrasings now means."""

    model_config = ConfigDict(extra="forbid")
    queries: dict[str, str] = Field(min_length=1)
    """Phrasing -> the query it means once supported (every phrasing of the attribute, nothing else)."""


class CycleDrift(BaseModel):
    """What first appears in one cycle's traffic, and how much of the traffic is new."""

    model_config = ConfigDict(extra="forbid")
    new_share: float = Field(ge=0.0, le=0.9)
    """Share of the cycle's traffic drawn from the drift scenarios that have appeared so far."""
    fresh_share: float = Field(default=0.5, ge=0.0, le=1.0)
    """Of those, the share drawn from this cycle's own new scenarios."""
    frames: list[Frame] = []
    """New sentence frames of familiar requests (from this cycle on, familiar requests use every frame so far)."""
    unknown_attributes: dict[str, Scenario] = {}
    vague_words: dict[str, Scenario] = {}
    context_references: dict[str, Scenario] = {}
    capability_changes: dict[str, CapabilityChange] = {}
    """Unknown attributes of earlier cycles that are supported from this cycle on (key -> the queries)."""

    def scenario_ids(self) -> list[str]:
        """This cycle's new scenario ids, refusal scenarios first (``<category>:<key>``, ``frame:<id>``)."""
        out = [f"{cat}:{k}" for field, cat in SCENARIO_KINDS.items() for k in getattr(self, field)]
        return out + [f"frame:{f.id}" for f in self.frames]


class DriftSchedule(BaseModel):
    """The drift schedule: per cycle (1, 2, ... with no gap) what is new in the traffic."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    slice_frames: list[Frame] = Field(min_length=1)
    """Frames of the drift slice's refusal-scenario instances; no traffic uses them."""
    cycles: dict[int, CycleDrift]
    path: str = ""
    """The file it was loaded from (empty when built in code)."""

    @model_validator(mode="after")
    def _check(self) -> DriftSchedule:
        keys = sorted(self.cycles)
        if not keys or keys != list(range(1, len(keys) + 1)):
            raise ValueError(f"cycles must be numbered 1, 2, ... without a gap, got {keys}")
        seen: dict[str, int] = {}
        for c in keys:
            for sid in self.cycles[c].scenario_ids():
                if sid in seen:
                    raise ValueError(f"cycles.{c}: scenario {sid!r} already appeared in cycle {seen[sid]}")
                seen[sid] = c
        changed: dict[str, int] = {}
        for c in keys:
            for key, change in self.cycles[c].capability_changes.items():
                sid = f"missing_capability:{key}"
                if seen.get(sid, c) >= c:
                    raise ValueError(f"cycles.{c}.capability_changes.{key}: not an unknown attribute of an earlier "
                                     f"cycle")
                if key in changed:
                    raise ValueError(f"cycles.{c}.capability_changes.{key}: already supported from cycle "
                                     f"{changed[key]}")
                changed[key] = c
                phr = set(self.scenario(sid).phrasings)
                if set(change.queries) != phr:
                    raise ValueError(f"cycles.{c}.capability_changes.{key}: queries must give every phrasing of the "
                                     f"attribute once; missing {sorted(phr - set(change.queries))}, unknown "
                                     f"{sorted(set(change.queries) - phr)}")
                empty = [k for k, q in change.queries.items() if not q.strip()]
                if empty:
                    raise ValueError(f"cycles.{c}.capability_changes.{key}: empty query for {empty}")
        slice_ids = {f.id for f in self.slice_frames}
        clash = slice_ids & {s.split(":", 1)[1] for s in seen if s.startswith("frame:")}
        if clash:
            raise ValueError(f"slice_frames reuse traffic frame ids {sorted(clash)}: the slice must be held out")
        known = {fid for k in ("segment", "wrong_skill") for fid, _, _ in G.P.FRAMES[k]}
        reused = (slice_ids | {s.split(":", 1)[1] for s in seen if s.startswith("frame:")}) & known
        if reused:
            raise ValueError(f"frame ids {sorted(reused)} are the generator's own families: pick new ids")
        return self

    @property
    def n_cycles(self) -> int:
        return len(self.cycles)

    def at(self, cycle: int) -> CycleDrift:
        """The schedule of ``cycle``; past its last cycle, the last cycle's shares with nothing new."""
        if cycle in self.cycles:
            return self.cycles[cycle]
        last = self.cycles[self.n_cycles]
        return CycleDrift(new_share=last.new_share, fresh_share=0.0)

    def scenarios(self, upto: int) -> pd.DataFrame:
        """Every scenario that has appeared in the traffic of cycles ``1..upto``: ``scenario_id, category, key,
        cycle`` (the cycle it first appeared in), in order of appearance."""
        rows = []
        for c in range(1, min(upto, self.n_cycles) + 1):
            cd = self.cycles[c]
            for field, cat in SCENARIO_KINDS.items():
                rows += [{"scenario_id": f"{cat}:{k}", "category": cat, "key": k, "cycle": c}
                         for k in getattr(cd, field)]
            rows += [{"scenario_id": f"frame:{f.id}", "category": "solvable", "key": f.id, "cycle": c}
                     for f in cd.frames]
        return pd.DataFrame(rows, columns=["scenario_id", "category", "key", "cycle"])

    def change_of(self, scenario_id: str) -> tuple[int, CapabilityChange] | None:
        """``(cycle, change)`` if the schedule ever makes ``scenario_id`` supported, else None."""
        cat, _, key = scenario_id.partition(":")
        if cat != "missing_capability":
            return None
        for c in sorted(self.cycles):
            if key in self.cycles[c].capability_changes:
                return c, self.cycles[c].capability_changes[key]
        return None

    def capability_changes(self, upto: int) -> pd.DataFrame:
        """The capability changes in effect by cycle ``upto``: ``scenario_id, category, key, cycle, phrasings``."""
        rows = [{"scenario_id": f"missing_capability:{k}", "category": "missing_capability", "key": k, "cycle": c,
                 "phrasings": sorted(ch.queries)}
                for c in range(1, min(upto, self.n_cycles) + 1)
                for k, ch in self.cycles[c].capability_changes.items()]
        return pd.DataFrame(rows, columns=["scenario_id", "category", "key", "cycle", "phrasings"])

    def frames_upto(self, upto: int) -> list[Frame]:
        return [f for c in range(1, min(upto, self.n_cycles) + 1) for f in self.cycles[c].frames]

    def scenario(self, scenario_id: str) -> Scenario:
        cat, _, key = scenario_id.partition(":")
        field = {v: k for k, v in SCENARIO_KINDS.items()}[cat]
        for cd in self.cycles.values():
            if key in getattr(cd, field):
                return getattr(cd, field)[key]
        raise KeyError(scenario_id)


def load_drift_schedule(path: str | Path) -> DriftSchedule:
    """Load and validate a drift schedule (relative paths from the project root); errors name the file and key."""
    from ...io import load_yaml_model

    sched = load_yaml_model(path, DriftSchedule, DriftScheduleError, "drift schedule")
    sched.path = str(path)
    return sched


# ------------------------------------------------------------------------------------------- requests
def _solvable_in(r: random.Random, frame: Frame, V) -> G.Draft:
    """A familiar solvable request put into ``frame``."""
    texts, clauses, used = G._conditions(r, "train", 1 if r.random() < 0.6 else 2, V)
    gold = G._and(clauses)
    return G.Draft(frame.text.format(c=G._join(r, texts)), "solvable", ",".join(used), gold, gold, frame.id)


def scenario_request(r: random.Random, sched: DriftSchedule, scenario_id: str, frame: Frame, V, *,
                     cycle: int | None = None) -> tuple[G.Draft, str | None]:
    """One request of a scenario in ``frame`` (a refusal scenario's phrase, sometimes beside a valid condition), with
    the truth as of ``cycle`` (None: before any capability change), and the query the request means once its
    attribute is supported (None if the schedule never supports it). The text does not depend on ``cycle``."""
    if scenario_id.startswith("frame:"):
        return _solvable_in(r, frame, V), None
    cat, _, key = scenario_id.partition(":")
    sc = sched.scenario(scenario_id)
    phrase = r.choice(sc.phrasings)
    change = sched.change_of(scenario_id)
    state = r.getstate()
    text, emitted = G._with_segment(r, phrase, sc.emitted, "train", 0.3, V)
    if change is None:
        return G.Draft(frame.text.format(c=text), cat, key, None, emitted, frame.id), None
    r.setstate(state)  # the same draws again: the same text, with the supported query in place of the made-up one
    _, supported = G._with_segment(r, phrase, change[1].queries[phrase], "train", 0.3, V)
    if cycle is not None and change[0] <= cycle:
        return G.Draft(frame.text.format(c=text), "solvable", key, supported, emitted, frame.id), supported
    return G.Draft(frame.text.format(c=text), cat, key, None, emitted, frame.id), supported


def drift_slice(catalog: dict, schedule: DriftSchedule, *, seed: int, upto: int, n_per_cycle: int = 200,
                exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Held-out instances of every scenario that appeared in the traffic of cycles ``1..upto`` (see module doc).

    ``n_per_cycle`` rows for each cycle's new scenarios, split evenly over them; none whose near-duplicate key is in
    ``exclude`` (the traffic's texts) or repeats another slice row. The truth is the world's as of cycle ``upto``
    (a capability change of cycle ``upto`` or before makes its scenario solvable). Items contract (``source = "drift"``, ``label``
    and ``output`` the truth) plus ``scenario_id``, ``scenario_cycle``, ``true_label``, ``gold_output``,
    ``reason_key``, ``family``.
    """
    from ...training.datasets import near_duplicate_key

    taken = {near_duplicate_key(str(t)) for t in exclude}
    V = G._Vocab(catalog)
    rows: list[dict] = []
    for c in range(1, min(upto, schedule.n_cycles) + 1):
        ids = schedule.cycles[c].scenario_ids()
        if not ids or n_per_cycle <= 0:
            continue
        r = random.Random(f"{seed}:drift-slice:{c}")
        frames = {f.id: f for f in schedule.cycles[c].frames}
        quota = [n_per_cycle // len(ids) + (1 if i < n_per_cycle % len(ids) else 0) for i in range(len(ids))]
        for sid, q in zip(ids, quota):
            got, tries = 0, 0
            while got < q and tries < 50 * q:
                tries += 1
                frame = frames[sid[6:]] if sid.startswith("frame:") else r.choice(schedule.slice_frames)
                d, _ = scenario_request(r, schedule, sid, frame, V, cycle=upto)
                text = N.noise(r, d.text)
                k = near_duplicate_key(text)
                if k in taken:
                    continue
                taken.add(k)
                got += 1
                rows.append({"item_id": f"drift-c{c}-{len(rows):05d}", "text": text, "source": "drift",
                             "workload_id": "customer_segmentation",
                             "timestamp": pd.Timestamp("2026-07-01", tz="UTC") + pd.Timedelta(days=30 * (c - 1)),
                             "label": d.category, "output": d.gold, "context": "", "split": "drift",
                             "scenario_id": sid, "scenario_cycle": c, "true_label": d.category,
                             "gold_output": d.gold, "reason_key": d.reason_key, "family": d.family})
    cols = ["item_id", "text", "source", "workload_id", "timestamp", "label", "output", "context", "split",
            "scenario_id", "scenario_cycle", "true_label", "gold_output", "reason_key", "family"]
    return pd.DataFrame(rows, columns=cols)
