"""One HTML report for several runs or a whole lineage of cycles (``flywheel report``).

Runs side by side: a headline table (one row per run), each run's stages with links to its executed notebooks
and its figures. Links are relative to where the report is written, so the ``outputs/`` folder can be shared whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_path, read_json
from ..runner.report import CSS, fmt_value, stage_rows, templates

__all__ = ["write_multi_report", "lineage_runs"]


def lineage_runs(lineage: str, runs_root: Path) -> list[Path]:
    """Run folders of one lineage (``manifest.parent.lineage``), in cycle order."""
    out = []
    for d in sorted(runs_root.iterdir()) if runs_root.exists() else []:
        mp = d / "manifest.json"
        if not mp.exists():
            continue
        m = read_json(mp)
        par = m.get("parent") or {}
        if par.get("lineage") == lineage:
            out.append((par.get("cycle", 0), d))
    return [d for _, d in sorted(out)]


def write_multi_report(run_dirs: list[Path], out: Path, title: str = "Flywheel runs") -> Path:
    """Write one HTML page comparing ``run_dirs`` (each a run folder with a manifest; template ``runs.html.j2``)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ms = [(Path(d).resolve(), read_json(Path(d) / "manifest.json")) for d in run_dirs]
    keys: list[str] = []
    for _, m in ms:
        keys += [k for k in (m.get("headline") or {}) if k not in keys]
    runs = []
    for d, m in ms:
        prefix = os.path.relpath(d, out.parent) + "/"
        runs.append({"run_id": m["run_id"], "index": os.path.relpath(d / "index.html", out.parent),
                     "cycle": (m.get("parent") or {}).get("cycle", ""), "status": m.get("status"),
                     "seconds": fmt_value(m.get("duration_s") or 0),
                     "headline": [fmt_value(m.get("headline", {}).get(k, "")) for k in keys],
                     "description": m.get("description", ""),
                     "taxonomy": ", ".join(str(v) for v in (m.get("taxonomy") or {}).values()),
                     "stages": stage_rows(m, prefix), "prefix": prefix,
                     "figures": [f for f in m.get("figures", []) if (d / f).exists()]})
    page = templates().get_template("runs.html.j2").render(title=title, css=CSS, keys=keys, runs=runs)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
