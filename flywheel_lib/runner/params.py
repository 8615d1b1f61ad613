"""Check recipe parameters against the notebooks, and the files a run will read, before anything runs.

papermill only warns about a parameter the notebook does not declare, and never checks a type. Here every key
is compared with ``papermill.inspect_notebook()`` and with the type annotation in the notebook's parameters cell
(``n_items: int = 200  # items to judge``); a mismatch stops the run with the file, the key and the notebook.

A numeric parameter may declare a bound at the very end of its help comment, in interval notation (square
bracket: the end is included; round bracket or ``inf``: it is not)::

    n_eval: int = 400  # eval items [1, inf)
    pii_rate: float = 0.05  # share of requests with personal data [0, 1]
    lr: float = 1e-3  # peak learning rate (0, inf)

(papermill skips a parameter line holding a second ``=``, so the bound cannot be written ``>= 1``.) A value
outside it stops the run naming the file, the key and the bound.

Then :func:`check_inputs` opens what the stages will read: the taxonomy file, the judge panel file (which is
also searched for secrets) and every data file (``*_path`` parameters, ``review_import``).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..paths import resolve_path
from ..stages.groups import GROUPS, RENAMED, GroupError, check_group, merge_group
from .recipe import Recipe, RecipeError, check_secrets, read_yaml_file

__all__ = ["Bound", "NotebookParam", "parse_bound", "inspect_params", "check_recipe", "check_inputs", "type_ok",
           "in_effect"]

# Injected by the runner into every stage; a notebook must declare it but a recipe must not set it.
RUNNER_PARAMS = ("run_dir",)
# Parameters naming a file a stage reads (besides every `*_path` parameter).
FILE_PARAMS = ("taxonomy", "panel", "review_import")
_HF_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")

_NUM = r"[-+]?(?:inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_BOUND = re.compile(rf"\s*(?P<l>[\[(])\s*(?P<lo>{_NUM})\s*,\s*(?P<hi>{_NUM})\s*(?P<r>[\])])\s*$")


@dataclass(frozen=True)
class Bound:
    """A closed or open numeric range: ``[1, inf)`` is ``x >= 1``, ``(0, 1]`` is ``0 < x <= 1``."""

    lo: float
    """Lower end (``-inf`` for none)."""
    hi: float
    """Upper end (``inf`` for none)."""
    lo_open: bool
    """The lower end itself is outside the range."""
    hi_open: bool
    """The upper end itself is outside the range."""
    text: str
    """As the notebook wrote it, e.g. ``[1, inf)``."""

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self, name: str) -> str:
        """``n_eval >= 1``, ``0 <= pii_rate <= 1``, ``lr > 0``."""

        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else repr(x)

        lo = f"{num(self.lo)} {'<' if self.lo_open else '<='} " if self.lo > -math.inf else ""
        hi = f" {'<' if self.hi_open else '<='} {num(self.hi)}" if self.hi < math.inf else ""
        if lo and not hi:
            return f"{name} {'>' if self.lo_open else '>='} {num(self.lo)}"
        return f"{lo}{name}{hi}"


def parse_bound(help_text: str) -> tuple[str, Bound | None]:
    """Split a help comment into its text and the bound at its end (or ``None``).

    >>> parse_bound("eval items [1, inf)")
    ('eval items', Bound(lo=1.0, hi=inf, lo_open=False, hi_open=True, text='[1, inf)'))
    """
    m = _BOUND.search(help_text)
    if not m:
        return help_text, None
    lo, hi = float(m["lo"]), float(m["hi"])
    if not lo < hi:
        raise ValueError(f"bound {m.group().strip()}: the lower end must be below the upper end")
    b = Bound(lo, hi, m["l"] == "(" or math.isinf(lo), m["r"] == ")" or math.isinf(hi), m.group().strip())
    return help_text[: m.start()].rstrip(), b


@dataclass(frozen=True)
class NotebookParam:
    name: str
    type_name: str
    default: Any
    help: str
    """The help comment, without the bound."""
    bound: Bound | None = None
    """The range a numeric value must fall in, declared at the end of the help comment."""


def inspect_params(notebook: Path) -> dict[str, NotebookParam]:
    """The parameters a notebook declares (name -> type, default, help, bound)."""
    import papermill

    notebook = Path(notebook)
    if not notebook.exists():
        raise RecipeError(f"stage notebook {notebook} does not exist")
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise RecipeError(f"{notebook} is not a notebook file; name a stage (02_judge) or an .ipynb path")
    raw = papermill.inspect_notebook(str(notebook))
    out = {}
    for name, p in raw.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        try:
            help_text, bound = parse_bound(p.get("help") or "")
        except ValueError as e:
            raise RecipeError(f"notebook {notebook}: parameter `{name}`: {e}") from None
        out[name] = NotebookParam(name, str(p.get("inferred_type_name") or "None"), default, help_text, bound)
    return out


_NAMES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
                          "tuple": tuple, "None": None, "Any": Any, "object": object, "Optional": Optional,
                          "Union": Union, "Sequence": Sequence, "Mapping": Mapping, "List": list, "Dict": dict}


@lru_cache(maxsize=256)
def _adapter(type_name: str) -> TypeAdapter | None:
    """pydantic's strict validator of the annotation ``type_name`` (None when it names a type this cannot read)."""
    try:
        ann = eval(type_name, {"__builtins__": {}}, _NAMES)  # a name table, no builtins: annotations only
    except Exception:  # noqa: BLE001 - an annotation this table does not know
        return None
    return TypeAdapter(ann, config=ConfigDict(strict=True))


