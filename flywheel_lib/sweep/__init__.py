"""Sweeps: a recipe over a grid of parameters x seeds, each point a normal run, run side by side (processes or
Ray tasks), resumable, with a report of the evidence across seeds."""

from .run import SweepResult, find_sweep, load_sweep, run_sweep, sweeps_dir
from .spec import SweepSpec, parse_grid, parse_seeds
from .stats import cmh, pool_comparisons, pooled_mcnemar, summarize_metrics, t_interval

__all__ = [
    "SweepResult",
    "SweepSpec",
    "cmh",
    "find_sweep",
    "load_sweep",
    "parse_grid",
    "parse_seeds",
    "pool_comparisons",
    "pooled_mcnemar",
    "run_sweep",
    "summarize_metrics",
    "sweeps_dir",
    "t_interval",
]
