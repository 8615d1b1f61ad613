"""Cycle recipes: which stages run, with which parameters.

A recipe is a YAML file in ``params/``::

    name: demo
    description: A whole cycle on the embedded defaults.
    stages: [00_data, 01_calibrate, 02_judge, 03_resolve, 04_finetune, 05_evaluate]
    params:                  # every stage that declares the key receives it
      seed: 7
      taxonomy: params/taxonomy/segments.yaml
    stage_params:            # one stage only
      00_data: {n_production: 20000}

Unknown top-level keys are errors; unknown parameter keys are caught later against the notebooks themselves
(:mod:`flywheel_lib.runner.params`), before anything runs.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..stage import resolve_path

__all__ = ["Recipe", "RecipeError", "load_recipe", "parse_set", "STAGE_ORDER"]

STAGE_ORDER = ["00_data", "01_calibrate", "02_judge", "03_resolve", "04_finetune", "05_evaluate", "06_flywheel"]
_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "access_token", "auth_token", "bearer")
_SECRET_VALUE = re.compile(r"^(sk-|sk-ant-|xai-|hf_|ghp_)[A-Za-z0-9_\-]{8,}$")


class RecipeError(ValueError):
    """A recipe file, an override or a parameter is wrong; the message names the file and the key."""


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    """Short name, part of every run id."""
    description: str = ""
    stages: list[str] = Field(default_factory=lambda: list(STAGE_ORDER[:-1]))
    """Stage notebooks to execute, in order (names under ``notebooks/`` without ``.ipynb``)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters for every stage that declares them."""
    stage_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Parameters for one stage, overriding ``params``."""
    notebook_dir: str = "notebooks"
    """Where the stage notebooks are (relative to the project root)."""
    cycles: dict[str, Any] = Field(default_factory=dict)
    """Settings for ``flywheel cycles`` (multi-cycle runs)."""
    path: str = ""
    """Where it was read from."""

    def for_stage(self, stage: str, declared: set[str]) -> dict[str, Any]:
        """The parameters passed to ``stage``: shared ones it declares, then its own."""
        out = {k: v for k, v in self.params.items() if k in declared}
        out.update(self.stage_params.get(stage, {}))
        return out

    def with_overrides(self, sets: list[str]) -> "Recipe":
        """Apply ``--set key=value`` / ``--set stage.key=value`` overrides (values parsed as YAML)."""
        r = self.model_copy(deep=True)
        for s in sets:
            stage, key, value = parse_set(s, self.stages)
            if stage:
                r.stage_params.setdefault(stage, {})[key] = value
            else:
                r.params[key] = value
        r._check_secrets()
        return r

    def _check_secrets(self) -> None:
        items = [("params", k, v) for k, v in self.params.items()]
        items += [(f"stage_params.{s}", k, v) for s, d in self.stage_params.items() for k, v in d.items()]
        for where, k, v in items:
            named = any(w in k.lower() for w in _SECRET_WORDS) or k.lower() == "token"
            shaped = isinstance(v, str) and bool(_SECRET_VALUE.match(v.strip()))
            if (named and v and not str(k).lower().endswith("_env")) or shaped:
                raise RecipeError(
                    f"{self.path or self.name}: {where}.{k} looks like a secret. Secrets come only from environment "
                    f"variables: name the variable in a judge panel file (api_key_env: ...), never the value."
                )


def parse_set(s: str, stages: list[str]) -> tuple[str | None, str, Any]:
    """``"n_items=200"`` -> (None, "n_items", 200); ``"02_judge.panel=x.yaml"`` -> ("02_judge", "panel", "x.yaml")."""
    if "=" not in s:
        raise RecipeError(f"--set {s!r}: expected key=value")
    key, _, raw = s.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {s!r}: value is not valid YAML: {e}") from None
    stage = None
    if "." in key:
        stage, _, key = key.partition(".")
        if stage not in stages:
            raise RecipeError(f"--set {s!r}: stage {stage!r} is not in the recipe (stages: {', '.join(stages)})")
    if not key.isidentifier():
        raise RecipeError(f"--set {s!r}: {key!r} is not a parameter name")
    return stage, key, value


def load_recipe(path: str | Path) -> Recipe:
    p = resolve_path(path)
    if not p.exists():
        raise RecipeError(f"recipe {path} does not exist (resolved to {p})")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with name, stages, params")
    data = copy.deepcopy(data)
    data.setdefault("name", p.stem)
    try:
        r = Recipe(**data, path=str(path))
    except ValidationError as e:
        errs = "; ".join(f"key {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise RecipeError(f"{path}: {errs}") from None
    for s in r.stage_params:
        if s not in r.stages:
            raise RecipeError(f"{path}: stage_params.{s} names a stage that is not in stages ({', '.join(r.stages)})")
    r._check_secrets()
    return r
