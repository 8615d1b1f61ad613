"""The cycle runner: recipes in, run folders out (executed notebooks, HTML, manifest, index)."""

from .execute import RunResult, find_run, new_run_id, run_recipe
from .recipe import Recipe, RecipeError, load_recipe
from .runs import compare_runs, list_runs, runs_table, show_run

__all__ = [
    "Recipe",
    "RecipeError",
    "RunResult",
    "compare_runs",
    "find_run",
    "list_runs",
    "load_recipe",
    "new_run_id",
    "run_recipe",
    "runs_table",
    "show_run",
]
