"""Each stage's work as library functions: the stage notebooks call them, one call per step, and show what they return.

A stage's configuration is a frozen dataclass whose fields are the notebook's parameters (the notebook's parameters
cell is the one place their defaults and help live; the runner checks every value against it before a run). A step
takes the open :class:`~flywheel_lib.stage.Stage` and returns a typed result; it records its metrics, notes and
artifacts on the stage, so a script or a test that calls the steps writes the same run folder as the notebook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="StageConfig")

@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Base of the stages' configurations: built from the notebook's parameters, by name."""

    @classmethod
    def from_params(cls: type[C], params: Mapping[str, Any]) -> C:
        """The configuration from a namespace holding the notebook's parameters (the notebook passes ``globals()``);
        names the parameters that are missing."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"{cls.__name__}: parameters missing: {', '.join(missing)}")
        return cls(**{n: cls._group(n, params[n]) for n in names})

    @classmethod
    def _group(cls, name: str, value: Any) -> Any:
        """A group (a dict in the notebook) as its validated model, so that a step reads ``cfg.head.kind``; keys
        it lacks (papermill run by hand with some of a group's keys) come from the notebook's parameters cell."""
        from .groups import GROUPS, check_group

        if name not in GROUPS or not isinstance(value, dict):
            return value
        default = None
        if set(value) < set(GROUPS[name].model_fields):
            stage = next((s for s, (_, c, _) in STAGES.items() if c == cls.__name__), None)
            default = _notebook_defaults(stage).get(name) if stage else None
        return check_group(name, value, default)

    @classmethod
    def defaults(cls: type[C], notebook: str, **overrides: Any) -> C:
        """The configuration of the notebook's parameters cell (``notebooks/<notebook>.ipynb``), with overrides
        (a group's override may give some of its keys): how a script or a test calls a stage's steps without
        Jupyter."""
        from .groups import merge_group

        params = _notebook_defaults(notebook)
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise KeyError(f"{notebook}: no parameter {', '.join(unknown)}")
        return cls.from_params({**params, **{k: merge_group(k, params[k], v) for k, v in overrides.items()}})


def _notebook_defaults(notebook: str) -> dict[str, Any]:
    """The defaults of a stage notebook's parameters cell (the project's ``notebooks/``, or ``$FLYWHEEL_ROOT``'s)."""
    from flywheel_lib.paths import resolve_path
    from flywheel_lib.runner.params import inspect_params

    path = resolve_path("notebooks") / f"{notebook}.ipynb"
    return {k: p.default for k, p in inspect_params(path).items()}


#: Each stage with library steps: the module holding its configuration, and the module and function that run them all.
STAGES: dict[str, tuple[str, str, str]] = {
    "00_data": ("data", "DataConfig", "data:run"),
    "01_calibrate": ("calibrate", "CalibrateConfig", "calibrate_gate:run"),
    "03_resolve": ("resolve", "ResolveConfig", "resolve_review:run"),
    "04_finetune": ("finetune", "FinetuneConfig", "finetune:run"),
    "05_evaluate": ("evaluate", "EvaluateConfig", "evaluate_loop:run"),
    "06_flywheel": ("flywheel", "FlywheelConfig", "flywheel:run"),
}


def run_stage(stage: str, run_dir: str | Path, params: Mapping[str, Any] | None = None) -> Any:
    """Run one stage's steps in ``run_dir`` without Jupyter: the notebook's defaults overridden by ``params``
    (e.g. a manifest's ``params_in_effect[stage]``); writes the stage's artifacts, metrics and notes as the notebook
    does, but no figures and no executed notebook. Returns the stage's shared state (its artifacts as read back)."""
    import importlib

    from flywheel_lib.stage import open_stage

    if stage not in STAGES:
        raise KeyError(f"no library steps for stage {stage!r}; stages with steps: {', '.join(STAGES)}")
    config_module, config_class, runner = STAGES[stage]
    cls = getattr(importlib.import_module(f"flywheel_lib.stages.{config_module}"), config_class)
    given = dict(params or {})
    names = {f.name for f in dataclasses.fields(cls)}
    cfg = cls.defaults(stage, **{k: v for k, v in given.items() if k in names})
    st = open_stage(run_dir, stage, parent_run=given.get("parent_run") or None)
    module, func = runner.split(":")
    return getattr(importlib.import_module(f"flywheel_lib.stages.{module}"), func)(st, cfg)
