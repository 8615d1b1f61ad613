"""HTML for a run: each executed notebook rendered, and ``index.html``, the report a researcher shares.

The index is one self-contained page per run folder: status, headline metrics, the stages with their timings and
links to the executed notebooks (code hidden by default, one click shows it), the figures the stages saved,
parameters, data lineage, and the environment. Links are relative, so the folder can be zipped and sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_path
from ..paths import artifact_path

__all__ = ["render_notebook_html", "write_index", "fmt_value", "CSS"]

CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5} .succeeded,.reused{color:#17702e;font-weight:600} .failed{color:#b00020;font-weight:600}
.skipped,.pending,.interrupted,.dead{color:#888} .muted{color:#777} code{background:#f4f4f4;padding:0 3px}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs figure{margin:0;max-width:520px} .figs img{max-width:100%;border:1px solid #eee}
.cards{display:flex;flex-wrap:wrap;gap:14px}.card h3{font-size:.95em;margin:.2em 0}
details{margin:.4em 0} summary{cursor:pointer} .num{text-align:right;font-variant-numeric:tabular-nums}
"""

_HIDE_CODE = """
<style>body.hide-code .jp-Cell.jp-CodeCell .jp-Cell-inputWrapper{display:none}
#fw-toggle{position:fixed;top:8px;right:12px;z-index:1000;padding:4px 10px;font:13px sans-serif}</style>
<script>document.addEventListener('DOMContentLoaded',function(){document.body.classList.add('hide-code');
var b=document.createElement('button');b.id='fw-toggle';b.textContent='show code';b.onclick=function(){
var h=document.body.classList.toggle('hide-code');b.textContent=h?'show code':'hide code'};document.body.appendChild(b)});</script>
"""


def render_notebook_html(notebook: Path, out: Path) -> Path:
    """Render an executed notebook to standalone HTML, code cells hidden behind a toggle."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    body = body.replace("</head>", _HIDE_CODE + "</head>", 1)
    with atomic_path(out) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return out


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def fmt_headline(key: str, v: Any) -> str:
    """One precision for the index's headline figures: three decimals, p-values to two significant digits,
    counts with thousands separators."""
    if isinstance(v, float) and not isinstance(v, bool):
        if key.startswith("p_") or key.endswith(("_p", "_pvalue", "_p_value")) or "_p_" in key:
            return f"{v:.2g}"
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.3f}"
    return fmt_value(v)


def headline_cells(headline: dict[str, Any], metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric, value)`` rows for a stage's headline card: a metric with ``<key>_lo`` and ``<key>_hi`` among the
    stage's metrics shows its 95% interval beside it (``0.695 [0.649, 0.738]``); the bounds get no row of their
    own."""
    rows = []
    for k, v in headline.items():
        if k.endswith(("_lo", "_hi")) and k[:-3] in headline:
            continue
        lo, hi = metrics.get(f"{k}_lo"), metrics.get(f"{k}_hi")
        text = fmt_headline(k, v)
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and isinstance(v, (int, float)):
            text += f" [{fmt_headline(k, float(lo))}, {fmt_headline(k, float(hi))}]"
        rows.append((k, text))
    return rows


