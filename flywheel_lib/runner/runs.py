"""List, show and compare run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..io import read_json
from ..stage import runs_dir
from .execute import find_run
from .manifest import run_state, runner_gone
from .report import fmt_value

__all__ = ["list_runs", "runs_table", "show_run", "compare_runs", "flatten"]


def list_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """Every run's manifest, oldest first; ``status`` is the run's state now (:func:`run_state`: a ``running`` run
    whose runner is gone reads ``dead``)."""
    d = root or runs_dir()
    if not d.exists():
        return []
    out: list[dict[str, Any]] = []
    for r in sorted(d.iterdir()):
        m = r / "manifest.json"
        if m.exists():
            try:
                data = read_json(m)
            except ValueError:
                out.append({"run_id": r.name, "status": "unreadable manifest"})
                continue
            out.append({**data, "status": run_state(data, r)})
    return out


def runs_table(root: Path | None = None, recipe: str | None = None) -> pd.DataFrame:
    rows = []
    for m in list_runs(root):
        if recipe and m.get("recipe") != recipe:
            continue
        # the latest stages' headline first: what a cycle ended with matters more than how it began
        by_stage = m.get("headline_by_stage") or {}
        head = {k: v for kv in reversed(list(by_stage.values())) for k, v in kv.items()} or m.get("headline") or {}
        rows.append({
            "run_id": m.get("run_id"),
            "recipe": m.get("recipe"),
            "status": m.get("status"),
            "duration_s": m.get("duration_s"),
            "stages": ",".join(s["name"][:2] for s in m.get("stages", []) if s.get("status") in ("succeeded", "reused")),
            "headline": "; ".join(f"{k}={fmt_value(v)}" for k, v in list(head.items())[:4]),
        })
    return pd.DataFrame(rows, columns=["run_id", "recipe", "status", "duration_s", "stages", "headline"])


def _status_line(m: dict[str, Any], run_dir: Path) -> str:
    status = run_state(m, run_dir)
    if status == "dead":
        running = next((s["name"] for s in m.get("stages", []) if s.get("status") == "running"), None)
        return f"dead{f' during {running}' if running else ''} ({runner_gone(m.get('runner'), run_dir)})"
    if status == "interrupted" and m.get("interrupted"):
        return f"interrupted by {m['interrupted'].get('signal')} during {m['interrupted'].get('stage')}"
    return str(status)


def show_run(ref: str) -> str:
    run_dir = find_run(ref)
    m = read_json(run_dir / "manifest.json")
    git = m.get("git") or {}
    lines = [
        f"run       {m['run_id']}",
        f"recipe    {m.get('recipe')} ({m.get('recipe_path')})",
        f"status    {_status_line(m, run_dir)}   duration {fmt_value(m.get('duration_s') or 0)} s",
        f"created   {m.get('created_at')}",
        f"git       {git.get('commit')} {'(dirty)' if git.get('dirty') else ''}"
        f"{'(dirty unknown: ' + git['dirty_error'] + ')' if git.get('dirty_error') else ''}",
        f"python    {m.get('python')}",
    ]
    if m.get("parent"):
        lines.append(f"parent    {m['parent']}")
    if m.get("overrides"):
        lines.append(f"overrides {' '.join(m['overrides'])}")
    for k, v in (m.get("taxonomy") or {}).items():
        lines.append(f"taxonomy  {k}: {v}")
    lines.append("stages:")
    for s in m.get("stages", []):
        dur = s.get("duration_s")
        extra = f"  {s.get('failed_cell')}: {s.get('error')}" if s.get("status") == "failed" else ""
        extra += f"  {s.get('error')}" if s.get("status") == "interrupted" else ""
        extra += f"  (from {s['reused_from']})" if s.get("reused_from") else ""
        lines.append(f"  {s['name']:<13} {s.get('status', '?'):<10} {f'{dur:.1f}s' if dur else '':>8}{extra}")
    if m.get("headline"):
        lines.append("headline:")
        lines += [f"  {k:<32} {fmt_value(v)}" for k, v in m["headline"].items()]
    if m.get("data_hashes"):
        lines.append("inputs:")
        lines += [f"  {k}  {v[:12]}" for k, v in m["data_hashes"].items()]
    return "\n".join(lines)


def flatten(d: dict) -> dict[str, Any]:
    """``{stage: {key: value}}`` -> ``{"stage.key": value}`` (one level, values kept as they are)."""
    out = {}
    for stage, kv in (d or {}).items():
        if isinstance(kv, dict):
            out.update({f"{stage}.{k}": v for k, v in kv.items()})
        else:
            out[stage] = kv
    return out


def compare_runs(a: str, b: str) -> dict[str, pd.DataFrame]:
    """Parameters that differ, metrics side by side, and taxonomy versions, for two runs."""
    ma, mb = (read_json(find_run(x) / "manifest.json") for x in (a, b))
    ida, idb = ma["run_id"], mb["run_id"]
    pa, pb = flatten(ma.get("params_in_effect", {})), flatten(mb.get("params_in_effect", {}))
    prows = [{"param": k, ida: pa.get(k, "—"), idb: pb.get(k, "—")}
             for k in sorted(set(pa) | set(pb)) if not k.endswith(".run_dir") and pa.get(k) != pb.get(k)]
    xa, xb = flatten(ma.get("metrics", {})), flatten(mb.get("metrics", {}))
    mrows = []
    for k in sorted(set(xa) | set(xb)):
        va, vb = xa.get(k), xb.get(k)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool) else None
        mrows.append({"metric": k, ida: va, idb: vb, "delta": delta})
    ta, tb = ma.get("taxonomy") or {}, mb.get("taxonomy") or {}
    trows = [{"taxonomy": k, ida: ta.get(k, "—"), idb: tb.get(k, "—"), "same": ta.get(k) == tb.get(k)}
             for k in sorted(set(ta) | set(tb))]
    return {
        "params": pd.DataFrame(prows, columns=["param", ida, idb]),
        "metrics": pd.DataFrame(mrows, columns=["metric", ida, idb, "delta"]),
        "taxonomy": pd.DataFrame(trows, columns=["taxonomy", ida, idb, "same"]),
    }
