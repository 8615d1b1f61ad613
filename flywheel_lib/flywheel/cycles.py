"""``flywheel cycles RECIPE --cycles N``: N runs in a row, each a run of its own linked to its parent.

Cycle 1 is the recipe as written. Cycle k > 1 runs the same recipe with ``parent_run`` set to cycle k-1's folder:
its ``00_data`` takes the parent's simulated traffic (the promoted model's new requests) as the production sample,
its ``03_resolve`` adds the newly accepted labels to the parent's curated corpus, and ``05_evaluate`` compares with
the parent's promoted model. Every manifest records ``parent: {lineage, cycle, parent_run}``; a lineage report
(``outputs/reports/<lineage>.html``) links them all.

``--after RUN`` continues a lineage: the first new cycle takes RUN as its parent (RUN's lineage and cycle number
from its manifest; a run made by ``flywheel run`` starts a lineage as cycle 1), so a researcher can inspect a first
cycle before paying for the next.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..runner import RecipeError, load_recipe, run_recipe
from ..runner.execute import RunResult, stage_notebooks
from ..runner.params import inspect_params
from ..stage import runs_dir
from .lineage import lineage_chain
from .lineage_report import write_multi_report

__all__ = ["run_cycles"]


def run_cycles(
    recipe: str | Path,
    n_cycles: int,
    *,
    sets: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    after: str | Path | None = None,
) -> tuple[str, list[RunResult], Path]:
    """Run ``n_cycles`` linked cycles (after the run ``after``, if given); returns (lineage id, results, report)."""
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
    first, earlier = 1, []
    if after is not None:
        parent, lineage, first = _continue(after, lineage)
        earlier = [v.run_dir for v in lineage_chain(parent.run_dir)]  # the report covers the whole lineage
    for cycle in range(first, first + n_cycles):
        extra = [f"cycle={cycle}"] if "cycle" in declared else []
        if parent is not None:
            extra.append(f"parent_run={parent.run_dir}")
        link = {"lineage": lineage, "cycle": cycle, "parent_run": parent.run_id if parent else None}
        if echo:
            echo(f"=== cycle {cycle}/{first + n_cycles - 1} of {lineage} ===")
        res = run_recipe(r, sets=[*(sets or []), *extra], progress=progress, parent=link, echo=echo)
        results.append(res)
        if not res.ok:
            break
        parent = res
    report = write_multi_report([*earlier, *(x.run_dir for x in results)],
                                runs_dir().parent / "reports" / f"{lineage}.html", title=f"Lineage {lineage}")
    return lineage, results, report


def _continue(after: str | Path, lineage: str) -> tuple[RunResult, str, int]:
    """The run to continue from, as a finished parent: (its result, its lineage, the next cycle number)."""
    from ..paths import find_run
    from ..runner.manifest import Manifest

    run_dir = find_run(after)
    m = Manifest.load(run_dir).data
    if m.get("status") != "succeeded":
        raise RecipeError(f"--after {after}: run {run_dir.name} did not succeed (status {m.get('status')!r}); "
                          "a next cycle needs its parent's traffic and deployed model")
    link = m.get("parent") or {}
    prev_cycle = int(link.get("cycle") or 1)
    res = RunResult(run_id=run_dir.name, run_dir=run_dir, status="succeeded")
    return res, link.get("lineage") or lineage, prev_cycle + 1
