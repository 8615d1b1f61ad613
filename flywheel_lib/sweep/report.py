"""The sweep report: ``<sweep>/index.html``, evidence across seeds for every configuration.

It reads ``sweep.json`` and the run folders of the points that succeeded, and shows each headline metric's mean
with a 95% t-interval per configuration, the paired comparisons of 05_evaluate's variants (the seed's tables,
:data:`~flywheel_lib.evaluation.compare.SEED_TABLES`) pooled across seeds by the Cochran-Mantel-Haenszel test
(recomputed from each run's ``artifacts/predictions.parquet`` with
:func:`~flywheel_lib.evaluation.item_outcomes`), plots of each metric against each swept parameter (PNG, inline),
and the points with links to their runs. The statistics are :mod:`flywheel_lib.sweep.stats`; the tables also go
to ``metrics.csv`` and ``comparisons.csv``.
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import atomic_path, read_json
from ..paths import artifact_path, runs_dir
from .stats import mcnemar_counts, pool_comparisons, summarize_metrics

__all__ = ["collect", "write_sweep_report", "COMPARE_METRICS", "MAX_PLOTTED"]

COMPARE_METRICS = ("pass_rate", "refusal_accuracy", "false_refusal_rate", "zero_result_rate", "query_pass_rate")
"""The per-item metrics compared between variants (as 05_evaluate's comparison tables)."""
MAX_PLOTTED = 12
"""At most this many metrics per parameter plot: those whose configuration means differ most (relative)."""


def _solvable_id(m: dict[str, Any]) -> str:
    """The taxonomy's solvable category for a run (from the taxonomy its 05_evaluate used), else ``solvable``."""
    path = ((m.get("params_in_effect") or {}).get("05_evaluate") or {}).get("taxonomy")
    if path:
        try:
            from ..taxonomy import load_taxonomy

            return load_taxonomy(path).solvable_id
        except Exception:  # noqa: BLE001 - an unreadable taxonomy falls back to the default id
            pass
    return "solvable"


def _comparisons(run_dir: Path, m: dict[str, Any], point: dict[str, Any]) -> list[dict[str, Any]]:
    from ..evaluation.compare import SEED_TABLES
    from ..evaluation.metrics import item_outcomes

    path = artifact_path(run_dir, "predictions")
    if not path.exists():
        return []
    pred = pd.read_parquet(path)
    oc = item_outcomes(pred, _solvable_id(m))
    present = set(oc["variant"])
    rows = []
    for name, (a, b) in SEED_TABLES.items():
        if a not in present or b not in present:
            continue
        for metric in COMPARE_METRICS:
            rows.append({"config": point["config"], "comparison": name, "a": a, "b": b, "metric": metric,
                         "seed": point["seed"], **mcnemar_counts(oc, a, b, metric)})
    return rows


def collect(sweep_dir: Path) -> dict[str, Any]:
    """The sweep record, the metric values (long: ``config, seed, metric, value``) and the per-seed McNemar tables
    of its finished points."""
    sweep = read_json(Path(sweep_dir) / "sweep.json")
    values, tables = [], []
    for p in sweep["points"]:
        if p.get("status") != "succeeded" or not p.get("run_id"):
            continue
        run_dir = runs_dir() / p["run_id"]
        m = read_json(run_dir / "manifest.json", default={}) or {}
        for k, v in (m.get("headline") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values.append({"config": p["config"], "seed": p["seed"], "metric": k, "value": float(v)})
        tables += _comparisons(run_dir, m, p)
    return {"sweep": sweep, "values": pd.DataFrame(values, columns=["config", "seed", "metric", "value"]),
            "tables": pd.DataFrame(tables)}


def _varying(summary: pd.DataFrame) -> list[str]:
    """Metrics ordered by how much their configuration means differ (relative to their size); constant ones out."""
    spread = {}
    for metric, g in summary.groupby("metric", sort=False):
        means = g["mean"].dropna()
        if len(means) > 1 and means.max() != means.min():
            spread[metric] = (means.max() - means.min()) / (abs(means).max() or 1.0)
    return sorted(spread, key=lambda k: -spread[k])


def _label(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def _plots(sweep: dict, summary: pd.DataFrame) -> list[dict[str, str]]:
    """For each swept parameter, metric mean (error bars: 95% t-interval) against its values; one line per value
    of the other parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = sweep["spec"]["grid"]
    metrics = _varying(summary)[:MAX_PLOTTED]
    if not metrics:
        return []
    cfg_params = {p["config"]: p["params"] for p in sweep["points"]}
    out = []
    for key, vals in grid.items():
        if len(vals) < 2:
            continue
        n = len(metrics)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            g = summary[summary["metric"] == metric]
            lines: dict[str, list] = {}
            for r in g.itertuples():
                params = cfg_params.get(r.config, {})
                other = ", ".join(f"{k}={_label(v)}" for k, v in params.items() if k != key) or metric
                lines.setdefault(other, []).append((vals.index(params[key]) if params.get(key) in vals else None, r))
            for other, pts in lines.items():
                pts = sorted((x, r) for x, r in pts if x is not None)
                xs = [x for x, _ in pts]
                ys = [r.mean for _, r in pts]
                err = [[max(0.0, r.mean - r.lo) if r.lo == r.lo else 0.0 for _, r in pts],
                       [max(0.0, r.hi - r.mean) if r.hi == r.hi else 0.0 for _, r in pts]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=other)
            ax.set_xticks(range(len(vals)), [_label(v) for v in vals])
            ax.set_title(metric, fontsize=9)
            ax.set_xlabel(key, fontsize=8)
            ax.tick_params(labelsize=8)
            if len(lines) > 1:
                ax.legend(fontsize=6)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        out.append({"title": f"metrics against {key} (mean, 95% t-interval across seeds)",
                    "png": base64.b64encode(buf.getvalue()).decode("ascii")})
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def _pfmt(p: Any) -> str:
    return "-" if p is None or p != p else f"{p:.3g}"


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``<sweep>/index.html`` (and ``metrics.csv``, ``comparisons.csv``) from the sweep's runs."""
    import jinja2

    from ..runner.report import CSS
    from .template import SWEEP_HTML

    sweep_dir = Path(sweep_dir)
    c = collect(sweep_dir)
    sweep, values, tables = c["sweep"], c["values"], c["tables"]
    summary = summarize_metrics(values) if not values.empty else pd.DataFrame(
        columns=["config", "metric", "mean", "lo", "hi", "sd", "n"])
    pooled = pool_comparisons(tables) if not tables.empty else pd.DataFrame()
    if not summary.empty:
        summary.to_csv(sweep_dir / "metrics.csv", index=False)
    if not pooled.empty:
        pooled.to_csv(sweep_dir / "comparisons.csv", index=False)
    configs = list(dict.fromkeys(p["config"] for p in sweep["points"]))
    varying = _varying(summary) if not summary.empty else []
    names = varying + [m for m in dict.fromkeys(summary["metric"]) if m not in varying]
    points = sweep["points"]
    counts = {"succeeded": sum(p["status"] == "succeeded" for p in points),
              "failed": sum(p["status"] == "failed" for p in points)}
    counts["other"] = len(points) - counts["succeeded"] - counts["failed"]
    env = jinja2.Environment(autoescape=True)
    env.filters["pfmt"] = _pfmt
    html = env.from_string(SWEEP_HTML).render(
        s=sweep, spec=sweep["spec"], css=CSS, points=points, counts=counts, configs=configs, metric_names=names,
        metrics={(r.config, r.metric): r for r in summary.itertuples()},
        comparisons=list(pooled.itertuples()) if not pooled.empty else [],
        figures=_plots(sweep, summary) if not summary.empty else [], fmt=_fmt, pfmt=_pfmt,
        runs_rel=os.path.relpath(runs_dir(), sweep_dir), has_csv=not summary.empty)
    out = sweep_dir / "index.html"
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out
