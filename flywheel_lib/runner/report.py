"""HTML for a run: each executed notebook rendered, and ``index.html``, the report a researcher shares.

The index is one self-contained page per run folder: status, headline metrics, the stages with their timings and
links to the executed notebooks (code hidden by default, one click shows it), the figures the stages saved,
parameters, data lineage, and the environment. Links are relative, so the folder can be zipped and sent.
"""

from __future__ import annotations

import html
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


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def stage_rows(m: dict[str, Any], prefix: str = "", headline: bool = True) -> list[list[str]]:
    rows = []
    for s in m.get("stages", []):
        st = s.get("status", "?")
        links = []
        if s.get("html"):
            links.append(f'<a href="{_e(prefix + s["html"])}">report</a>')
        if s.get("notebook"):
            links.append(f'<a href="{_e(prefix + s["notebook"])}">notebook</a>')
        err = ""
        if st in ("failed", "interrupted"):
            err = f'<div class="failed">{_e(s.get("failed_cell") or "")}<br>{_e(s.get("error", ""))}</div>'
        if s.get("reused_from"):
            err = f'<span class="muted">from {_e(s["reused_from"])}</span>'
        heads = [f"{_e(k)} = {_e(fmt_value(v))}" for k, v in (s.get("metrics") or {}).items()
                 if headline and k in (m.get("headline") or {})]
        dur = s.get("duration_s")
        rows.append([
            f"<b>{_e(s['name'])}</b>", f'<span class="{_e(st)}">{_e(st)}</span>',
            f'<span class="num">{dur:.1f}s</span>' if isinstance(dur, (int, float)) else "",
            " · ".join(links), "<br>".join(heads) + err,
        ])
    return rows


def _dirty_mark(git: dict) -> str:
    if git.get("dirty"):
        return " (dirty)"
    if git.get("commit") and git.get("dirty") is None:
        return " (dirty unknown)"
    return ""


def write_index(run_dir: Path, m: dict[str, Any]) -> Path:
    """Write ``<run>/index.html`` from the manifest."""
    run_dir = Path(run_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(m['run_id'])}</title>"
             f"<style>{CSS}</style></head><body>"]
    status = m.get("status", "?")
    git = m.get("git") or {}
    parts.append(f"<h1>Run {_e(m['run_id'])}</h1><p>recipe <b>{_e(m.get('recipe'))}</b> "
                 f"(<code>{_e(m.get('recipe_path', ''))}</code>) · status <span class='{_e(status)}'>{_e(status)}</span>"
                 f" · {_e(fmt_value(m.get('duration_s') or 0))} s · commit <code>{_e((git.get('commit') or '?')[:10])}</code>"
                 f"{_dirty_mark(git)} · {_e(m.get('created_at', ''))}</p>")
    if m.get("description"):
        parts.append(f"<p class='muted'>{_e(m['description'])}</p>")
    parts.append(_findings(run_dir, m))
    by_stage = m.get("headline_by_stage") or {}
    if by_stage:
        cards = "".join(
            f"<div class='card'><h3>{_e(stage)}</h3>" + _table(
                [[_e(k), f"<span class='num'>{_e(v)}</span>"]
                 for k, v in headline_cells(kv, (m.get("metrics") or {}).get(stage) or {})],
                ["metric", "value [95% interval]"])
            + "</div>" for stage, kv in by_stage.items())
        parts.append(f"<h2>Headline</h2><div class='cards'>{cards}</div>")
    tables = (m.get("notes") or {}).get("05_evaluate", {}).get("headline_table")
    if tables:
        parts.append(_records_table(tables))
    parts.append("<h2>Stages</h2>" + _table(stage_rows(m, headline=not by_stage),
                                            ["stage", "status", "time", "links", "headline / error"]))
    figs = [f for f in m.get("figures", []) if (run_dir / f).exists()]
    if figs:
        parts.append("<h2>Figures</h2><div class='figs'>" + "".join(
            f"<figure><img src='{_e(f)}' alt='{_e(Path(f).stem)}'><figcaption class='muted'>{_e(Path(f).stem)}"
            f"</figcaption></figure>" for f in figs) + "</div>")
    notes = m.get("notes") or {}
    decision = notes.get("05_evaluate", {}).get("promotion")
    if decision:
        parts.append(f"<h2>Promotion</h2><pre>{_e(json.dumps(decision, indent=2))}</pre>")
    lineage = [["parent", _e(json.dumps(m.get("parent")))]] if m.get("parent") else []
    lineage += [[_e(k), f"<code>{_e(v)}</code>"] for k, v in (m.get("taxonomy") or {}).items()]
    lineage += [[_e(k), f"<code>{_e(v[:16])}</code>"] for k, v in (m.get("data_hashes") or {}).items()]
    if lineage:
        parts.append("<h2>Data lineage</h2>" + _table(lineage, ["input", "version / sha256"]))
    parts.append("<h2>Parameters in effect</h2>")
    for stage, params in (m.get("params_in_effect") or {}).items():
        rows = [[_e(k), f"<code>{_e(json.dumps(v, default=str))}</code>",
                 "passed" if k in (m.get("params_passed") or {}).get(stage, {}) else "<span class='muted'>default</span>"]
                for k, v in params.items() if k != "run_dir"]
        parts.append(f"<details><summary>{_e(stage)}</summary>{_table(rows, ['key', 'value', ''])}</details>")
    pk = m.get("packages") or {}
    env_rows = [["python", _e(m.get("python"))], ["platform", _e(m.get("platform"))]]
    env_rows += [[_e(k), _e(v)] for k, v in pk.items() if v]
    parts.append("<h2>Environment</h2><details><summary>versions</summary>" + _table(env_rows, ["", ""])
                 + "</details><p><a href='manifest.json'>manifest.json</a> · <a href='recipe.yaml'>recipe.yaml</a></p>")
    parts.append("</body></html>")
    out = run_dir / "index.html"
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return out


