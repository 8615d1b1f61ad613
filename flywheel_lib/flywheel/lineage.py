"""A lineage: the chain of cycles, each run linked to its parent (``manifest.parent.parent_run``).

:func:`lineage_chain` walks from a run back to the first cycle; :func:`cycle_metrics` stacks every cycle's
evaluation metrics (with their intervals) and :func:`cycle_summary` one row per cycle: corpus size, label changes,
judge spend and cache hits, the promotion decision. Which failure patterns a cycle fixed comes from its drift
slice (:func:`flywheel_lib.evaluation.drift.scenario_patterns`), not from a second traffic draw.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..stage import RunView, open_run

__all__ = ["lineage_chain", "cycle_metrics", "cycle_summary", "cycle_verdict"]


def _view(run) -> RunView:
    return run if isinstance(run, RunView) else RunView(run)


def lineage_chain(run_dir: str | Path | RunView, max_depth: int = 100) -> list[RunView]:
    """Read-only views of ``run_dir`` and its ancestors (``manifest.parent.parent_run``), oldest first."""
    chain = [_view(run_dir)]
    for _ in range(max_depth):
        parent = (chain[0].manifest.get("parent") or {}).get("parent_run")
        if not parent:
            break
        try:
            chain.insert(0, open_run(parent))
        except FileNotFoundError:
            break
    return chain


def _cycle(run: RunView, i: int) -> int:
    return int((run.manifest.get("parent") or {}).get("cycle") or i + 1)


def cycle_metrics(chain: list) -> pd.DataFrame:
    """Every cycle's ``eval_metrics`` (variant, metric, value, lo, hi, k, n) with ``cycle`` and ``run_id``."""
    frames = []
    for i, run in enumerate(map(_view, chain)):
        if run.exists("eval_metrics"):
            frames.append(run.read("eval_metrics").assign(cycle=_cycle(run, i), run_id=run.run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["variant", "metric", "value", "lo", "hi", "k", "n", "cycle", "run_id"])


def cycle_summary(chain: list) -> pd.DataFrame:
    """One row per cycle: sizes, label changes, judge spend and cache hits, the promotion decision."""
    rows = []
    for i, run in enumerate(map(_view, chain)):
        m = run.manifest
        met = m.get("metrics") or {}
        notes = m.get("notes") or {}
        data, judge, res = met.get("00_data", {}), met.get("02_judge", {}), met.get("03_resolve", {})
        promo = notes.get("05_evaluate", {}).get("promotion") or {}
        curated = None
        if run.exists("train_sets"):
            ts = run.read("train_sets")
            curated = int((ts["variant"] == "curated").sum())
        rows.append({
            "cycle": _cycle(run, i), "run_id": run.run_id, "status": m.get("status"),
            "n_production": data.get("n_production"),
            "curated_corpus": curated,
            "labels_changed": res.get("production_labels_changed"),
            "review_queue": res.get("review_queue_size"),
            "judge_spend_usd": judge.get("spend_usd"),
            "judge_cache_hit_rate": judge.get("cache_hit_rate"),
            "promoted": promo.get("promoted"), "winner": promo.get("winner"),
            "taxonomy": ", ".join(str(v) for v in (m.get("taxonomy") or {}).values()),
        })
    return pd.DataFrame(rows)


def cycle_verdict(summary: pd.DataFrame, metrics: pd.DataFrame, metric: str = "pass_rate") -> tuple[str, float | None]:
    """What the last cycle changed for the deployed model, in words, and the change in ``metric``.

    Compares the last two cycles' deployed (winning) models; overlapping intervals are reported as "nothing we can
    tell apart from noise" rather than as a gain.
    """
    if len(summary) < 2 or metrics.empty:
        return "first cycle of its lineage: nothing to compare with yet", None
    winners = dict(zip(summary["cycle"], summary["winner"]))
    prev_c, this_c = summary["cycle"].iloc[-2], summary["cycle"].iloc[-1]

    def pick(c):
        m = metrics[(metrics["cycle"] == c) & (metrics["variant"] == winners.get(c)) & (metrics["metric"] == metric)]
        return m.iloc[0] if len(m) else None

    a, b = pick(prev_c), pick(this_c)
    if a is None or b is None:
        return f"no {metric} for the deployed model of cycle {prev_c if a is None else this_c}", None
    delta = float(b.value - a.value)
    overlap = not (b.lo > a.hi or a.lo > b.hi)
    tail = ("the intervals overlap: this cycle gained nothing we can tell apart from noise" if overlap
            else "a gain beyond the intervals" if delta > 0 else "a loss beyond the intervals")
    return (f"deployed model {metric} {a.value:.3f} ({winners.get(prev_c)}, cycle {prev_c}) -> {b.value:.3f} "
            f"({winners.get(this_c)}, cycle {this_c}), {delta:+.3f}; {tail}"), delta
