"""Check recipe parameters against the notebooks before anything runs.

papermill only warns about a parameter the notebook does not declare, and never checks a type. Here every key
is compared with ``papermill.inspect_notebook()`` and with the type annotation in the notebook's parameters cell
(``n_items: int = 200  # items to judge``); a mismatch stops the run with the file, the key and the notebook.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .recipe import Recipe, RecipeError

__all__ = ["NotebookParam", "inspect_params", "check_recipe", "type_ok", "in_effect"]

# Injected by the runner into every stage; a notebook must declare it but a recipe must not set it.
RUNNER_PARAMS = ("run_dir",)


@dataclass(frozen=True)
class NotebookParam:
    name: str
    type_name: str
    default: Any
    help: str


def inspect_params(notebook: Path) -> dict[str, NotebookParam]:
    """The parameters a notebook declares (name -> type, default, help)."""
    import papermill

    if not notebook.exists():
        raise RecipeError(f"stage notebook {notebook} does not exist")
    raw = papermill.inspect_notebook(str(notebook))
    out = {}
    for name, p in raw.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        out[name] = NotebookParam(name, str(p.get("inferred_type_name") or "None"), default, p.get("help") or "")
    return out


def _split_union(t: str) -> list[str]:
    t = t.strip()
    if t.startswith("Optional[") and t.endswith("]"):
        return [t[9:-1], "None"]
    return [x.strip() for x in t.split("|")]


def type_ok(value: Any, type_name: str) -> bool:
    """Does ``value`` fit the annotation ``type_name`` (as papermill reports it)?"""
    if type_name.strip() in ("None", "", "Any"):  # unannotated: nothing to check
        return True
    for t in _split_union(type_name):
        base = t.split("[", 1)[0].strip().lower()
        if base == "none":
            if value is None:
                return True
            continue
        if base in ("any", "object"):
            return True
        if base == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if base == "str" and isinstance(value, str):
            return True
        if base == "bool" and isinstance(value, bool):
            return True
        if base in ("list", "tuple", "sequence") and isinstance(value, (list, tuple)):
            return True
        if base in ("dict", "mapping") and isinstance(value, dict):
            return True
    return False


def check_recipe(recipe: Recipe, notebooks: dict[str, Path]) -> dict[str, dict[str, NotebookParam]]:
    """Validate every key of ``recipe`` against the notebooks it runs. Returns the inspected parameters."""
    where = recipe.path or recipe.name
    declared = {stage: inspect_params(nb) for stage, nb in notebooks.items()}
    for stage, params in declared.items():
        for rp in RUNNER_PARAMS:
            if rp not in params:
                raise RecipeError(f"notebook {notebooks[stage]} declares no `{rp}` parameter; the runner needs it")
    for key, value in recipe.params.items():
        if key in RUNNER_PARAMS:
            raise RecipeError(f"{where}: params.{key} is set by the runner, not by a recipe")
        takers = [s for s, ps in declared.items() if key in ps]
        if not takers:
            raise RecipeError(
                f"{where}: unknown parameter params.{key}: no stage notebook of this recipe declares it "
                f"({', '.join(str(notebooks[s]) for s in declared)})"
            )
        for s in takers:
            _check_type(where, f"params.{key}", value, declared[s][key], notebooks[s])
    for stage, kv in recipe.stage_params.items():
        if stage not in declared:
            continue
        for key, value in kv.items():
            if key in RUNNER_PARAMS:
                raise RecipeError(f"{where}: stage_params.{stage}.{key} is set by the runner, not by a recipe")
            if key not in declared[stage]:
                known = ", ".join(sorted(k for k in declared[stage] if k not in RUNNER_PARAMS))
                raise RecipeError(
                    f"{where}: unknown parameter stage_params.{stage}.{key} for notebook {notebooks[stage]} "
                    f"(it declares: {known})"
                )
            _check_type(where, f"stage_params.{stage}.{key}", value, declared[stage][key], notebooks[stage])
    return declared


def _check_type(where: str, key: str, value: Any, p: NotebookParam, nb: Path) -> None:
    if not type_ok(value, p.type_name):
        raise RecipeError(
            f"{where}: {key} = {value!r} is a {type(value).__name__}, but notebook {nb} declares "
            f"`{p.name}: {p.type_name}`"
        )


def in_effect(passed: dict[str, Any], declared: dict[str, NotebookParam]) -> dict[str, Any]:
    """Notebook defaults overlaid with what the recipe passed: the parameters the stage actually ran with."""
    out = {k: p.default for k, p in declared.items()}
    out.update(passed)
    return out