def templates():
    """The reports' jinja2 environment (templates in ``flywheel_lib/runner/templates``, everything escaped)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["stem"] = lambda f: Path(str(f)).stem
    return env


def stage_rows(m: dict[str, Any], prefix: str = "", headline: bool = True) -> list[dict[str, Any]]:
    """One row per stage of manifest ``m`` for the ``stages`` macro: name, status, seconds, links to its report and
    notebook (relative, after ``prefix``), its headline metrics, and why it failed or which run it was reused from."""
    rows = []
    for s in m.get("stages", []):
        st = s.get("status", "?")
        links = [(prefix + s[k], label) for k, label in (("html", "report"), ("notebook", "notebook")) if s.get(k)]
        dur = s.get("duration_s")
        rows.append({
            "name": s["name"], "status": st, "duration": dur if isinstance(dur, (int, float)) else None,
            "links": links, "reused_from": s.get("reused_from"),
            "heads": [f"{k} = {fmt_value(v)}" for k, v in (s.get("metrics") or {}).items()
                      if headline and k in (m.get("headline") or {})],
            "failed": (s.get("failed_cell") or "", s.get("error", "")) if st in ("failed", "interrupted") else None,
        })
    return rows


def _dirty_mark(git: dict) -> str:
    if git.get("dirty"):
        return " (dirty)"
    if git.get("commit") and git.get("dirty") is None:
        return " (dirty unknown)"
    return ""


def _records_tables(t: Any, name: str = "") -> list[tuple[str, list[list[str]], list[str]]]:
    """A list of dicts (e.g. the evaluation's comparison table), or a dict of them by name, as tables."""
    if isinstance(t, dict):
        return [x for k, v in t.items() for x in _records_tables(v, str(k))]
    if not t:
        return []
    head = list(t[0].keys())
    return [(name, [[fmt_value(r.get(h, "")) for h in head] for r in t], head)]


def write_index(run_dir: Path, m: dict[str, Any]) -> Path:
    """Write ``<run>/index.html`` from the manifest (template ``run_index.html.j2``)."""
    run_dir = Path(run_dir)
    git = m.get("git") or {}
    notes = m.get("notes") or {}
    decision = notes.get("05_evaluate", {}).get("promotion")
    metrics = m.get("metrics") or {}
    lineage = [["parent", json.dumps(m.get("parent"))]] if m.get("parent") else []
    lineage += [[k, v] for k, v in (m.get("taxonomy") or {}).items()]
    lineage += [[k, v[:16]] for k, v in (m.get("data_hashes") or {}).items()]
    passed = m.get("params_passed") or {}
    by_stage = m.get("headline_by_stage") or {}
    html_text = templates().get_template("run_index.html.j2").render(
        m=m, css=CSS, status=m.get("status", "?"), duration=fmt_value(m.get("duration_s") or 0),
        commit=(git.get("commit") or "?")[:10], dirty=_dirty_mark(git), found=_findings(run_dir, m),
        cards=[(stage, headline_cells(kv, metrics.get(stage) or {})) for stage, kv in by_stage.items()],
        headline_tables=_records_tables(notes.get("05_evaluate", {}).get("headline_table")),
        stages=stage_rows(m, headline=not by_stage),
        figures=[f for f in m.get("figures", []) if (run_dir / f).exists()],
        promotion=json.dumps(decision, indent=2) if decision else "",
        lineage=lineage,
        params=[(stage, [(k, json.dumps(v, default=str), k in passed.get(stage, {}))
                         for k, v in params.items() if k != "run_dir"])
                for stage, params in (m.get("params_in_effect") or {}).items()],
        env=[["python", m.get("python")], ["platform", m.get("platform")],
             *[[k, v] for k, v in (m.get("packages") or {}).items() if v]])
    out = run_dir / "index.html"
    with atomic_path(out) as tmp:
        tmp.write_text(html_text, encoding="utf-8")
    return out


_TABLE_TITLES = {"production_vs_curated": "Production-only model vs curated, same base model and steps",
                 "naive_vs_curated": "Naive merge vs curated, same base model and steps"}


def _findings(run_dir: Path, m: dict[str, Any]) -> dict[str, Any]:
    """What the cycle found, first: the promotion decision and its reason, the seed's two comparison tables (rates,
    difference, McNemar p), and the cycle verdict, before any per-stage metric."""
    notes = m.get("notes") or {}
    decision = notes.get("05_evaluate", {}).get("promotion")
    tables = []
    comp = artifact_path(run_dir, "comparisons")
    if comp.exists():
        import pandas as pd

        t = pd.read_parquet(comp)
        for name, g in t.groupby("table", sort=False):
            rows = [[r.metric, f"{r.rate_a:.3f}", f"{r.rate_b:.3f}", f"{r.diff:+.3f}",
                     f"{r.p_value:.3g}" if r.p_value == r.p_value else "-", int(r.n)] for r in g.itertuples()]
            tables.append({"title": _TABLE_TITLES.get(str(name), str(name)), "rows": rows,
                           "head": ["metric", str(g["a"].iloc[0]), str(g["b"].iloc[0]), "difference", "McNemar p",
                                    "items"]})
    verdict = notes.get("06_flywheel", {}).get("cycle_verdict")
    return {"any": bool(decision or tables or verdict), "decision": decision, "tables": tables, "verdict": verdict,
            "verb": ("promoted" if decision.get("promoted") else "kept the baseline") if decision else ""}
