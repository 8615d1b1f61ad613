"""The results table of the documentation, generated from run manifests (``flywheel report --results``).

A figure in ``docs/results.md`` or the README is only as good as its link to a run. This module reads the run
manifests, keeps the few fields the table needs in a small JSON extract (``docs/results/runs.json``: run id,
lineage and cycle, git commit and dirty flag, CPU, duration, the candidate's headline metrics), and renders that
extract as one markdown table, written between two markers in each page that shows it::

    <!-- results:begin -->
    ...generated table...
    <!-- results:end -->

The extract lets a test check the committed table against the generator without the run folders.

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

__all__ = ["BEGIN", "END", "extract_run", "collect_runs", "results_table", "replace_between_markers",
           "write_extract", "read_extract"]

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
# The candidate's metrics the table shows (05_evaluate records each as ``<metric>_<variant>``).
METRICS = ("pass_rate", "query_pass_rate", "refusal_recall", "false_refusal_rate")  # query pass: kept, not shown


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
        "candidate": cand,
        "source": "manifest",
        "metrics": metrics,
    }


def _run_dirs(arg: str) -> list[Path]:
    """A run folder, a folder of run folders, a lineage id or a run id, as run folders in cycle order."""
    from ..runner import find_run
    from ..stage import runs_dir
    from .report import lineage_runs

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


def collect_runs(args: Iterable[str], cpu: str | None = None) -> list[dict[str, Any]]:
    """Runs for the table from run folders, lineages, run ids or extracts (``.json``), sorted by lineage and cycle."""
    runs: list[dict[str, Any]] = []
    for a in args:
        if a.endswith(".json") and Path(a).is_file():
            runs += read_extract(Path(a))
        else:
            runs += [extract_run(d, cpu) for d in _run_dirs(a)]
    seen: dict[str, dict] = {r["run_id"]: r for r in runs}
    return sorted(seen.values(), key=lambda r: (r.get("lineage") or r["run_id"], r.get("cycle") or 0, r["run_id"]))


def write_extract(runs: list[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


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


def replace_between_markers(text: str, table: str, where: str = "the page") -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``table``."""
    pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pat.search(text):
        raise ValueError(f"{where} has no {BEGIN} ... {END} markers")
    return pat.sub(lambda _: f"{BEGIN}\n{table}{END}", text, count=1)
