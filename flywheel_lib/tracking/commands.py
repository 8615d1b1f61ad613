"""``flywheel track RUN [RUN ...]``: log runs to MLflow now (again: the same MLflow run is updated).

The store is ``$MLFLOW_TRACKING_URI``, else the local store under ``outputs/mlruns``; ``--uri`` names another for
this command. Exit status 1 when any run could not be logged (the reason is printed and noted in its manifest).
"""

from __future__ import annotations

import os
import sys

__all__ = ["add_track_command"]


def add_track_command(sub) -> None:
    t = sub.add_parser("track", help="log runs to MLflow (again), e.g. after the tracking server was down")
    t.add_argument("runs", nargs="+", metavar="RUN", help="run id, unique prefix, 'latest' or a folder")
    t.add_argument("--uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else outputs/mlruns)")
    t.set_defaults(func=_track)


def _track(args) -> int:
    from ..paths import find_run
    from .record import track_run

    dirs = [find_run(r) for r in args.runs]  # every name checked before anything is logged
    before = os.environ.get("MLFLOW_TRACKING_URI")
    if args.uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.uri
    try:
        notes = [track_run(d, echo=lambda s: print(s, file=sys.stderr, flush=True)) for d in dirs]
    finally:
        if args.uri and before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        elif args.uri:
            os.environ["MLFLOW_TRACKING_URI"] = before
    for d, note in zip(dirs, notes):
        print(f"{d.name}: {note['status']}" + (f" (MLflow run {note['mlflow_run_id']})" if note.get("mlflow_run_id")
                                               else f": {note.get('error', '')[:300]}"))
    return 0 if all(n["status"] == "logged" for n in notes) else 1
