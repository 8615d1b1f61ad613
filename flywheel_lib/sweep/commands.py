"""``flywheel sweep``: a recipe over a grid x seeds, each point a run, side by side and resumable.

    flywheel sweep params/smoke.yaml --grid 03_resolve.gate_scope=changes,all --seeds 7,11,13 --jobs 2
    flywheel sweep params/smoke.yaml --stages 04_finetune,05_evaluate --from RUN --seeds 7,11 --executor ray
    flywheel sweep --resume SWEEP_ID
"""

from __future__ import annotations

import sys

__all__ = ["add_commands"]


def add_commands(sub) -> None:
    s = sub.add_parser("sweep", help="run a recipe over a grid of parameters x seeds (parallel, resumable)")
    s.add_argument("recipe", nargs="?", help="recipe YAML (its sweep: block gives the grid and seeds by default)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to sweep for a parameter (KEY or STAGE.KEY, values as YAML); repeat for a product")
    s.add_argument("--seeds", help="comma-separated seeds; each configuration runs once per seed")
    s.add_argument("--seed-key", help="the parameter a seed sets (default: seed)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter for every point")
    s.add_argument("--stages", help="comma-separated stages every point runs (default: all of the recipe)")
    s.add_argument("--from", dest="from_run", metavar="RUN_ID", help="every point reuses this run's artifacts")
    s.add_argument("--jobs", type=int, default=1, help="points at a time; the cores are divided between them")
    s.add_argument("--executor", choices=["local", "process", "ray"], default="process",
                   help="local: this process; process: one worker process per point (default); ray: Ray tasks")
    s.add_argument("--ray-address", help="Ray cluster to join (default: a local instance)")
    s.add_argument("--resume", metavar="SWEEP_ID", help="resume this sweep (the same command resumes too)")
    s.add_argument("--fresh", action="store_true", help="start a new sweep even if the same one exists")
    s.add_argument("--no-html", action="store_true", help="skip rendering each notebook to HTML")
    s.set_defaults(func=_sweep)


def _sweep(args) -> int:
    from .run import run_sweep
    from .spec import parse_grid, parse_seeds

    if args.resume and (args.recipe or args.grid or args.seeds or args.sets or args.stages or args.from_run):
        print("flywheel sweep: --resume takes the sweep's own settings; give no recipe, grid, seeds or sets",
              file=sys.stderr)
        return 2
    stages = [x.strip() for x in args.stages.split(",") if x.strip()] if args.stages else None
    res = run_sweep(args.recipe, grid=parse_grid(args.grid), seeds=parse_seeds(args.seeds), seed_key=args.seed_key,
                    sets=args.sets, stages=stages, from_run=args.from_run, jobs=args.jobs, executor=args.executor,
                    ray_address=args.ray_address, resume=args.resume, fresh=args.fresh,
                    render_html=not args.no_html)
    print(res.sweep_id)
    return 0 if res.ok else 1
