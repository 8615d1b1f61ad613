"""One HTML report for several runs or a whole lineage of cycles (``flywheel report``).

Runs side by side: a headline table (one row per run), each run's stages with links to its executed notebooks
and its figures. Links are relative to where the report is written, so the ``outputs/`` folder can be shared whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_path, read_json
from ..runner.report import CSS, _e, _table, fmt_value, stage_rows

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
    """Write one HTML page comparing ``run_dirs`` (each a run folder with a manifest)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ms = [(Path(d).resolve(), read_json(Path(d) / "manifest.json")) for d in run_dirs]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
             f"</head><body><h1>{_e(title)}</h1>"]
    keys: list[str] = []
    for _, m in ms:
        keys += [k for k in (m.get("headline") or {}) if k not in keys]
    rows = []
    for d, m in ms:
        rel = os.path.relpath(d / "index.html", out.parent)
        par = m.get("parent") or {}
        rows.append([f"<a href='{_e(rel)}'>{_e(m['run_id'])}</a>", _e(par.get("cycle", "")),
                     f"<span class='{_e(m.get('status'))}'>{_e(m.get('status'))}</span>",
                     _e(fmt_value(m.get("duration_s") or 0))]
                    + [_e(fmt_value(m.get("headline", {}).get(k, ""))) for k in keys])
    parts.append("<h2>Headline</h2>" + _table(rows, ["run", "cycle", "status", "seconds", *keys]))
    for d, m in ms:
        prefix = os.path.relpath(d, out.parent) + "/"
        parts.append(f"<h2>{_e(m['run_id'])}</h2><p class='muted'>{_e(m.get('description', ''))} · taxonomy "
                     f"{_e(', '.join(str(v) for v in (m.get('taxonomy') or {}).values()))}</p>")
        parts.append(_table(stage_rows(m, prefix), ["stage", "status", "time", "links", "headline / error"]))
        figs = [f for f in m.get("figures", []) if (d / f).exists()]
        if figs:
            parts.append("<div class='figs'>" + "".join(
                f"<figure><img src='{_e(prefix + f)}' alt='{_e(Path(f).stem)}'><figcaption class='muted'>"
                f"{_e(Path(f).stem)}</figcaption></figure>" for f in figs) + "</div>")
    parts.append("</body></html>")
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out
