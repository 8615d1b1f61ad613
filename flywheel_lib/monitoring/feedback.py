"""Explicit feedback, implicit signals and the truth: survivorship and latency bias.

Fewer than 1% of requests get a thumbs up or down, and those who give it are not representative. The simulator
(:func:`simulate_feedback`) reproduces both failure modes of the seed document:

- **survivorship**: a minority of heavy users sends a larger share of the requests, sends different ones (more of
  the requests the deployed model gets right: ``easy``) and gives feedback ten times as often as everyone else;
- **latency bias**: raters give a thumbs up to fast answers more often, whether or not the answer was right.

:func:`accuracy_estimates` then compares three estimates of the deployed model's accuracy: explicit (thumbs up
among the rated requests), implicit (a request fails when at least ``min_signals`` failure signals agree) and the
truth, each with a 95% Wilson interval; the survivorship gap (explicit - true) gets a bootstrap interval.

>>> import numpy as np
>>> fb = simulate_feedback(np.ones(1000, bool), np.ones(1000, bool), seed=0)
>>> sorted(fb.columns)
['feedback', 'heavy_user', 'latency_s', 'user_id']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FeedbackParams", "simulate_feedback", "implicit_failures", "accuracy_estimates", "rule_quality",
           "latency_buckets", "FAILURE_SIGNALS"]

FAILURE_SIGNALS = ("signal_retry", "signal_correction", "signal_edit", "signal_abandon")
"""Implicit signals that say an answer failed (a copy says it worked and counts against failure)."""


@dataclass(frozen=True)
class FeedbackParams:
    """The explicit-feedback simulator's population (defaults: ~0.6% of requests rated)."""

    n_users: int = 400
    """Distinct users."""
    heavy_user_share: float = 0.05
    """Share of users who are heavy users."""
    heavy_request_share_easy: float = 0.45
    """P(heavy user) for an ``easy`` request (heavy users ask what they know works)."""
    heavy_request_share_hard: float = 0.10
    """P(heavy user) for any other request."""
    p_feedback_heavy: float = 0.015
    """P(a heavy user rates a request)."""
    p_feedback_light: float = 0.002
    """P(anyone else rates a request)."""
    p_up_right: float = 0.90
    """P(thumbs up | answer right, median latency)."""
    p_up_wrong: float = 0.50
    """P(thumbs up | answer wrong, median latency): raters miss many wrong answers (an empty segment looks fine)."""
    latency_effect: float = 0.25
    """How much faster-than-median answers gain (slower lose) in P(thumbs up), whatever their correctness."""
    latency_median_s: float = 1.5
    """Median answer latency in seconds (lognormal)."""


def simulate_feedback(correct, easy, *, seed: int, params: FeedbackParams | None = None,
                      latency_s=None) -> pd.DataFrame:
    """Users, latencies and thumbs for requests whose answers were ``correct`` (bools); ``easy`` marks the requests
    heavy users prefer. Returns ``user_id, heavy_user, latency_s, feedback`` (1 up, -1 down, NaN none), one row per
    request, deterministic in ``seed``. Latency is drawn independently of correctness unless given."""
    p = params or FeedbackParams()
    correct = np.asarray(correct, dtype=bool)
    easy = np.asarray(easy, dtype=bool)
    rng = np.random.default_rng(seed)
    n = len(correct)
    n_heavy = max(1, int(round(p.n_users * p.heavy_user_share)))
    heavy = rng.random(n) < np.where(easy, p.heavy_request_share_easy, p.heavy_request_share_hard)
    user = np.where(heavy, rng.integers(0, n_heavy, n), rng.integers(n_heavy, max(p.n_users, n_heavy + 1), n))
    lat = (np.asarray(latency_s, dtype=float) if latency_s is not None
           else p.latency_median_s * np.exp(rng.normal(0.0, 0.6, n)))
    rates = rng.random(n) < np.where(heavy, p.p_feedback_heavy, p.p_feedback_light)
    fast = np.clip(np.log(p.latency_median_s / lat), -1.0, 1.0)  # +1 much faster than the median, -1 much slower
    p_up = np.clip(np.where(correct, p.p_up_right, p.p_up_wrong) + p.latency_effect * fast, 0.02, 0.98)
    up = rng.random(n) < p_up
    fb = np.where(rates, np.where(up, 1.0, -1.0), np.nan)
    return pd.DataFrame({"user_id": [f"u{u:04d}" for u in user], "heavy_user": heavy, "latency_s": lat.round(3),
                         "feedback": fb})


