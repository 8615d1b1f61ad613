"""The stages' library steps: each configuration is exactly its notebook's parameters, and is built key by key."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from flywheel_lib.runner.params import inspect_params
from flywheel_lib.stages import STAGES, run_stage
from flywheel_lib.stages.evaluate import EvaluateConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(stage: str):
    module, cls, _ = STAGES[stage]
    return getattr(importlib.import_module(f"flywheel_lib.stages.{module}"), cls)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_configuration_is_its_notebooks_parameters(stage):
    """A parameter added to a notebook and not to its configuration (or the reverse) fails here, not in a run."""
    declared = set(inspect_params(ROOT / "notebooks" / f"{stage}.ipynb")) - {"run_dir", "parent_run"}
    fields = {f.name for f in dataclasses.fields(_config(stage))} - {"parent_run"}
    assert fields == declared, f"{stage}: only in the notebook {sorted(declared - fields)}, " \
                               f"only in the configuration {sorted(fields - declared)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_defaults_are_the_notebooks_and_runner_functions_exist(stage):
    cfg = _config(stage).defaults(stage)
    params = inspect_params(ROOT / "notebooks" / f"{stage}.ipynb")
    assert all(getattr(cfg, f.name) == params[f.name].default for f in dataclasses.fields(cfg))
    module, func = STAGES[stage][2].split(":")
    assert callable(getattr(importlib.import_module(f"flywheel_lib.stages.{module}"), func))


def test_configuration_names_what_is_missing_or_unknown():
    params = {k: p.default for k, p in inspect_params(ROOT / "notebooks" / "05_evaluate.ipynb").items()}
    del params["alpha"], params["arena_n"]
    with pytest.raises(KeyError, match="alpha, arena_n"):
        EvaluateConfig.from_params(params)
    with pytest.raises(KeyError, match="no parameter alfa"):
        EvaluateConfig.defaults("05_evaluate", alfa=0.1)
    cfg = EvaluateConfig.defaults("05_evaluate", candidate="curated_all", pair_sources=" production , traffic,")
    assert cfg.candidate == "curated_all" and cfg.traffic_sources == ("production", "traffic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 0.5  # type: ignore[misc]


def test_run_stage_names_the_stages_it_knows(tmp_path):
    with pytest.raises(KeyError, match="02_judge.*stages with steps: 00_data"):
        run_stage("02_judge", tmp_path)
