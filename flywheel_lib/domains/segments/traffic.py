"""New merchant traffic for the next cycle: phrasings and refusal scenarios the earlier corpus lacked.

Once the improved model ships, merchants keep finding new ways to ask for the same thing and new things to ask
for. :func:`traffic_requests` draws a cycle's requests from

- **new sentence frames** that neither production, the seed nor the eval set use (families ``tr_*``), around the
  training pool's condition phrasings, so the eval set stays unseen;
- **new refusal scenarios**: unknown attributes the seed never mentions (shoe size, zodiac sign, employer, ...),
  new vague words and new references to missing context, mixed in at ``new_scenario_share`` of the refusals;
- the familiar scenarios, re-framed.

Rows carry the truth (``true_label``, ``gold_output``, ``reason_key``, ``family``, ``scenario``: ``new`` or
``known``); the simulator in :mod:`flywheel_lib.flywheel.traffic` sends them to the promoted model.
"""

from __future__ import annotations

import random

import pandas as pd

from . import generator as G
from . import noise as N

__all__ = ["traffic_requests", "NEW_UNKNOWN", "NEW_VAGUE", "NEW_CONTEXT", "TRAFFIC_FRAMES"]

TRAFFIC_FRAMES = [
    ("tr_any", "any customers who {c}?"),
    ("tr_audience", "put together an audience of people who {c}"),
    ("tr_folks_pls", "folks that {c}, please"),
    ("tr_segment_for", "I'd like a segment for shoppers who {c}"),
    ("tr_who_all", "who all {c}"),
    ("tr_target", "target list: buyers who {c}"),
]
TRAFFIC_WRONG_FRAMES = [("tr_ws_hey", "hey, {c}"), ("tr_ws_could", "could you {c} for me"), ("tr_ws_todo", "todo: {c}")]
NEW_UNKNOWN = {
    "shoe_size": (["wear shoe size 9", "have size 10 feet", "take a size 7 shoe"], "customer_tags CONTAINS 'size 9'"),
    "zodiac_sign": (["are Scorpios", "have the zodiac sign Leo", "are born under Aries"],
                    "customer_tags CONTAINS 'scorpio'"),
    "employer": (["work at Google", "are employed by Amazon", "work for a bank"], "customer_email_domain = 'google.com'"),
    "religion": (["are Catholic", "celebrate Diwali", "go to church"], "customer_tags CONTAINS 'catholic'"),
    "vehicle": (["drive a Tesla", "own an SUV", "ride motorcycles"], "customer_tags CONTAINS 'tesla'"),
    "height": (["are taller than 6 feet", "are petite"], "customer_tags CONTAINS 'tall'"),
}
NEW_VAGUE = {
    "vip_ish": (["are sort of VIP", "feel like VIPs"], "customer_tags CONTAINS 'vip'"),
    "engaged": (["are engaged with the brand", "are really engaged"], "email_opened(date: -30d) = true"),
    "at_risk": (["are at risk", "might churn soon"], "last_order_date < -90d"),
}
NEW_CONTEXT = {
    "bundle": (["bought the bundle from before", "got that bundle"], "products_purchased(tag: 'bundle') = true"),
    "segment": (["are in the segment I made earlier", "were in my previous list"], "customer_tags CONTAINS 'segment'"),
}
_NEW = {"missing_capability": NEW_UNKNOWN, "ambiguous": NEW_VAGUE, "needs_context": NEW_CONTEXT}
MIX = {"solvable": 0.70, "missing_capability": 0.10, "ambiguous": 0.08, "wrong_skill": 0.07, "needs_context": 0.05}


def _reframe(r: random.Random, d: G.Draft, frames) -> tuple[str, str]:
    """Put a draft's condition phrase into a traffic frame (the draft text's frame is dropped)."""
    known = [f[2] for k in ("segment", "wrong_skill") for f in G.P.FRAMES[k]]
    for frame in sorted(known, key=lambda f: -len(f.replace("{c}", ""))):  # most specific frame first
        head, _, tail = frame.partition("{c}")
        if d.text.startswith(head) and d.text.endswith(tail):
            core = d.text[len(head): len(d.text) - len(tail) if tail else None]
            fid, new = r.choice(frames)
            return new.format(c=core), fid
    return d.text, d.family


def traffic_requests(catalog: dict, *, seed: int, cycle: int, n: int, new_scenario_share: float = 0.5,
                     mix: dict[str, float] | None = None) -> pd.DataFrame:
    """``n`` new requests for cycle ``cycle`` (deterministic in ``seed`` and ``cycle``)."""
    r = random.Random(f"{seed}:traffic:{cycle}")
    V = G._Vocab(catalog)
    rows = []
    for i, category in enumerate(G._plan(r, mix or MIX, n)):
        scenario = "known"
        if category in _NEW and r.random() < new_scenario_share:
            key = r.choice(sorted(_NEW[category]))
            phrases, emitted = _NEW[category][key]
            fid, frame = r.choice(TRAFFIC_FRAMES)
            scenario = "new"
            d = G.Draft(frame.format(c=r.choice(phrases)), category, key, None, emitted, fid)
        else:
            d = G._draft(r, category, "train", V)
            frames = TRAFFIC_WRONG_FRAMES if category == "wrong_skill" else TRAFFIC_FRAMES
            d.text, d.family = _reframe(r, d, frames)
        text = N.noise(r, d.text)
        rows.append({"item_id": f"c{cycle}-traffic-{i:06d}", "text": text, "source": "traffic",
                     "workload_id": "customer_segmentation",
                     "timestamp": pd.Timestamp("2026-07-01", tz="UTC") + pd.Timedelta(days=30 * (cycle - 1),
                                                                                       seconds=r.randrange(30 * 86400)),
                     "true_label": d.category, "gold_output": d.gold, "reason_key": d.reason_key,
                     "family": d.family, "scenario": scenario, "naive_output": d.emitted})
    return pd.DataFrame(rows)
