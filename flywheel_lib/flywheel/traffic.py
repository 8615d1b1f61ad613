"""The promoted model's production traffic, simulated: the next cycle's sample.

:func:`log_traffic` takes new requests (for the bundled domain, :func:`flywheel_lib.domains.segments.traffic.
traffic_requests`) and the promoted model's answers to them, and writes what production would log: the request,
what the model did (``label``: the solvable id for a query, the refusal category for a refusal), its query, and
implicit feedback signals that follow from whether the answer was right — merchants retry, correct ("no, I
meant..."), edit and abandon wrong answers and copy right ones, at the rates the data generator uses. The truth
(which only a simulator knows) goes to a separate table, read only to measure.

Explicit feedback (:func:`flywheel_lib.monitoring.feedback.simulate_feedback`): each request gets a ``user_id``, an
answer ``latency_s`` and, for under 1% of requests, a thumbs up/down (``feedback`` = 1 / -1, else empty), given
mostly by a minority of heavy users who ask familiar solvable requests, by raters who favour fast answers. Which
user is heavy and which request was planted (off-topic, foreign language, injection) stay in the truth table.
"""

from __future__ import annotations

import random

import pandas as pd

from ..records import ITEMS
from ..training.targets import parse_answer

__all__ = ["log_traffic", "answer_correct", "SIGNAL_P"]

# P(signal | answer right), P(signal | answer wrong): the same rates the production-log generator uses.
SIGNAL_P = {"signal_retry": (0.04, 0.30), "signal_correction": (0.02, 0.22), "signal_copy": (0.55, 0.12),
            "signal_edit": (0.06, 0.25), "signal_abandon": (0.05, 0.28)}


def answer_correct(true_label: str, gold: str | None, refused: bool, category: str | None, output: str | None,
                   *, domain, solvable_id: str) -> bool:
    """Right means: a solvable request answered with a query selecting the gold customers; anything else refused
    with its true category."""
    if true_label == solvable_id:
        if refused or not output or not gold:
            return False
        try:
            return bool(domain.same_result(output, gold))
        except Exception:  # noqa: BLE001 - an answer that does not run is wrong
            return False
    return refused and category == true_label


def _text_or_none(v) -> str | None:
    return v if isinstance(v, str) and v else None


def log_traffic(requests: pd.DataFrame, answers: list[str], *, domain, taxonomy, seed: int = 0,
                cycle: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Production logs of the promoted model on ``requests``. Returns ``(logs, truth)``.

    ``logs`` follows the items contract (``source = "traffic"``) plus ``predicted_category``, ``correct`` is kept
    out of it; ``truth`` holds ``item_id, true_label, gold_output, reason_key, family, scenario, scenario_id,
    correct, planted, supported_output`` (the query the request means once a capability change supports it).
    """
    if len(requests) != len(answers):
        raise ValueError(f"{len(requests)} requests but {len(answers)} answers")
    r = random.Random(f"{seed}:traffic-signals:{cycle}")
    refusable = taxonomy.refusal_ids + taxonomy.clarify_ids
    logs, truth = [], []
    for req, text in zip(requests.itertuples(index=False), answers):
        ans = parse_answer(text, refusable)
        if ans.refused:  # a refusal naming no category of the taxonomy is logged without a label
            label, output = ans.refusal_category, None
        else:
            label, output = taxonomy.solvable_id, ans.output
        ok = answer_correct(req.true_label, req.gold_output, ans.refused, ans.refusal_category, ans.output,
                            domain=domain, solvable_id=taxonomy.solvable_id)
        row = {"item_id": req.item_id, "text": req.text, "source": "traffic", "workload_id": req.workload_id,
               "timestamp": req.timestamp, "label": label, "output": output, "context": "", "split": "",
               "predicted_category": label or "refused_without_category", "answer": text}
        row.update({k: r.random() < p[0 if ok else 1] for k, p in SIGNAL_P.items()})
        logs.append(row)
        truth.append({"item_id": req.item_id, "true_label": req.true_label, "gold_output": req.gold_output,
                      "reason_key": req.reason_key, "family": req.family, "scenario": req.scenario,
                      "scenario_id": getattr(req, "scenario_id", "") or "", "correct": ok,
                      "planted": getattr(req, "planted", "") or "",
                      "supported_output": _text_or_none(getattr(req, "supported_output", None))})
    out = pd.DataFrame(logs)
    truth = pd.DataFrame(truth)
    if len(out):
        from ..monitoring.feedback import simulate_feedback

        easy = (truth["true_label"] == taxonomy.solvable_id) & (truth["scenario"] == "known")
        fb = simulate_feedback(truth["correct"], easy, seed=_seed_int(f"{seed}:feedback:{cycle}"))
        out["user_id"] = fb["user_id"].to_numpy()
        out["latency_s"] = fb["latency_s"].to_numpy(dtype=float)
        out["feedback"] = fb["feedback"].to_numpy(dtype=float)
        truth["heavy_user"] = fb["heavy_user"].to_numpy()
    return out[[*ITEMS, *[c for c in out.columns if c not in ITEMS]]], truth


def _seed_int(key: str) -> int:
    import hashlib

    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
