"""Runs fail early and safely: secrets, files, stage lists and bounds are checked before the first stage starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flywheel_lib.cli import main
from flywheel_lib.runner import RecipeError, load_recipe, run_recipe
from flywheel_lib.runner.execute import stage_notebooks
from flywheel_lib.runner.params import check_recipe, inspect_params, parse_bound
from flywheel_lib.runner.recipe import find_secret
from flywheel_lib.stages.groups import group_rows

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "tests/fixtures/recipe_ok.yaml"
SMOKE = "params/smoke.yaml"
_R = "A1b2C3d4E5f6G7h8J9k0"  # letters and digits: the spread of a generated key

# One planted value per provider shape the workbench speaks to (built here so no real-looking literal is committed).
SHAPES = {
    "openai": "sk-" + _R * 2,
    "openai_project": "sk-proj-" + _R * 3,
    "anthropic": "sk-ant-api03-" + _R * 3,
    "google": "AIza" + _R * 2,
    "bearer": "Bearer " + _R * 2,
    "github": "ghp_" + _R * 2,
    "github_pat": "github_pat_" + _R * 2,
    "aws": "AKIA" + "Q7X2M9P4K1L8Z3W6",
    "huggingface": "hf_" + _R * 2,
    "after_key_name": "see https://host/x?access_token=" + _R + "9zQ",
}


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def _fixture_recipe(**extra) -> dict:
    data = yaml.safe_load((ROOT / RECIPE).read_text())
    data.update(extra)
    return data


def _refused(call, *expected: str, secret: str | None = None) -> str:
    with pytest.raises(RecipeError) as e:
        call()
    msg = str(e.value)
    for part in expected:
        assert part in msg, f"{part!r} not in: {msg}"
    if secret is not None:
        assert secret not in msg and secret[-12:] not in msg, "the error repeats the secret"
    return msg


# -- secrets at every depth ---------------------------------------------------------------------------------------

PLACES = {  # where the value is planted in a recipe file -> the dotted key path the error must name
    "top_level": (lambda v: {"description": v}, "description"),
    "params": (lambda v: {"params": {"label": v}}, "params.label"),
    "stage_param": (lambda v: {"stage_params": {"make": {"label": v}}}, "stage_params.make.label"),
    "nested_dict": (lambda v: {"stage_params": {"make": {"column_map": {"a": "b", "note": v}}}},
                    "stage_params.make.column_map.note"),
    "list_element": (lambda v: {"stage_params": {"make": {"tags": ["x", {"deep": [v]}]}}},
                     "stage_params.make.tags[1].deep[0]"),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("shape", SHAPES)
def test_secret_shape_in_recipe_file_is_refused_naming_file_and_key(tmp_path, shape, place):
    plant, key = PLACES[place]
    f = _write(tmp_path / "leaky.yaml", _fixture_recipe(**plant(SHAPES[shape])))
    _refused(lambda: load_recipe(f), "leaky.yaml", f"{key} looks like a secret", "environment", secret=SHAPES[shape])


@pytest.mark.parametrize("shape", SHAPES)
def test_secret_shape_in_set_override_is_refused_at_any_depth(runs, shape):
    v = SHAPES[shape]
    for override, key in [
        (f"label={v}", "params.label"),
        (f"make.column_map={{a: b, note: '{v}'}}", "stage_params.make.column_map.note"),
        (f"make.tags=[x, '{v}']", "stage_params.make.tags[1]"),
    ]:
        _refused(lambda: run_recipe(RECIPE, sets=[override], progress=False),  # noqa: B023 - called at once
                 key, "looks like a secret", secret=v)
    assert not runs.exists()


@pytest.mark.parametrize("shape", SHAPES)
def test_secret_shape_in_panel_file_is_refused(runs, tmp_path, shape):
    panel = yaml.safe_load((ROOT / "params/judges/offline.yaml").read_text())
    panel["judges"][1]["params"]["note"] = SHAPES[shape]
    f = _write(tmp_path / "panel.yaml", panel)
    _refused(lambda: run_recipe(SMOKE, sets=[f"panel={f}"], progress=False),
             "panel.yaml", "judges[1].params.note looks like a secret", "params.panel", secret=SHAPES[shape])
    assert not runs.exists()


def test_a_name_that_says_secret_is_refused_but_env_names_are_not(tmp_path):
    for key in ("api_key", "openai_api_key", "hf_token", "dbPassword", "client_secret", "access_key"):
        f = _write(tmp_path / "named.yaml", _fixture_recipe(stage_params={"make": {"extra": {key: "plain"}}}))
        _refused(lambda: load_recipe(f),  # noqa: B023 - called at once
                 f"stage_params.make.extra.{key}", "says secret", secret="plain")
    ok = {"api_key_env": "OPENAI_API_KEY", "max_tokens": 200, "min_tokens": 2, "reason_key": "category",
          "token_env": "HF_TOKEN", "api_key": ""}
    assert find_secret(ok) is None


def test_no_bundled_recipe_or_panel_looks_like_a_secret():
    files = sorted((ROOT / "params").glob("*.yaml")) + sorted((ROOT / "params/judges").glob("*.yaml"))
    assert any(f.name == "api.yaml" for f in files)  # its four api_key_env names must pass
    for f in files:
        assert find_secret(yaml.safe_load(f.read_text())) is None, f


def _env(runs: Path) -> dict:
    return {**os.environ, "FLYWHEEL_RUNS_DIR": str(runs), "FLYWHEEL_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_refused_run_writes_nothing_anywhere(runs, tmp_path):
    """The reported case: a key in a --set dict on the smoke recipe. No run folder, no file holds the key."""
    key = SHAPES["openai_project"]
    out = subprocess.run([sys.executable, "-m", "flywheel_lib.cli", "run", SMOKE, "--no-progress", "--set",
                          f"00_data.column_map={{a: b, note: {key}}}"],
                         cwd=ROOT, env=_env(runs), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "smoke.yaml" in out.stderr and "stage_params.00_data.column_map.note looks like a secret" in out.stderr
    assert key not in out.stdout + out.stderr and key[-12:] not in out.stderr
    assert not runs.exists()
    for f in tmp_path.rglob("*"):
        assert not f.is_file() or key.encode() not in f.read_bytes(), f


def test_nested_plain_value_still_runs(runs, capsys):
    rc = main(["run", RECIPE, "--no-progress", "--no-html", "--set", "make.tags=[a, {note: plain words, n: 3}]"])
    assert rc == 0, capsys.readouterr().err
    (run_dir,) = runs.iterdir()
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "succeeded"
    assert m["params_passed"]["make"]["tags"] == ["a", {"note": "plain words", "n": 3}]


# -- files a run reads --------------------------------------------------------------------------------------------

def test_taxonomy_file_is_checked_before_the_run(runs, tmp_path):
    _refused(lambda: run_recipe(SMOKE, sets=["taxonomy=params/taxonomy/nope.yaml"], progress=False),
             "smoke.yaml", "params.taxonomy", "nope.yaml", "does not exist")
    bad = _write(tmp_path / "tax.yaml", "name: broken\n")
    _refused(lambda: run_recipe(SMOKE, sets=[f"taxonomy={bad}"], progress=False),
             "params.taxonomy", "invalid taxonomy file", "tax.yaml", "categories")
    broken = _write(tmp_path / "tax2.yaml", "name: [broken\n")
    _refused(lambda: run_recipe(SMOKE, sets=[f"03_resolve.taxonomy={broken}"], progress=False),
             "stage_params.03_resolve.taxonomy", "tax2.yaml", "not valid YAML at line")
    assert not runs.exists()


def test_panel_file_is_checked_before_the_run(runs, tmp_path):
    _refused(lambda: run_recipe(SMOKE, sets=["panel=params/judges"], progress=False),
             "params.panel", "params/judges", "not a file")
    panel = yaml.safe_load((ROOT / "params/judges/offline.yaml").read_text())
    panel["judges"][0]["colour"] = "red"
    f = _write(tmp_path / "panel.yaml", panel)
    _refused(lambda: run_recipe(SMOKE, sets=[f"02_judge.panel={f}"], progress=False),
             "stage_params.02_judge.panel", "invalid panel file", "panel.yaml", "colour")
    assert not runs.exists()


def test_data_paths_must_be_existing_files(runs):
    _refused(lambda: run_recipe(SMOKE, sets=["00_data.data_path=data/nope.jsonl"], progress=False),
             "smoke.yaml", "stage_params.00_data.data_path", "nope.jsonl", "does not exist")
    _refused(lambda: run_recipe(RECIPE, sets=["make.data_path=tests/fixtures"], progress=False),
             "recipe_ok.yaml", "stage_params.make.data_path", "is a folder", "Hugging Face")
    assert not runs.exists()


def test_a_hugging_face_dataset_folder_is_a_data_path(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    r = load_recipe(RECIPE).with_overrides([f"make.data_path={tmp_path / 'ds'}"])
    check_recipe(r, stage_notebooks(r.stages, r.notebook_dir))


def test_a_notebook_default_that_points_nowhere_names_the_notebook(runs, tmp_path):
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    nb = json.loads((ROOT / "tests/fixtures/notebooks/make.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = [line.replace("tests/fixtures/tiny.csv", "tests/fixtures/gone.csv") for line in cell["source"]]
    (nb_dir / "make.ipynb").write_text(json.dumps(nb))
    f = _write(tmp_path / "r.yaml", {"name": "r", "notebook_dir": str(nb_dir), "stages": ["make"]})
    _refused(lambda: run_recipe(f, progress=False), "make.ipynb", "the default of data_path", "gone.csv")


# -- the recipe and the stage list --------------------------------------------------------------------------------

def test_stage_lists_are_checked(runs, tmp_path):
    f = _write(tmp_path / "unknown.yaml", _fixture_recipe(stages=["make", "mkae"]))
    _refused(lambda: run_recipe(f, progress=False), "unknown.yaml", "unknown stage 'mkae'", "make, use")
    f = _write(tmp_path / "order.yaml", {"name": "o", "stages": ["02_judge", "00_data"]})
    _refused(lambda: load_recipe(f), "order.yaml", "stage order (00_data, 02_judge)")
    f = _write(tmp_path / "twice.yaml", _fixture_recipe(stages=["make", "use", "make"]))
    _refused(lambda: load_recipe(f), "twice.yaml", "make more than once")
    f = _write(tmp_path / "none.yaml", _fixture_recipe(stages=[]))
    _refused(lambda: load_recipe(f), "none.yaml", "stages is empty")
    _refused(lambda: run_recipe(RECIPE, stages=["nope"], progress=False), "--stages nope", "make, use")
    assert not runs.exists()


def test_empty_recipe_and_recipe_without_stages_or_params(tmp_path):
    _refused(lambda: load_recipe(_write(tmp_path / "empty.yaml", "")), "empty.yaml", "is empty")
    _refused(lambda: load_recipe(_write(tmp_path / "comments.yaml", "# nothing\n")), "comments.yaml", "is empty")
    bare = _write(tmp_path / "bare.yaml", "name: bare\n")
    _refused(lambda: load_recipe(bare), "bare.yaml", "no stages and no params")


def test_non_utf8_recipe_names_its_file(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\u00e9\nstages: [make]\n".encode("latin-1"))
    _refused(lambda: load_recipe(f), "latin1.yaml", "not UTF-8", "0xe9")


def test_folders_give_one_line_errors(runs, capsys):
    assert main(["run", "params/"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "params/ is a folder" in err and "smoke.yaml" in err and "Traceback" not in err
    assert main(["params", "notebooks"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "notebooks is a folder" in err and "00_data" in err
    assert main(["params", "no_such_stage"]) == 2
    assert "not a stage" in capsys.readouterr().err


def test_stages_out_of_order_run_in_recipe_order(runs, capsys):
    rc = main(["run", RECIPE, "--stages", "use,make", "--no-progress", "--no-html"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "note: --stages use,make runs in stage order: make,use" in captured.err
    (run_dir,) = runs.iterdir()
    m = json.loads((run_dir / "manifest.json").read_text())
    assert [s["name"] for s in m["stages"]] == ["make", "use"] and m["status"] == "succeeded"
    assert main(["run", RECIPE, "--stages", "use,nope", "--from", run_dir.name]) == 2
    assert "--stages nope" in capsys.readouterr().err


# -- bounds -------------------------------------------------------------------------------------------------------

def test_parse_bound_reads_interval_notation():
    text, b = parse_bound("eval items [1, inf)")
    assert text == "eval items" and b.describe("n") == "n >= 1" and 1 in b and 0 not in b and 10**9 in b
    _, b = parse_bound("a share [0, 1]")
    assert b.describe("p") == "0 <= p <= 1" and 0 in b and 1 in b and -0.1 not in b and 1.1 not in b
    _, b = parse_bound("rate (0, inf)")
    assert b.describe("lr") == "lr > 0" and 0 not in b and 1e-9 in b
    _, b = parse_bound("held out [0, 1)")
    assert 1 not in b and 0.99 in b
    assert parse_bound("cap on items (0 means all)") == ("cap on items (0 means all)", None)
    with pytest.raises(ValueError, match="lower end"):
        parse_bound("x [5, 1]")


def test_out_of_bound_sizes_are_refused_with_file_key_and_bound(runs, tmp_path):
    _refused(lambda: run_recipe(SMOKE, sets=["00_data.n_eval=-5"], progress=False),
             "smoke.yaml", "stage_params.00_data.n_eval = -5", "n_eval >= 1", "00_data.ipynb")
    data = yaml.safe_load((ROOT / SMOKE).read_text())
    data["stage_params"]["00_data"]["n_production"] = 0
    f = _write(tmp_path / "zero.yaml", data)
    _refused(lambda: run_recipe(f, progress=False), "zero.yaml", "stage_params.00_data.n_production = 0",
             "n_production >= 1", "[1, inf)")
    _refused(lambda: run_recipe(SMOKE, sets=["training.lr=0"], progress=False), "params.training.lr = 0",
             "greater than 0", "04_finetune.ipynb")
    _refused(lambda: run_recipe(SMOKE, sets=["00_data.pii_rate=1.5"], progress=False), "0 <= pii_rate <= 1")
    assert not runs.exists()


def test_sizes_of_stages_00_to_04_declare_bounds_their_defaults_meet():
    must = {"00_data": ["n_production", "n_seed_solvable", "n_seed_refusal", "n_eval", "n_conflicts"],
            "01_calibrate": ["cv_folds", "max_holdout", "anchoring_n", "drift_slices"],
            "02_judge": ["max_items"], "03_resolve": ["review.budget", "k_of_n"],
            "04_finetune": ["training.max_steps", "training.batch_size", "training.lora_r", "training.max_len",
                            "max_per_class", "head.members"]}
    for stage, names in must.items():
        params = inspect_params(ROOT / "notebooks" / f"{stage}.ipynb")
        for name in names:
            if "." in name:  # a group's key: its bound is the group model's
                group = name.split(".")[0]
                bounds = {k: b for k, _, _, b, _ in group_rows(group, params[group].default)}
                assert bounds[name], f"{stage}.{name} declares no bound"
            else:
                assert params[name].bound is not None, f"{stage}.{name} declares no bound"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for p in inspect_params(nb).values():
            if p.bound and isinstance(p.default, (int, float)):
                assert p.default in p.bound, f"{nb.name}: default {p.name} = {p.default} is outside {p.bound.text}"


def test_bundled_recipes_pass_every_check(triagesql_path):
    for path in ("params/smoke.yaml", "params/demo.yaml", "params/triagesql.yaml"):
        r = load_recipe(path)
        check_recipe(r, stage_notebooks(r.stages, r.notebook_dir))


def test_params_command_documents_bounds(capsys):
    assert main(["params", "00_data"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("n_eval:"))
    assert line.startswith("n_eval: int = 400  # ") and line.endswith("[bound: n_eval >= 1]")
    assert "[1, inf)" not in line


def test_a_group_is_checked_key_by_key_and_merged_with_the_notebooks_defaults(runs, tmp_path):
    """A recipe may give some of a group's keys (params, then stage_params, then --set group.key); the stage is passed
    the whole group, the notebook's defaults filling the rest. Each key is checked before anything runs."""
    from flywheel_lib.runner.execute import plan_run

    data = yaml.safe_load((ROOT / SMOKE).read_text())
    data["params"]["head"] = {"kind": "minilm", "threshold": 0.4}
    data["stage_params"]["04_finetune"]["head"] = {"C": 2.0}
    f = _write(tmp_path / "grouped.yaml", data)
    plan = plan_run(f, sets=["head.threshold=0.6", "04_finetune.training.max_steps=5"], echo=lambda s: None)
    head, training = plan.passed["04_finetune"]["head"], plan.passed["04_finetune"]["training"]
    default = inspect_params(ROOT / "notebooks" / "04_finetune.ipynb")["head"].default
    assert head == {**default, "kind": "minilm", "threshold": 0.6, "C": 2.0}
    assert training["max_steps"] == 5 and training["batch_size"] == 4  # smoke.yaml's batch_size is kept

    data["stage_params"]["04_finetune"]["head"] = {"kind": "linear", "kidn": 1}
    bad = _write(tmp_path / "bad.yaml", data)
    _refused(lambda: run_recipe(bad, progress=False), "bad.yaml", "stage_params.04_finetune.head has no key 'kidn'",
             "group head: kind, C")
    data["stage_params"]["04_finetune"]["head"] = {"kind": "linear"}
    _refused(lambda: run_recipe(_write(tmp_path / "bad.yaml", data), progress=False),
             "stage_params.04_finetune.head.kind = 'linear'", "'none', 'minilm', 'hybrid' or 'finetuned'",
             "04_finetune.ipynb")
    _refused(lambda: run_recipe(SMOKE, sets=["dpo.steps=-1"], progress=False), "params.dpo.steps = -1",
             "greater than or equal to 0", "05_evaluate.ipynb")
    _refused(lambda: run_recipe(SMOKE, sets=["head=finetuned"], progress=False),
             "params.head is a str, but head is a group")
    _refused(lambda: run_recipe(SMOKE, sets=["nogroup.kind=x"], progress=False), "stage 'nogroup' is not in the recipe",
             "nor a parameter group")
    assert not runs.exists()


