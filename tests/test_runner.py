"""The cycle runner on two tiny fixture notebooks, through real papermill and a real kernel."""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest

from flywheel_lib.cli import main
from flywheel_lib.runner import RecipeError, compare_runs, run_recipe, runs_table

RECIPE = "tests/fixtures/recipe_ok.yaml"


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture
def ok_run(runs):
    res = run_recipe(RECIPE, progress=False)
    assert res.ok, res.failure
    return res


def test_unknown_key_is_rejected_before_anything_runs(runs):
    with pytest.raises(RecipeError) as e:
        run_recipe(RECIPE, sets=["n_rowz=3"], progress=False)
    msg = str(e.value)
    assert "recipe_ok.yaml" in msg and "n_rowz" in msg and "make.ipynb" in msg
    assert not runs.exists() or not any(runs.iterdir())


def test_unknown_stage_key_names_the_notebook(runs):
    with pytest.raises(RecipeError, match=r"stage_params\.use\.n_rows.*use\.ipynb"):
        run_recipe(RECIPE, sets=["use.n_rows=3"], progress=False)


def test_wrong_type_is_rejected_before_anything_runs(runs):
    with pytest.raises(RecipeError) as e:
        run_recipe(RECIPE, sets=["make.n_rows=many"], progress=False)
    msg = str(e.value)
    assert "n_rows" in msg and "int" in msg and "make.ipynb" in msg and "recipe_ok.yaml" in msg
    with pytest.raises(RecipeError, match="scale"):
        run_recipe(RECIPE, sets=["make.scale=true"], progress=False)  # a bool is no float
    assert not runs.exists() or not any(runs.iterdir())


def test_secret_values_are_refused(runs):
    with pytest.raises(RecipeError, match="environment"):
        run_recipe(RECIPE, sets=["openai_api_key=sk-abc"], progress=False)


def test_manifest_records_params_env_inputs_timings_and_metrics(ok_run):
    m = _manifest(ok_run.run_dir)
    assert m["status"] == "succeeded" and m["recipe"] == "fixture"
    assert m["params_passed"]["make"] == {"label": "hello", "n_rows": 4, "scale": 2.0}
    eff = m["params_in_effect"]["make"]
    assert eff["n_rows"] == 4 and eff["tags"] == [] and eff["data_path"] == "tests/fixtures/tiny.csv"
    assert m["params_in_effect"]["use"]["fail"] is False
    assert len(m["git"]["commit"]) == 40
    if m["git"]["dirty"] is None:  # git could not check this checkout: the manifest must say why, not guess
        assert m["git"]["dirty_error"]
        warnings.warn(f"git could not tell whether the checkout is dirty: {m['git']['dirty_error']}", stacklevel=1)
    else:
        assert isinstance(m["git"]["dirty"], bool)
    assert m["python"].startswith("3.") and m["packages"]["papermill"]
    assert m["data_hashes"]["tests/fixtures/tiny.csv"] == (
        __import__("hashlib").sha256(b"a,b\n1,2\n3,4\n").hexdigest()
    )
    st = {s["name"]: s for s in m["stages"]}
    for name in ("make", "use"):
        assert st[name]["status"] == "succeeded"
        assert st[name]["duration_s"] > 0 and st[name]["started_at"] <= st[name]["ended_at"]
        assert (ok_run.run_dir / st[name]["notebook"]).exists() and (ok_run.run_dir / st[name]["html"]).exists()
    assert m["metrics"]["make"] == {"rows": 4, "total": 12.0}
    assert m["headline"] == {"rows": 4, "mean_v": 3.0}
    assert m["notes"]["use"]["seen_label"] == "hello"
    index = (ok_run.run_dir / "index.html").read_text()
    assert "notebooks/use.html" in index and "figures/use__v.png" in index and "mean_v" in index