def type_ok(value: Any, type_name: str) -> bool:
    """Does ``value`` fit the annotation ``type_name`` (as papermill reports it)? pydantic in strict mode: no
    coercion (``"3"`` is not an int, ``True`` is not a number), an int is a float, elements of ``list[str]`` are
    checked too; an unannotated parameter takes anything, an annotation it cannot read nothing."""
    if type_name.strip() in ("None", "", "Any"):  # unannotated: nothing to check
        return True
    adapter = _adapter(type_name.strip())
    if adapter is None:
        return False
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _check_notebooks(recipe: Recipe, notebooks: dict[str, Path]) -> None:
    where = recipe.path or recipe.name
    for stage, nb in notebooks.items():
        if not nb.is_file():
            known = sorted(p.stem for p in nb.parent.glob("*.ipynb")) if nb.parent.is_dir() else []
            raise RecipeError(f"{where}: stages: unknown stage {stage!r}: there is no notebook {nb}"
                              + (f" (stages in {nb.parent}: {', '.join(known)})" if known else ""))


def check_recipe(recipe: Recipe, notebooks: dict[str, Path]) -> dict[str, dict[str, NotebookParam]]:
    """Validate every key of ``recipe`` against the notebooks it runs (name, type, bound), then the files the
    stages will read (:func:`check_inputs`). Returns the inspected parameters."""
    where = recipe.path or recipe.name
    _check_notebooks(recipe, notebooks)
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
                f"({', '.join(str(notebooks[s]) for s in declared)}){_renamed_hint(key)}"
            )
        for s in takers:
            _check_value(where, f"params.{key}", value, declared[s][key], notebooks[s])
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
                    f"(it declares: {known}){_renamed_hint(key)}"
                )
            _check_value(where, f"stage_params.{stage}.{key}", value, declared[stage][key], notebooks[stage])
    check_inputs(recipe, declared, notebooks)
    return declared


def _renamed_hint(key: str) -> str:
    """For a flat name of an earlier recipe: where the setting lives now (a group's key)."""
    if key not in RENAMED:
        return ""
    group, _, sub = RENAMED[key].partition(".")
    return f"; it is now {RENAMED[key]} (in a recipe: `{group}: {{{sub}: ...}}`; on the command line: " \
           f"--set {RENAMED[key]}=...)"


