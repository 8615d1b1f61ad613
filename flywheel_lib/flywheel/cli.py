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


def _report(args) -> int:
    from ..runner import find_run
    from ..stage import runs_dir
    from .report import lineage_runs, write_multi_report

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
