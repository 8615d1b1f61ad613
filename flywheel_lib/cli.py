"""The ``flywheel`` command: run, list, show and compare cycles.

    flywheel run params/demo.yaml [--set key=value ...] [--stages a,b] [--from RUN_ID]
    flywheel runs [--recipe NAME]
    flywheel show RUN
    flywheel compare RUN_A RUN_B
    flywheel params NOTEBOOK          # the parameters a stage notebook declares, with their bounds
    flywheel track RUN [RUN ...]      # log runs to MLflow (again); see flywheel_lib.tracking
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

__all__ = ["main", "build_parser"]


def _stages(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flywheel", description="Run and inspect data-flywheel cycles.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="execute a recipe's stage notebooks into a new run folder")
    r.add_argument("recipe", help="recipe YAML, e.g. params/demo.yaml")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (all stages) or STAGE.KEY=VALUE (one stage); value is YAML")
    r.add_argument("--stages", help="comma-separated stages to run (default: all of the recipe)")
    r.add_argument("--from", dest="from_run", metavar="RUN_ID", help="reuse the artifacts of an earlier run")
    r.add_argument("--no-progress", action="store_true", help="hide papermill's cell progress bar")
    r.add_argument("--no-html", action="store_true", help="skip rendering each notebook to HTML")

    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--recipe", help="only runs of this recipe")

    sh = sub.add_parser("show", help="print a run's manifest summary")
    sh.add_argument("run", help="run id, unique prefix, 'latest' or a folder")

    c = sub.add_parser("compare", help="parameters that differ and metrics side by side")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--all", action="store_true", help="show metrics that did not change too")

    pa = sub.add_parser("params", help="list the parameters a stage notebook declares")
    pa.add_argument("notebook", help="stage name (02_judge) or notebook path")

    _register(sub)
    return p


def _register(sub) -> None:
    """The subcommands of the other packages, all registered here: MLflow tracking, sweeps, and the loop's
    (cycles, report, results)."""
    from .flywheel.commands import add_commands as add_loop
    from .sweep.commands import add_commands as add_sweep
    from .tracking.commands import add_track_command

    for add in (add_track_command, add_sweep, add_loop):
        add(sub)


def _print_df(df: pd.DataFrame) -> None:
    if df.empty:
        print("(none)")
        return
    with pd.option_context("display.max_rows", 500, "display.max_columns", 20, "display.width", 200,
                           "display.max_colwidth", 70):
        print(df.to_string(index=False))


def _print_params(name: str) -> None:
    """Each parameter as ``name: type = default  # help  [bound: n >= 1]``."""
    from pathlib import Path

    from .runner import RecipeError
    from .runner.params import inspect_params
    from .stage import project_root
    from .stages.groups import GROUPS, group_rows

    nb = Path(name)
    if not nb.is_file():
        nb = project_root() / "notebooks" / f"{name}.ipynb"
    if not nb.is_file():
        known = ", ".join(sorted(p.stem for p in (project_root() / "notebooks").glob("*.ipynb")))
        what = "a folder" if Path(name).is_dir() else "not a stage or a notebook file"
        raise RecipeError(f"{name} is {what}; name a stage ({known}) or an .ipynb path")
    for p in inspect_params(nb).values():
        bound = f"  [bound: {p.bound.describe(p.name)}]" if p.bound else ""
        print(f"{p.name}: {p.type_name} = {p.default!r}  # {p.help}{bound}")
        if p.name in GROUPS and isinstance(p.default, dict):  # a group: each key with its type, bound and help
            for key, type_text, default, bound_text, help_text in group_rows(p.name, p.default):
                print(f"    {key}: {type_text} = {default!r}  # {help_text}"
                      + (f"  [bound: {bound_text}]" if bound_text else ""))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .runner import RecipeError, compare_runs, load_recipe, run_recipe, runs_table, show_run

    try:
        if args.cmd == "run":
            recipe, stages = args.recipe, _stages(args.stages)
            if stages:
                recipe = load_recipe(args.recipe)
                ordered = recipe.order_stages(stages)
                if ordered != stages:
                    print(f"note: --stages {args.stages} runs in stage order: {','.join(ordered)}", file=sys.stderr)
                stages = ordered
            res = run_recipe(recipe, sets=args.sets, stages=stages, from_run=args.from_run,
                             progress=not args.no_progress, render_html=not args.no_html)
            if not res.ok:
                print(f"FAILED: {res.failure}", file=sys.stderr)
                return 1
            print(res.run_id)
            return 0
        if args.cmd == "runs":
            _print_df(runs_table(recipe=args.recipe))
            return 0
        if args.cmd == "show":
            print(show_run(args.run))
            return 0
        if args.cmd == "compare":
            t = compare_runs(args.run_a, args.run_b)
            print("== taxonomy ==")
            _print_df(t["taxonomy"])
            print("\n== parameters that differ ==")
            _print_df(t["params"])
            m = t["metrics"]
            if not args.all:
                a, b = m.columns[1], m.columns[2]
                m = m[m[a].astype(str) != m[b].astype(str)]
            print("\n== metrics ==")
            _print_df(m)
            return 0
        if args.cmd == "params":
            _print_params(args.notebook)
            return 0
        if hasattr(args, "func"):
            return args.func(args)
    except (RecipeError, OSError, KeyError, ValueError) as e:
        print(f"flywheel {args.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