def _check_value(where: str, key: str, value: Any, p: NotebookParam, nb: Path) -> None:
    if p.name in GROUPS and isinstance(p.default, dict):
        try:
            check_group(p.name, value, p.default, key=key)
        except GroupError as e:
            raise RecipeError(f"{where}: {e} (notebook {nb} declares the group's defaults)") from None
        return
    if not type_ok(value, p.type_name):
        raise RecipeError(
            f"{where}: {key} = {value!r} is a {type(value).__name__}, but notebook {nb} declares "
            f"`{p.name}: {p.type_name}`"
        )
    if p.bound and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in p.bound:
        raise RecipeError(
            f"{where}: {key} = {value!r} is out of bounds: it must be {p.bound.describe(p.name)} "
            f"(notebook {nb} declares {p.bound.text})"
        )


def _origin(recipe: Recipe, stage: str, key: str, nb: Path) -> str:
    """Where a stage's value of ``key`` comes from: the recipe key, or the notebook's default."""
    where = recipe.path or recipe.name
    if key in recipe.stage_params.get(stage, {}):
        return f"{where}: stage_params.{stage}.{key}"
    if key in recipe.params:
        return f"{where}: params.{key}"
    return f"{nb}: the default of {key}"


def _check_file(origin: str, what: str, value: str) -> Path:
    p = resolve_path(value)
    if not p.exists():
        raise RecipeError(f"{origin}: {what} {value} does not exist (resolved to {p})")
    if not p.is_file():
        raise RecipeError(f"{origin}: {what} {value} is not a file (resolved to {p})")
    return p


def _check_data(origin: str, value: str) -> None:
    """A data file, or a Hugging Face ``datasets`` folder (saved with ``save_to_disk``)."""
    p = resolve_path(value)
    if p.is_dir():
        if not any((p / f).exists() for f in _HF_DATASET_FILES):
            raise RecipeError(f"{origin}: data path {value} is a folder, and not a Hugging Face dataset saved with "
                              f"save_to_disk (resolved to {p})")
        return
    _check_file(origin, "data file", value)


def _check_taxonomy(origin: str, value: str) -> None:
    from ..taxonomy import TaxonomyError, load_taxonomy

    _check_file(origin, "taxonomy file", value)
    read_yaml_file(value, f"{origin}: taxonomy file")
    try:
        load_taxonomy(value)
    except TaxonomyError as e:
        raise RecipeError(f"{origin}: invalid taxonomy file: {e}") from None


def _check_panel(origin: str, value: str) -> None:
    from ..judges.config import PanelError, read_panel_config

    _check_file(origin, "panel file", value)
    data = read_yaml_file(value, f"{origin}: panel file")
    check_secrets(data, f"panel file {value} (from {origin})")
    try:
        read_panel_config(value)
    except PanelError as e:
        raise RecipeError(f"{origin}: invalid panel file: {e}") from None


def check_inputs(recipe: Recipe, declared: dict[str, dict[str, NotebookParam]], notebooks: dict[str, Path]) -> None:
    """Open every file the stages will read, with the values they will run with; the first problem is a
    :class:`RecipeError` naming the recipe key (or the notebook default) and the file.

    ``taxonomy`` must load with :func:`flywheel_lib.taxonomy.load_taxonomy`, ``panel`` must hold no secret and load
    with :func:`flywheel_lib.judges.config.read_panel_config`, and every non-empty ``*_path`` or ``review_import``
    must be an existing file (or a Hugging Face dataset folder).
    """
    seen: set[tuple[str, str]] = set()
    for stage, params in declared.items():
        values = in_effect(recipe.for_stage(stage, set(params)), params)
        for key, value in values.items():
            if not (key in FILE_PARAMS or key.endswith("_path")) or not isinstance(value, str) or not value:
                continue
            if (key, value) in seen:
                continue
            seen.add((key, value))
            origin = _origin(recipe, stage, key, notebooks[stage])
            if key == "taxonomy":
                _check_taxonomy(origin, value)
            elif key == "panel":
                _check_panel(origin, value)
            else:
                _check_data(origin, value)


def in_effect(passed: dict[str, Any], declared: dict[str, NotebookParam]) -> dict[str, Any]:
    """Notebook defaults overlaid with what the recipe passed: the parameters the stage actually ran with (a group
    passed with some of its keys keeps the notebook's other keys)."""
    out = {k: p.default for k, p in declared.items()}
    for k, v in passed.items():
        out[k] = merge_group(k, out[k], v) if k in out else v
    return out