def test_a_flat_name_of_an_earlier_recipe_says_where_it_lives_now(runs, tmp_path):
    data = yaml.safe_load((ROOT / SMOKE).read_text())
    data["stage_params"]["04_finetune"]["decision_head"] = "finetuned"
    f = _write(tmp_path / "old.yaml", data)
    _refused(lambda: run_recipe(f, progress=False), "unknown parameter stage_params.04_finetune.decision_head",
             "it is now head.kind", "`head: {kind: ...}`", "--set head.kind=...")
    _refused(lambda: run_recipe(SMOKE, sets=["dpo_steps=2"], progress=False), "params.dpo_steps", "dpo.steps")
    assert not runs.exists()


def test_a_command_line_value_wins_over_the_recipes_stage_value(runs):
    """demo.yaml sets its head in stage_params.04_finetune; --set head.kind (no stage) still changes it, keeping the
    recipe's other head keys, and --set max_refusal_share reaches the stage value the recipe set."""
    from flywheel_lib.runner.execute import plan_run

    plan = plan_run("params/demo.yaml", sets=["head.kind=minilm", "max_refusal_share=0.25"], echo=lambda s: None)
    head = plan.passed["04_finetune"]["head"]
    assert (head["kind"], head["members"], head["refusal_share"]) == ("minilm", 3, 0.2)
    assert plan.passed["04_finetune"]["max_refusal_share"] == 0.25
    assert not runs.exists()
