"""The results table of the documentation, generated from run manifests (``flywheel report --results``).

A figure in ``docs/results.md`` or the README is only as good as its link to a run. This module reads the run
manifests, keeps the few fields the table needs in a small JSON extract (``docs/results/runs.json``: run id,
lineage and cycle, git commit and dirty flag, CPU, duration, the candidate's headline metrics), and renders that
extract as one markdown table, written between two markers in each page that shows it::

    <!-- results:begin -->
    ...generated table...
    <!-- results:end -->

The extract lets a test check the committed table against the generator without the run folders.

A sweep (a folder under ``outputs/sweeps/`` or its id) given to ``--results`` adds its evidence across seeds to the
extract (``sweeps``) and a second table between ``<!-- sweep:begin -->`` and ``<!-- sweep:end -->``: per paired
comparison of the pass rate, the mean rates over the seeds, the mean difference with its t-interval, the
Cochran-Mantel-Haenszel p-value pooled over the seeds and each seed's McNemar p-value
(:mod:`flywheel_lib.sweep.stats`).

>>> runs = [{"run_id": "20261202-140227_demo_6c2c2f", "cycle": 1, "commit": "ac1e595", "dirty": False,
...          "cpu": "x86_64", "duration_s": 1632, "source": "manifest",
...          "metrics": {"n_eval": 400, "pass_rate": 0.708, "query_pass_rate": 0.569, "refusal_recall": 0.8,
...                      "false_refusal_rate": 0.1, "promoted": True}}]
>>> print(results_table(runs).splitlines()[2])
| 20261202-140227_demo_6c2c2f | 1 | ac1e595 | x86_64 | 27.2 | 0.708 [0.66, 0.75] | 0.800 | 0.100 | yes |
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io import read_json

__all__ = ["BEGIN", "END", "SWEEP_BEGIN", "SWEEP_END", "SUMMARY_BEGIN", "SUMMARY_END", "sweep_summary", "LINEAGE_BEGIN", "LINEAGE_END", "lineage_table", "extract_run", "extract_sweep", "collect_runs",
           "collect_sweeps", "results_table", "sweep_table", "replace_between_markers", "write_extract",
           "read_extract", "read_sweeps"]

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
SWEEP_BEGIN = "<!-- sweep:begin -->"
SWEEP_END = "<!-- sweep:end -->"
SUMMARY_BEGIN = "<!-- sweep-summary:begin -->"
SUMMARY_END = "<!-- sweep-summary:end -->"
# The candidate's metrics the table shows (05_evaluate records each as ``<metric>_<variant>``).
METRICS = ("pass_rate", "query_pass_rate", "refusal_recall", "false_refusal_rate")  # query pass: kept, not shown
# A later cycle's figures (05_evaluate and 06_flywheel) for the lineage table.
LOOP_METRICS = ("diff_drift_candidate_vs_deployed", "p_drift_candidate_vs_deployed", "diff_original_candidate_vs_deployed",
                "p_original_candidate_vs_deployed", "pass_rate_deployed_store_drift", "store_gap_share",
                "store_gap_share_new", "diff_drift_vs_first_cycle", "p_drift_vs_first_cycle", "oracle_gap_closed")
FLYWHEEL_METRICS = ("patterns_fixed", "new_scenarios_labelled_panel", "new_scenarios_labelled_review",
                    "new_scenarios_kept_logged", "new_scenarios_left_out")
LINEAGE_BEGIN = "<!-- lineage:begin -->"
LINEAGE_END = "<!-- lineage:end -->"


def _candidate(m: dict) -> str:
    """The variant up for promotion: 05's choice when it made one (a later cycle), else its ``candidate``."""
    choice = ((m.get("notes") or {}).get("05_evaluate") or {}).get("candidate_choice")
    if isinstance(choice, dict) and choice.get("chosen"):
        return str(choice["chosen"])
    return str(((m.get("params_in_effect") or {}).get("05_evaluate") or {}).get("candidate") or "curated")


