"""``flywheel cycles RECIPE --cycles N``: N runs in a row, each a run of its own linked to its parent.

Cycle 1 is the recipe as written. Cycle k > 1 runs the same recipe with ``parent_run`` set to cycle k-1's folder:
its ``00_data`` takes the parent's simulated traffic (the promoted model's new requests) as the production sample,
its ``03_resolve`` adds the newly accepted labels to the parent's curated corpus, and ``05_evaluate`` compares with
the parent's promoted model. Every manifest records ``parent: {lineage, cycle, parent_run}``; a lineage report
(``outputs/reports/<lineage>.html``) links them all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable

from ..runner import RecipeError, load_recipe, run_recipe
from ..runner.execute import RunResult, stage_notebooks
from ..runner.params import inspect_params
from ..stage import runs_dir
from .report import write_multi_report

__all__ = ["run_cycles"]


def run_cycles(
    recipe: str | Path,
    n_cycles: int,
    *,
    sets: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> tuple[str, list[RunResult], Path]:
    """Run ``n_cycles`` linked cycles; returns (lineage id, results, lineage report path)."""
    if n_cycles < 1:
        raise RecipeError("--cycles must be at least 1")
    r = load_recipe(recipe)
    declared = set()
    for nb in stage_notebooks(r.stages, r.notebook_dir).values():
        declared |= set(inspect_params(nb))
    if "parent_run" not in declared:
        raise RecipeError(f"{recipe}: no stage of this recipe declares `parent_run`, so cycles cannot be linked")
    lineage = f"{datetime.now():%Y%m%d-%H%M%S}_{r.name}_lineage"
    results: list[RunResult] = []
    parent: RunResult | None = None
    for cycle in range(1, n_cycles + 1):
        extra = [f"cycle={cycle}"] if "cycle" in declared else []
        if parent is not None:
            extra.append(f"parent_run={parent.run_dir}")
        link = {"lineage": lineage, "cycle": cycle, "parent_run": parent.run_id if parent else None}
        if echo:
            echo(f"=== cycle {cycle}/{n_cycles} of {lineage} ===")
        res = run_recipe(r, sets=[*(sets or []), *extra], progress=progress, parent=link, echo=echo)
        results.append(res)
        if not res.ok:
            break
        parent = res
    report = write_multi_report([x.run_dir for x in results], runs_dir().parent / "reports" / f"{lineage}.html",
                                title=f"Lineage {lineage}")
    return lineage, results, report