_TABLE_TITLES = {"production_vs_curated": "Production-only model vs curated, same base model and steps",
                 "naive_vs_curated": "Naive merge vs curated, same base model and steps"}


def _findings(run_dir: Path, m: dict[str, Any]) -> str:
    """What the cycle found, first: the promotion decision and its reason, the seed's two comparison tables (rates,
    difference, McNemar p), and the cycle verdict, before any per-stage metric."""
    notes = m.get("notes") or {}
    out: list[str] = []
    decision = notes.get("05_evaluate", {}).get("promotion")
    if decision:
        verb = "promoted" if decision.get("promoted") else "kept the baseline"
        out.append(f"<p><b>{_e(verb)}</b>: {_e(decision.get('candidate'))} vs {_e(decision.get('baseline'))} "
                   f"&rarr; deployed <b>{_e(decision.get('winner'))}</b>. {_e(decision.get('reason', ''))}</p>")
    comp = artifact_path(run_dir, "comparisons")
    if comp.exists():
        import pandas as pd

        t = pd.read_parquet(comp)
        for name, g in t.groupby("table", sort=False):
            rows = [[_e(r.metric), _e(fmt_value(r.rate_a)), _e(fmt_value(r.rate_b)), _e(f"{r.diff:+.3f}"),
                     _e(f"{r.p_value:.3g}" if r.p_value == r.p_value else "-"), _e(int(r.n))]
                    for r in g.itertuples()]
            a, b = g["a"].iloc[0], g["b"].iloc[0]
            out.append(f"<h3>{_e(_TABLE_TITLES.get(name, name))}</h3>"
                       + _table(rows, ["metric", str(a), str(b), "difference", "McNemar p", "items"]))
    verdict = notes.get("06_flywheel", {}).get("cycle_verdict")
    if verdict:
        out.append(f"<p><b>Across cycles</b>: {_e(verdict)}</p>")
    return ("<h2>What this cycle found</h2>" + "".join(out)) if out else ""


def _records_table(t: Any) -> str:
    """A list of dicts (e.g. the evaluation's comparison table) as HTML."""
    if isinstance(t, dict):
        return "".join(f"<h3>{_e(k)}</h3>{_records_table(v)}" for k, v in t.items())
    if not t:
        return ""
    head = list(t[0].keys())
    rows = [[_e(fmt_value(r.get(h, ""))) for h in head] for r in t]
    return _table(rows, head)