def extract_run(run_dir: Path, cpu: str | None = None) -> dict[str, Any]:
    """The fields of one run's manifest the results table needs.

    ``cpu``: what to record as the CPU when the manifest names none (it records ``machine``, e.g. ``x86_64``).
    """
    m = read_json(Path(run_dir) / "manifest.json")
    ev = (m.get("metrics") or {}).get("05_evaluate") or {}
    cand = _candidate(m)
    par = m.get("parent") or {}
    git = m.get("git") or {}
    metrics: dict[str, Any] = {"n_eval": ev.get("n_eval"), "promoted": ev.get("promoted")}
    metrics.update({k: ev.get(f"{k}_{cand}") for k in METRICS})
    loop = {k: ev.get(k) for k in LOOP_METRICS if ev.get(k) is not None}
    for name in ("drift", "original"):
        for who, var in (("candidate", cand), ("deployed", "deployed_prev")):
            for suffix in ("", "_lo", "_hi"):
                if ev.get(f"pass_rate_{var}_{name}{suffix}") is not None:
                    loop[f"{name}_{who}{suffix}"] = ev[f"pass_rate_{var}_{name}{suffix}"]
    for who, var in (("candidate", cand), ("deployed", "deployed_prev")):
        if ev.get(f"elo_{var}") is not None:
            loop[f"elo_{who}"] = ev[f"elo_{var}"]
    fw = (m.get("metrics") or {}).get("06_flywheel") or {}
    loop.update({k: fw[k] for k in FLYWHEEL_METRICS if fw.get(k) is not None})
    return {
        "run_id": m["run_id"],
        "recipe": m.get("recipe"),
        "lineage": par.get("lineage"),
        "cycle": par.get("cycle", 1),
        "status": m.get("status"),
        "commit": (git.get("commit") or "")[:7] or None,
        "dirty": git.get("dirty"),
        "cpu": m.get("cpu") or cpu or m.get("machine"),
        "duration_s": m.get("duration_s"),
        **({"stages_run": ran} if (ran := [x for x in m.get("stage_order") or []
                                          if x not in (par.get("reused_stages") or [])]) and par.get("reused_stages")
           else {}),
        "candidate": cand,
        "source": "manifest",
        "metrics": metrics,
        **({"loop": loop} if loop else {}),
    }


def _run_dirs(arg: str) -> list[Path]:
    """A run folder, a folder of run folders, a lineage id or a run id, as run folders in cycle order."""
    from ..runner import find_run
    from ..stage import runs_dir
    from .lineage_report import lineage_runs

    p = Path(arg)
    if (p / "manifest.json").is_file():
        return [p]
    if p.is_dir():
        subs = [d for d in sorted(p.iterdir()) if (d / "manifest.json").is_file()]
        if subs:
            return subs
        raise ValueError(f"{arg}: no manifest.json in it or in its subfolders")
    lin = lineage_runs(arg, runs_dir())
    return lin if lin else [find_run(arg)]


def _sweep_dir(arg: str) -> Path | None:
    """The sweep folder ``arg`` names (a folder with ``sweep.json``, or a sweep id under ``outputs/sweeps``)."""
    from ..sweep.run import sweeps_dir

    for p in (Path(arg), sweeps_dir() / arg):
        if (p / "sweep.json").is_file():
            return p
    return None