def test_failed_notebook_is_kept_and_run_marked_failed(runs):
    res = run_recipe(RECIPE, sets=["use.fail=true"], progress=False)
    assert not res.ok and res.failed_stage == "use"
    assert "cell" in res.failure and "RuntimeError: failing on purpose" in res.failure
    m = _manifest(res.run_dir)
    assert m["status"] == "failed"
    use = next(s for s in m["stages"] if s["name"] == "use")
    assert use["status"] == "failed" and "if fail" in use["failed_cell"]
    kept = json.loads((res.run_dir / "notebooks" / "use.ipynb").read_text())
    errors = [o for c in kept["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "failing on purpose"
    assert (res.run_dir / "notebooks" / "use.html").exists()
    assert "failed" in (res.run_dir / "index.html").read_text()


def test_stages_from_reuses_earlier_artifacts(ok_run):
    res = run_recipe(RECIPE, stages=["use"], from_run=ok_run.run_id, sets=["label=other"], progress=False)
    assert res.ok, res.failure
    assert res.run_dir != ok_run.run_dir
    m = _manifest(res.run_dir)
    assert m["parent"] == {"from_run": ok_run.run_id, "reused_stages": ["make"]}
    st = {s["name"]: s for s in m["stages"]}
    assert st["make"]["status"] == "reused" and st["make"]["reused_from"] == ok_run.run_id
    assert st["use"]["status"] == "succeeded"
    # the new folder stands alone: the reused artifact and notebook are there
    assert (res.run_dir / "artifacts" / "table.parquet").exists()
    assert (res.run_dir / "notebooks" / "make.ipynb").exists()
    assert m["params_in_effect"]["use"]["label"] == "other"
    assert m["params_in_effect"]["make"]["label"] == "hello"  # carried from the parent
    assert m["metrics"]["make"]["rows"] == 4
    # the earlier run is untouched
    assert _manifest(ok_run.run_dir)["params_in_effect"]["use"]["label"] == "hello"


def test_reused_stages_records_are_in_the_manifest_before_the_next_stage_runs(ok_run, tmp_path):
    """A stage that runs after reused ones (06 after a reused 05) reads their notes and metrics from the manifest."""
    from flywheel_lib.runner.manifest import Manifest
    from flywheel_lib.runner.resume import _reuse

    run_dir = tmp_path / "next"
    run_dir.mkdir()
    m = Manifest(run_dir, {"run_id": "next", "stages": [{"name": "use", "status": "pending"}],
                           "stage_order": ["make", "use"]})
    assert _reuse(ok_run.run_dir, run_dir, m, ["use"]) == ["make"]
    assert m.data["metrics"]["make"]["rows"] == 4   # before any stage of the new run has run


def test_runs_compare_and_show_commands(ok_run, capsys):
    other = run_recipe(RECIPE, sets=["make.n_rows=6"], progress=False)
    t = runs_table()
    assert set(t.run_id) == {ok_run.run_id, other.run_id}
    assert (t.status == "succeeded").all() and t.headline.str.contains("rows=").all()
    cmp = compare_runs(ok_run.run_id, other.run_id)
    params = cmp["params"].set_index("param")
    assert params.loc["make.n_rows"].tolist() == [4, 6]
    metrics = cmp["metrics"].set_index("metric")
    assert metrics.loc["make.rows", "delta"] == 2
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert ok_run.run_id in out and other.run_id in out
    assert main(["compare", ok_run.run_id, other.run_id]) == 0
    out = capsys.readouterr().out
    assert "make.n_rows" in out and "make.rows" in out
    assert main(["show", "_fixture_"]) == 2  # ambiguous: both runs match
    assert main(["show", other.run_id]) == 0
    assert "make" in capsys.readouterr().out


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_git_state_tells_clean_dirty_outside_and_unreadable(tmp_path):
    from flywheel_lib.runner.manifest import git_state

    assert git_state(tmp_path) == {"commit": None, "branch": None, "dirty": None}
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    clean = git_state(repo)
    assert len(clean["commit"]) == 40 and clean["branch"] == "main" and clean["dirty"] is False
    (repo / "untracked.txt").write_text("not part of the run's code\n")
    assert git_state(repo)["dirty"] is False
    (repo / "a.txt").write_text("two\n")
    assert git_state(repo)["dirty"] is True
    assert not (repo / ".git" / "index.lock").exists()
    (repo / ".git" / "index").write_bytes(b"not an index")  # git can no longer compare the tree
    broken = git_state(repo)
    assert broken["commit"] == clean["commit"] and broken["dirty"] is None and "index" in broken["dirty_error"]


@pytest.mark.parametrize("value, annotation, ok", [
    (3, "int", True), (True, "int", False), (3.0, "int", False), ("3", "int", False), (3, "float", True),
    (True, "float", False), (1, "bool", False), ([1], "list", True), ({}, "dict", True), ([], "dict", False),
    (None, "int | None", True), (None, "Optional[int]", True), (None, "int", False), (["a"], "list[str]", True),
    ([1], "list[str]", False), ("x", "Any", True), ("x", "", True), (1, "no_such_type", False),
])
def test_parameter_types_are_checked_strictly(value, annotation, ok):
    """A recipe value must be of the declared type as written: no coercion of "3" to 3 or of True to 1."""
    from flywheel_lib.runner.params import type_ok

    assert type_ok(value, annotation) is ok
