"""Subcommands of ``flywheel`` for closing the loop: ``cycles`` and ``report``."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_commands"]


def add_commands(sub) -> None:
    c = sub.add_parser("cycles", help="run N linked cycles of a recipe (each cycle's traffic feeds the next)")
    c.add_argument("recipe")
    c.add_argument("--cycles", type=int, default=2, help="how many cycles (default 2)")
    c.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--after", metavar="RUN", help="continue a lineage: the first new cycle's parent is RUN")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_cycles)

    r = sub.add_parser("report", help="one HTML report for several runs or a lineage")
    r.add_argument("runs", nargs="*", help="run ids (or prefixes); none with --lineage")
    r.add_argument("--lineage", help="every run of this lineage, in cycle order")
    r.add_argument("-o", "--out", help="output HTML (default outputs/reports/<name>.html)")
    r.add_argument("--results", nargs="+", metavar="RUN_OR_LINEAGE",
                   help="instead of HTML: the docs' results table from these run folders, folders of runs, lineage "
                        "ids, run ids, sweeps (folder or id: the table across seeds) or a results extract (.json)")
    r.add_argument("--extract", default="docs/results/runs.json",
                   help="with --results: the extract to write from run folders (default docs/results/runs.json)")
    r.add_argument("--pages", nargs="+", default=["docs/results.md", "README.md"],
                   help="with --results: pages whose table between the results markers is replaced")
    r.add_argument("--cpu", help="with --results: the CPU to record for runs whose manifest names none")
    r.add_argument("--check", action="store_true",
                   help="with --results: write nothing; exit 1 when a page's table differs from the generated one")
    r.set_defaults(func=_report)


def _cycles(args) -> int:
    from .cycles import run_cycles

    echo = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    lineage, results, report = run_cycles(args.recipe, args.cycles, sets=args.sets, progress=not args.no_progress,
                                          echo=echo, after=args.after)
    for i, r in enumerate(results, 1):
        print(f"cycle {i}: {r.run_id} {r.status}")
    print(f"lineage {lineage}: {report}")
    return 0 if results and all(r.ok for r in results) and len(results) == args.cycles else 1


def _results(args) -> int:
    from ..stage import project_root
    from .results import (
        LINEAGE_BEGIN,
        LINEAGE_END,
        SUMMARY_BEGIN,
        SUMMARY_END,
        SWEEP_BEGIN,
        SWEEP_END,
        collect_runs,
        collect_sweeps,
        lineage_table,
        replace_between_markers,
        results_table,
        sweep_summary,
        sweep_table,
        write_extract,
    )

    root = project_root()
    runs = collect_runs(args.results, cpu=args.cpu)
    sweeps = collect_sweeps(args.results, cpu=args.cpu)
    if not runs:
        print("flywheel report --results: no runs found", file=sys.stderr)
        return 2
    table = results_table(runs)
    stale = []
    if not args.check and not all(a.endswith(".json") for a in args.results):
        print(write_extract(runs, root / args.extract, sweeps=sweeps))
    for page in args.pages:
        path = root / page
        text = path.read_text(encoding="utf-8")
        new = replace_between_markers(text, table, where=page)
        if SWEEP_BEGIN in new:
            new = replace_between_markers(new, sweep_table(sweeps), where=page, begin=SWEEP_BEGIN, end=SWEEP_END)
        if SUMMARY_BEGIN in new:
            new = replace_between_markers(new, sweep_summary(sweeps), where=page, begin=SUMMARY_BEGIN, end=SUMMARY_END)
        if LINEAGE_BEGIN in new:
            new = replace_between_markers(new, lineage_table(runs), where=page, begin=LINEAGE_BEGIN, end=LINEAGE_END)
        if new != text:
            stale.append(page)
            if not args.check:
                path.write_text(new, encoding="utf-8")
                print(path)
    if args.check and stale:
        print(f"flywheel report --results: table out of date in {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def _report(args) -> int:
    if args.results:
        return _results(args)
    from ..runner import find_run
    from ..stage import runs_dir
    from .lineage_report import lineage_runs, write_multi_report

    if args.lineage:
        dirs = lineage_runs(args.lineage, runs_dir())
        name = args.lineage
    else:
        dirs = [find_run(x) for x in args.runs]
        name = "report_" + "_".join(d.name.split("_")[0] for d in dirs)[:80]
    if not dirs:
        print("flywheel report: no runs given or found", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else runs_dir().parent / "reports" / f"{name}.html"
    print(write_multi_report(dirs, out, title=f"Flywheel report: {name}"))
    return 0