def extract_sweep(sweep_dir: Path, cpu: str | None = None) -> dict[str, Any]:
    """The fields of one sweep the sweep table needs: its id, seeds, stages, the run it started from, commit and CPU,
    and per paired comparison of the pass rate its pooled evidence (see the module doc)."""
    from ..sweep.report import collect
    from ..sweep.stats import COUNT_COLUMNS, pool_comparisons

    data = collect(Path(sweep_dir))
    sw, tables = data["sweep"], data["tables"]
    spec = sw.get("spec") or {}
    done = [p for p in sw.get("points", []) if p.get("status") == "succeeded" and p.get("run_id")]
    first = read_json(_run_dir_of(done[0]["run_id"]) / "manifest.json") if done else {}
    git = first.get("git") or {}
    rows = []
    if len(tables):
        t = tables[tables["metric"] == "pass_rate"]
        for r in pool_comparisons(t).to_dict("records"):
            g = t[(t["config"] == r["config"]) & (t["comparison"] == r["comparison"])]
            n = g[COUNT_COLUMNS].sum(axis=1)
            rows.append({"config": r["config"], "comparison": r["comparison"], "a": r["a"], "b": r["b"],
                         "seeds": int(r["seeds"]), "n_per_seed": int(n.max()),
                         "rate_a": float(((g["both"] + g["a_only"]) / n).mean()),
                         "rate_b": float(((g["both"] + g["b_only"]) / n).mean()),
                         "mean_diff": r["mean_diff"], "diff_lo": r["diff_lo"], "diff_hi": r["diff_hi"],
                         "p_value": r["p_value"], "seed_p": list(r["seed_p"])})
    return {"sweep_id": sw["sweep_id"], "recipe": spec.get("recipe_name"), "seeds": sorted({p["seed"] for p in done}),
            "stages": spec.get("stages"), "from_run": spec.get("from_run"), "grid": spec.get("grid") or {},
            "commit": (git.get("commit") or "")[:7] or None, "dirty": git.get("dirty"),
            "cpu": first.get("cpu") or cpu or first.get("machine"), "comparisons": rows}


def _run_dir_of(run_id: str) -> Path:
    from ..stage import runs_dir

    return runs_dir() / run_id


def collect_sweeps(args: Iterable[str], cpu: str | None = None) -> list[dict[str, Any]]:
    """Sweeps for the sweep table from sweep folders, sweep ids or extracts (``.json``)."""
    out: list[dict[str, Any]] = []
    for a in args:
        if a.endswith(".json") and Path(a).is_file():
            out += read_sweeps(Path(a))
        elif (d := _sweep_dir(a)) is not None:
            out.append(extract_sweep(d, cpu))
    return list({s["sweep_id"]: s for s in out}.values())


def collect_runs(args: Iterable[str], cpu: str | None = None) -> list[dict[str, Any]]:
    """Runs for the table from run folders, lineages, run ids or extracts (``.json``), sorted by lineage and cycle
    (sweeps among ``args`` are left to :func:`collect_sweeps`)."""
    runs: list[dict[str, Any]] = []
    for a in args:
        if a.endswith(".json") and Path(a).is_file():
            runs += read_extract(Path(a))
        elif _sweep_dir(a) is None:
            runs += [extract_run(d, cpu) for d in _run_dirs(a)]
    seen: dict[str, dict] = {r["run_id"]: r for r in runs}
    return sorted(seen.values(), key=lambda r: (r.get("lineage") or r["run_id"], r.get("cycle") or 0, r["run_id"]))