def implicit_failures(logs: pd.DataFrame, min_signals: int = 2,
                      signals: tuple[str, ...] = FAILURE_SIGNALS) -> pd.Series:
    """A request failed when at least ``min_signals`` failure signals fired (a copy cancels one)."""
    if min_signals < 1:
        raise ValueError(f"min_signals must be >= 1, got {min_signals}")
    cols = [c for c in signals if c in logs.columns]
    if not cols:
        raise KeyError(f"no implicit signal columns among {', '.join(signals)}")
    n = logs[cols].fillna(False).astype(bool).sum(axis=1)
    if "signal_copy" in logs.columns:
        n = n - logs["signal_copy"].fillna(False).astype(bool).astype(int)
    return n >= min_signals


def rule_quality(predicted_fail: pd.Series, true_fail: pd.Series) -> dict:
    """Precision and recall of a failure rule against the truth."""
    pf, tf = np.asarray(predicted_fail, bool), np.asarray(true_fail, bool)
    tp = int((pf & tf).sum())
    return {"precision": tp / pf.sum() if pf.sum() else float("nan"),
            "recall": tp / tf.sum() if tf.sum() else float("nan"), "flagged": int(pf.sum()), "failed": int(tf.sum())}


def _wilson(k: int, n: int) -> tuple[float, float, float]:
    from ..evaluation.metrics import wilson

    return wilson(int(k), int(n))


def accuracy_estimates(logs: pd.DataFrame, correct: pd.Series | None, *, min_signals: int = 2, n_boot: int = 2000,
                       seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Three estimates of accuracy and the survivorship gap.

    ``logs``: one row per request with ``feedback`` (1 / -1 / NaN) and the implicit signal columns; ``correct``:
    the truth per request (None for user data: the true row and the gap are NaN). Returns ``(table, extra)``:
    ``table`` has ``estimate, value, lo, hi, n`` for ``explicit``, ``implicit``, ``true`` and ``survivorship_gap``;
    ``extra`` the feedback rate and the implicit rule's precision/recall against the truth.
    """
    fb = logs["feedback"].to_numpy(dtype=float) if "feedback" in logs.columns else np.full(len(logs), np.nan)
    rated = ~np.isnan(fb)
    up = fb == 1
    rows = [("explicit", *_wilson(up[rated].sum(), rated.sum()), int(rated.sum()))]
    fail = implicit_failures(logs, min_signals).to_numpy()
    rows.append(("implicit", *_wilson((~fail).sum(), len(fail)), len(fail)))
    extra = {"feedback_rate": float(rated.mean()) if len(rated) else float("nan"), "n_feedback": int(rated.sum())}
    if correct is not None:
        c = np.asarray(correct, dtype=bool)
        rows.append(("true", *_wilson(c.sum(), len(c)), len(c)))
        q = rule_quality(fail, ~c)
        extra.update(implicit_precision=q["precision"], implicit_recall=q["recall"])
        if rated.any():
            gap = up[rated].mean() - c.mean()
            rng = np.random.default_rng(seed)
            boots = []
            for _ in range(n_boot):  # resample requests: both the rated subset and the population move
                idx = rng.integers(0, len(c), len(c))
                r = rated[idx]
                if r.any():
                    boots.append(up[idx][r].mean() - c[idx].mean())
            lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (np.nan, np.nan)
            rows.append(("survivorship_gap", float(gap), float(lo), float(hi), int(rated.sum())))
        else:
            rows.append(("survivorship_gap", np.nan, np.nan, np.nan, 0))
    else:
        rows.append(("true", np.nan, np.nan, np.nan, 0))
        rows.append(("survivorship_gap", np.nan, np.nan, np.nan, int(rated.sum())))
        extra.update(implicit_precision=float("nan"), implicit_recall=float("nan"))
    return pd.DataFrame(rows, columns=["estimate", "value", "lo", "hi", "n"]), extra


def latency_buckets(logs: pd.DataFrame, correct: pd.Series | None, *,
                    edges: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, float("inf"))) -> pd.DataFrame:
    """Per latency bucket: requests, rated requests, thumbs-up rate (Wilson interval) and true accuracy. If raters
    favour speed, the thumbs-up rate falls with latency while the true accuracy does not."""
    lat = logs["latency_s"].astype(float)
    bucket = pd.cut(lat, bins=list(edges), right=False)
    fb = logs["feedback"].astype(float) if "feedback" in logs.columns else pd.Series(np.nan, index=logs.index)
    c = pd.Series(np.asarray(correct, dtype=float), index=logs.index) if correct is not None else None
    rows = []
    for b, idx in logs.groupby(bucket, observed=False).groups.items():
        f = fb.loc[idx].dropna()
        v, lo, hi = _wilson(int((f == 1).sum()), len(f))
        rows.append({"latency": str(b), "n": len(idx), "n_rated": len(f), "thumbs_up": v, "lo": lo, "hi": hi,
                     "true_accuracy": float(c.loc[idx].mean()) if c is not None and len(idx) else float("nan")})
    return pd.DataFrame(rows)
