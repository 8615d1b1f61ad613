"""The stages' library steps: each configuration is exactly its notebook's parameters, and is built key by key."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from flywheel_lib.runner.params import inspect_params
from flywheel_lib.stages import STAGES, run_stage
from flywheel_lib.stages.evaluate import EvaluateConfig
from flywheel_lib.stages.finetune import FinetuneConfig
from flywheel_lib.stages.groups import GROUPS, GroupError, ParamGroup

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
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, ParamGroup):  # a group: its model holds exactly the cell's keys and values
            assert value.model_dump() == params[f.name].default, f"{stage}.{f.name}"
        else:
            assert value == params[f.name].default, f"{stage}.{f.name}"
    module, func = STAGES[stage][2].split(":")
    assert callable(getattr(importlib.import_module(f"flywheel_lib.stages.{module}"), func))


def test_configuration_names_what_is_missing_or_unknown():
    params = {k: p.default for k, p in inspect_params(ROOT / "notebooks" / "05_evaluate.ipynb").items()}
    del params["promotion"], params["arena"]
    with pytest.raises(KeyError, match="promotion, arena"):
        EvaluateConfig.from_params(params)
    with pytest.raises(KeyError, match="no parameter alfa"):
        EvaluateConfig.defaults("05_evaluate", alfa=0.1)
    cfg = EvaluateConfig.defaults("05_evaluate", candidate="curated_all", pair_sources=" production , traffic,")
    assert cfg.candidate == "curated_all" and cfg.traffic_sources == ("production", "traffic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.candidate = "curated"  # type: ignore[misc]


def test_run_stage_names_the_stages_it_knows(tmp_path):
    with pytest.raises(KeyError, match="02_judge.*stages with steps: 00_data"):
        run_stage("02_judge", tmp_path)


def test_every_group_a_notebook_declares_has_a_model_and_valid_defaults():
    """A notebook's dict parameter named like a group holds exactly the group model's keys, and its defaults pass
    the model's checks; every group is declared by some notebook."""
    declared = set()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for name, p in inspect_params(nb).items():
            if name in GROUPS:
                declared.add(name)
                assert p.type_name == "dict" and set(p.default) == set(GROUPS[name].model_fields), f"{nb.stem}.{name}"
                GROUPS[name].model_validate(p.default)
    assert declared == set(GROUPS)


def test_a_group_takes_some_keys_over_the_notebooks_and_checks_each():
    cfg = FinetuneConfig.defaults("04_finetune", head={"kind": "minilm", "C": 2})
    assert (cfg.head.kind, cfg.head.C, cfg.head.threshold) == ("minilm", 2, 0.5)  # threshold: the cell's default
    with pytest.raises(GroupError, match=r"head\.C = -1: Input should be greater than 0"):
        FinetuneConfig.defaults("04_finetune", head={"C": -1})
    with pytest.raises(GroupError, match=r"head has no key 'kidn' \(group head: kind, C"):
        FinetuneConfig.defaults("04_finetune", head={"kidn": "minilm"})
    with pytest.raises(GroupError, match=r"head\.kind = 'linear': Input should be 'none', 'minilm'"):
        FinetuneConfig.defaults("04_finetune", head={"kind": "linear"})
    with pytest.raises(GroupError, match=r"head\.members = '3': Input should be a valid integer"):  # strict
        FinetuneConfig.defaults("04_finetune", head={"members": "3"})
    with pytest.raises(Exception, match="frozen"):
        cfg.head.kind = "none"  # type: ignore[misc]