def write_extract(runs: list[dict[str, Any]], path: Path, sweeps: list[dict[str, Any]] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"runs": runs}
    if sweeps:
        data["sweeps"] = sweeps
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_sweeps(path: Path) -> list[dict[str, Any]]:
    """The sweeps of a results extract (none in an extract without them)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return list(data.get("sweeps") or []) if isinstance(data, dict) else []


def read_extract(path: Path) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path}: expected a results extract, {{\"runs\": [...]}}")
    return data["runs"]


def _wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    k = round(p * n)
    c = k / n
    d = 1 + z * z / n
    mid = (c + z * z / (2 * n)) / d
    half = z * math.sqrt(c * (1 - c) / n + z * z / (4 * n * n)) / d
    return max(0.0, mid - half), min(1.0, mid + half)


def _num(v: Any) -> str:
    return "–" if v is None else f"{float(v):.3f}"


def results_table(runs: list[dict[str, Any]]) -> str:
    """The markdown table: one row per run, with its id, cycle, commit, CPU, minutes and the candidate's figures.

    The pass rate carries its 95% Wilson interval over ``n_eval`` items; ``recall`` is the share of impossible eval
    items refused with the right category, ``false ref.`` the share of solvable ones refused. Rows stay within
    120 characters, so the README can show the table.
    """
    lines = ["| run | cycle | commit | CPU | min | pass rate [95% CI] | recall | false ref. | promoted |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = set()
    for r in runs:
        m = r.get("metrics") or {}
        p, n = m.get("pass_rate"), m.get("n_eval")
        ci = " [{:.2f}, {:.2f}]".format(*_wilson(float(p), int(n))) if p is not None and n else ""
        commit = (r["commit"] + ("-dirty" if r.get("dirty") else "")) if r.get("commit") else "–"
        mins = f"{r['duration_s'] / 60:.1f}" if r.get("duration_s") else "–"
        if r.get("stages_run") and r.get("duration_s"):  # the others were reused from an earlier run
            ran = r["stages_run"]
            mins += f" ({ran[0][:2]}" + (f"-{ran[-1][:2]})" if len(ran) > 1 else ")")
        promoted = {True: "yes", False: "no"}.get(m.get("promoted"), "–")
        mark = "" if r.get("source", "manifest") == "manifest" else " ¹"
        if mark:
            notes.add(r["source"])
        lines.append(f"| {r['run_id']}{mark} | {r.get('cycle') or '–'} | {commit} | {r.get('cpu') or '–'} | {mins} | "
                     f"{_num(p)}{ci} | {_num(m.get('refusal_recall'))} | {_num(m.get('false_refusal_rate'))} | "
                     f"{promoted} |")
    if notes:
        lines += ["", "¹ " + "; ".join(sorted(notes))]
    return "\n".join(lines) + "\n"


def lineage_table(runs: list[dict[str, Any]]) -> str:
    """The markdown table of a lineage's later cycles: per cycle, the drift slice and the original eval for the
    deployed model and the candidate (95% Wilson intervals), the paired difference and its McNemar p-value, the
    example store at the decision (lever 1: its pass rate and the share of the fine-tune's gain it closes), Elo,
    the gain since the first cycle's model, the share of the gap to the oracle closed, how the new scenarios'
    traffic entered the corpus (unanimous panel / review / the logged label kept / left out) and the
    promotion."""
    lines = ["| run | cycle | drift: deployed → candidate | diff (p) | original: deployed → candidate | diff | "
             "store (gap share: all / new) | Elo cand. / dep. | vs cycle 1 (p) | oracle gap | new rows panel / review / kept / out "
             "| promoted |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def rate(lp: dict, key: str) -> str:
        v = lp.get(key)
        if v is None:
            return "–"
        lo, hi = lp.get(f"{key}_lo"), lp.get(f"{key}_hi")
        return f"{v:.3f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")

    def num(v: Any, fmt: str = "{:+.3f}") -> str:
        return "–" if v is None else fmt.format(v)

    for r in runs:
        lp = r.get("loop") or {}
        if "drift_candidate" not in lp:
            continue
        m = r.get("metrics") or {}
        entry = " / ".join(num(lp.get(k), "{:,}") for k in FLYWHEEL_METRICS[1:])
        elo = f"{num(lp.get('elo_candidate'), '{:.0f}')} / {num(lp.get('elo_deployed'), '{:.0f}')}"
        lines.append(
            f"| {r['run_id']} | {r.get('cycle') or '–'} | {rate(lp, 'drift_deployed')} → {rate(lp, 'drift_candidate')}"
            f" | {num(lp.get('diff_drift_candidate_vs_deployed'))} ({_p(lp.get('p_drift_candidate_vs_deployed'))})"
            f" | {rate(lp, 'original_deployed')} → {rate(lp, 'original_candidate')}"
            f" | {num(lp.get('diff_original_candidate_vs_deployed'))}"
            f" | {num(lp.get('pass_rate_deployed_store_drift'), '{:.3f}')} ({num(lp.get('store_gap_share'), '{:.2f}')}"
            f" / {num(lp.get('store_gap_share_new'), '{:.2f}')})"
            f" | {elo} | {num(lp.get('diff_drift_vs_first_cycle'))} ({_p(lp.get('p_drift_vs_first_cycle'))})"
            f" | {num(lp.get('oracle_gap_closed'), '{:.2f}')} | {entry}"
            f" | {({True: 'yes', False: 'no'}).get(m.get('promoted'), '–')} |")
    return "\n".join(lines) + "\n"


def _p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    if p <= 0:
        return "< 1e-6"  # a manifest keeps six decimals; a pooled test can underflow to 0
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}".rstrip("0").rstrip(".")


def sweep_table(sweeps: list[dict[str, Any]]) -> str:
    """The markdown table of sweeps: one row per sweep and paired comparison of the pass rate (within 120
    characters a row)."""
    lines = ["| sweep | commit | seeds | a vs b | pass rate a → b | diff [95% CI] | pooled p | per seed p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sweeps:
        commit = (s["commit"] + ("-dirty" if s.get("dirty") else "")) if s.get("commit") else "–"
        seeds = ",".join(str(x) for x in s.get("seeds") or [])
        for c in s.get("comparisons") or []:
            ci = f"{c['mean_diff']:+.3f} [{c['diff_lo']:+.2f}, {c['diff_hi']:+.2f}]" \
                if c.get("diff_lo") is not None and not math.isnan(c["diff_lo"]) else f"{c['mean_diff']:+.3f}"
            lines.append(f"| {s['sweep_id']} | {commit} | {seeds} | {c['a']} vs {c['b']} | "
                         f"{c['rate_a']:.3f} → {c['rate_b']:.3f} | {ci} | {_p(c['p_value'])} | "
                         f"{', '.join(_p(p) for p in c.get('seed_p') or [])} |")
    return "\n".join(lines) + "\n"


def sweep_summary(sweeps: list[dict[str, Any]]) -> str:
    """The front page's short form of :func:`sweep_table`: per sweep a line naming it, then its comparisons."""
    out = []
    for s in sweeps:
        seeds = ", ".join(str(x) for x in s.get("seeds") or [])
        commit = (s["commit"] + ("-dirty" if s.get("dirty") else "")) if s.get("commit") else "–"
        start = f" from run `{s['from_run']}`" if s.get("from_run") else ""
        stages = "-".join(x.split("_")[0] for x in s.get("stages") or []) or "every stage"
        out += [f"Sweep `{s['sweep_id']}`: stages {stages}{start},",
                f"seeds {seeds}, commit {commit}, {s.get('cpu') or '–'}.", "", "| comparison | pass rate a → b | diff [95% CI] | pooled p |", "| --- | --- | --- | --- |"]
        for c in s.get("comparisons") or []:
            ci = f"{c['mean_diff']:+.3f} [{c['diff_lo']:+.2f}, {c['diff_hi']:+.2f}]" \
                if c.get("diff_lo") is not None and not math.isnan(c["diff_lo"]) else f"{c['mean_diff']:+.3f}"
            out.append(f"| {c['a']} → {c['b']} | {c['rate_a']:.3f} → {c['rate_b']:.3f} | {ci} | {_p(c['p_value'])} |")
        out.append("")
    return "\n".join(out)


def replace_between_markers(text: str, table: str, where: str = "the page", begin: str = BEGIN,
                            end: str = END) -> str:
    """``text`` with the part between ``begin`` and ``end`` (:data:`BEGIN`, :data:`END`) replaced by ``table``."""
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise ValueError(f"{where} has no {begin} ... {end} markers")
    return pat.sub(lambda _: f"{begin}\n{table}{end}", text, count=1)
