"""MLflow tracking of runs: a real ``mlflow server`` on 127.0.0.1, real fixture runs, read back through MLflow.

The server runs once for this module (SQLite backend, artifacts in a temporary folder); the runs are the two tiny
fixture stages of tests/fixtures (seconds each). The door checks and the flattening need no server.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from flywheel_lib.runner import RecipeError, load_recipe, run_recipe
from flywheel_lib.tracking import Tracking, metrics_of, params_of, tags_of, tracking_for
from flywheel_lib.tracking.flatten import MAX_KEY, MAX_PARAM_VALUE, WITHHELD

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "tests/fixtures/recipe_ok.yaml"
FAKE_KEY = "sk-proj-" + "Zq7" * 10
"""An OpenAI-shaped key in the runner's environment: it must reach no parameter, tag or file in MLflow."""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("MLFLOW_TRACKING_URI", "FLYWHEEL_TRACKING", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(k, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: dict | None = None, timeout: float = 10) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a free port of 127.0.0.1; yields its URI. Stopped (its process group) after the module."""
    pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install -e '.[tracking]')")
    tmp = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--default-artifact-root", str(tmp / "artifacts")]
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - the server writes to it until the fixture closes it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):  # up to ~3 minutes on a busy machine: it creates its database first
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited {proc.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                if _get(f"{uri}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not answer on {uri}:\n{(tmp / 'server.log').read_text()[-3000:]}")
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)  # its workers may take longer to drain: the store is thrown away anyway
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        log.close()


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _runs_tagged(client, **tags):
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, filter_string=where)


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


# --- at the door: no server needed -------------------------------------------------------------------------------

def test_tracking_setting_is_read_and_checked_at_the_door(monkeypatch):
    r = load_recipe(RECIPE)
    assert not tracking_for(r).on  # off unless asked
    on = tracking_for(r.with_overrides(["tracking=mlflow"]))
    assert on.on and on.backend == "mlflow" and "params.tracking" in on.source
    assert "tracking" not in on.strip(r.with_overrides(["tracking=mlflow"])).params
    with pytest.raises(RecipeError, match=r"params\.tracking.*mlflow or off"):
        tracking_for(r.with_overrides(["tracking=wandb"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert tracking_for(r).on and tracking_for(r).source == "MLFLOW_TRACKING_URI"
    assert not tracking_for(r.with_overrides(["tracking=off"])).on  # the recipe's word wins over the environment
    monkeypatch.setenv("FLYWHEEL_TRACKING", "off")
    assert not tracking_for(r).on
    assert Tracking.from_value(True, "x").on and not Tracking.from_value(None, "x").on


def test_tracking_off_leaves_no_note_and_unknown_params_still_fail(runs):
    with pytest.raises(RecipeError, match="unknown parameter params.trackin"):
        run_recipe(RECIPE, sets=["trackin=mlflow"], progress=False, render_html=False)
    res = run_recipe(RECIPE, sets=["tracking=off"], progress=False, render_html=False)
    assert res.ok, res.failure
    assert "tracking" not in _manifest(res.run_dir)["notes"]
    assert not (runs.parent / "mlruns").exists()


def test_manifest_is_flattened_within_mlflow_limits():
    m = {
        "run_id": "r1", "recipe": "demo", "status": "succeeded", "duration_s": 12.5,
        "git": {"commit": "a" * 40, "branch": "main", "dirty": False},
        "parent": {"lineage": "L1", "cycle": 2, "parent_run": "r0"},
        "params_in_effect": {"02_judge": {"run_dir": "/tmp/x", "notes": "x" * 10_000, "k" * 400: 1,
                                          "panel": {"judges": ["a", "b"], "weights": {"a": 1.0}},
                                          "api_key": "typed-by-hand", "odd:name": None}},
        "metrics": {"02_judge": {"kappa": 0.61, "ok": True, "label": "text", "by": {"x": 3}, "gone": float("nan")}},
        "stages": [{"name": "02_judge", "duration_s": 3.0, "status": "succeeded"}],
    }
    p = params_of(m)
    assert "02_judge.run_dir" not in p
    assert len(p["02_judge.notes"]) == MAX_PARAM_VALUE and p["02_judge.notes"].endswith("[cut: 10000 chars]")
    assert all(len(k) <= MAX_KEY for k in p) and sum(k.startswith("02_judge.kkkk") for k in p) == 1
    assert p["02_judge.panel.judges"] == '["a", "b"]' and p["02_judge.panel.weights.a"] == "1.0"
    assert p["02_judge.api_key"] == WITHHELD  # a hand-edited manifest still sends no secret
    assert p["02_judge.odd_name"] == "null"
    x = metrics_of(m)
    assert x["02_judge.kappa"] == 0.61 and x["02_judge.ok"] == 1.0 and x["02_judge.by.x"] == 3.0
    assert "02_judge.label" not in x and x["02_judge.gone"] != x["02_judge.gone"]
    assert x["02_judge.duration_s"] == 3.0 and x["duration_s"] == 12.5
    t = tags_of(m)
    assert t["flywheel.git_commit"] == "a" * 40 and t["mlflow.source.git.commit"] == "a" * 40
    assert (t["flywheel.lineage"], t["flywheel.cycle"], t["flywheel.parent_run"]) == ("L1", "2", "r0")
    assert t["flywheel.run_id"] == t["mlflow.runName"] == "r1" and t["flywheel.git_dirty"] == "false"


# --- a real server -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_is_logged_to_an_mlflow_server(runs, server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    res = run_recipe(RECIPE, sets=["tracking=mlflow"], progress=False)
    assert res.ok, res.failure
    m = _manifest(res.run_dir)
    note = m["notes"]["tracking"]
    assert note["status"] == "logged" and note["uri"] == server and note["experiment"] == "fixture", note
    assert m["notes"]["use"] == {"seen_label": "hello"}  # the stages' notes are kept

    c = _client(server)
    [run] = _runs_tagged(c, **{"flywheel.run_id": res.run_id})
    assert run.info.run_id == note["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == res.run_id
    assert run.data.params == {"make.n_rows": "4", "make.scale": "2.0", "make.label": "hello", "make.tags": "[]",
                               "make.data_path": "tests/fixtures/tiny.csv", "use.fail": "false",
                               "use.label": "hello"}
    met = run.data.metrics
    assert met["make.rows"] == 4 and met["make.total"] == 12.0 and met["use.mean_v"] == 3.0
    assert met["duration_s"] == m["duration_s"] and met["make.duration_s"] > 0
    tags = run.data.tags
    assert tags["flywheel.recipe"] == "fixture" and tags["flywheel.status"] == "succeeded"
    assert tags["flywheel.git_commit"] == m["git"]["commit"] and len(tags["flywheel.git_commit"]) == 40
    assert tags["flywheel.overrides"] == '["tracking=mlflow"]' and "mlflow.parentRunId" not in tags
    files = _artifacts(c, run.info.run_id)
    assert files == {"manifest.json", "index.html", "recipe.yaml", "notebooks/make.html", "notebooks/use.html"}
    logged = json.loads(Path(c.download_artifacts(run.info.run_id, "manifest.json", str(runs.parent))).read_text())
    assert logged["run_id"] == res.run_id and "tracking" not in logged["notes"]
    everything = json.dumps([run.data.params, run.data.tags, logged])
    assert FAKE_KEY not in everything and "OPENAI_API_KEY" not in everything  # no environment reaches MLflow

    # what the MLflow UI reads: its REST API, and its page
    status, body = _get(f"{server}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [note["experiment_id"]], "filter": f"tags.`flywheel.run_id` = '{res.run_id}'"})
    found = json.loads(body)["runs"]
    assert status == 200 and [r["info"]["run_id"] for r in found] == [note["mlflow_run_id"]]
    assert {p["key"] for p in found[0]["data"]["params"]} >= {"make.n_rows", "use.label"}
    status, page = _get(f"{server}/")
    assert status == 200 and "<html" in page.lower() and "mlflow" in page.lower()


@pytest.mark.slow
def test_server_down_keeps_the_run_and_track_replays_it(runs, server, monkeypatch, capsys):
    from flywheel_lib.cli import main

    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    res = run_recipe(RECIPE, progress=False)  # $MLFLOW_TRACKING_URI alone turns tracking on
    assert res.ok and res.status == "succeeded", res.failure
    m = _manifest(res.run_dir)
    note = m["notes"]["tracking"]
    assert m["status"] == "succeeded" and note["status"] == "failed" and note["uri"] == down
    assert note["error"] and note["replay"] == f"flywheel track {res.run_id}"
    assert (res.run_dir / "index.html").exists() and m["metrics"]["make"] == {"rows": 4, "total": 12.0}

    with _refusing_server() as refusing:  # up, but it refuses every request: noted, not raised
        assert main(["track", res.run_id, "--uri", refusing]) == 1
    note = _manifest(res.run_dir)["notes"]["tracking"]
    assert note["status"] == "failed" and "read-only store" in note["error"] and note["uri"] == refusing
    assert os.environ["MLFLOW_TRACKING_URI"] == down  # --uri is for that command only

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    assert main(["track", res.run_id]) == 0
    first = _manifest(res.run_dir)["notes"]["tracking"]
    assert first["status"] == "logged" and first["created"] is True
    assert f"{res.run_id}: logged (MLflow run {first['mlflow_run_id']})" in capsys.readouterr().out
    assert main(["track", str(res.run_dir)]) == 0  # again: the same MLflow run, nothing doubled
    again = _manifest(res.run_dir)["notes"]["tracking"]
    assert again["mlflow_run_id"] == first["mlflow_run_id"] and again["created"] is False

    c = _client(server)
    [run] = _runs_tagged(c, **{"flywheel.run_id": res.run_id})
    assert run.info.run_id == first["mlflow_run_id"] and run.data.params["make.n_rows"] == "4"
    assert [x.value for x in c.get_metric_history(run.info.run_id, "make.rows")] == [4.0]
    assert "manifest.json" in _artifacts(c, run.info.run_id)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    assert main(["track", res.run_id]) == 1  # a failed replay says so and notes it
    assert _manifest(res.run_dir)["notes"]["tracking"]["status"] == "failed"


@contextlib.contextmanager
def _refusing_server():
    """An HTTP server on 127.0.0.1 that answers every request 403 with MLflow's error body; yields its URI."""
    class Refuse(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            body = json.dumps({"error_code": "PERMISSION_DENIED", "message": "read-only store"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = _refuse

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _cycle_recipe(tmp: Path) -> Path:
    """The fixture recipe over copies of its notebooks that declare ``parent_run`` and ``cycle``: a lineage."""
    nbs = tmp / "notebooks"
    nbs.mkdir()
    shutil.copy(ROOT / "tests/fixtures/notebooks/use.ipynb", nbs / "use.ipynb")
    nb = json.loads((ROOT / "tests/fixtures/notebooks/make.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"]).rstrip("\n")
    cell["source"] = src + '\nparent_run: str = ""  # the previous cycle\ncycle: int = 1  # cycle number\n'
    (nbs / "make.ipynb").write_text(json.dumps(nb))
    recipe = tmp / "cycles.yaml"
    recipe.write_text(f"name: fixture_cycles\nnotebook_dir: {nbs}\nstages: [make, use]\n"
                      "params: {label: hello, tracking: mlflow}\nstage_params: {make: {n_rows: 4}}\n")
    return recipe


@pytest.mark.slow
def test_a_lineage_is_a_parent_run_with_its_cycles_as_children(runs, server, monkeypatch, tmp_path):
    from flywheel_lib.flywheel.cycles import run_cycles

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    lineage, results, _ = run_cycles(_cycle_recipe(tmp_path), 2, progress=False)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    c = _client(server)
    [parent] = _runs_tagged(c, **{"flywheel.lineage": lineage, "flywheel.kind": "lineage"})
    assert parent.info.run_name == lineage and parent.info.status == "FINISHED"
    children = _runs_tagged(c, **{"mlflow.parentRunId": parent.info.run_id})
    by_cycle = {ch.data.tags["flywheel.cycle"]: ch for ch in children}
    assert sorted(by_cycle) == ["1", "2"]
    assert {ch.data.tags["flywheel.run_id"] for ch in children} == {r.run_id for r in results}
    assert by_cycle["2"].data.tags["flywheel.parent_run"] == results[0].run_id
    assert all(ch.data.tags["flywheel.lineage"] == lineage for ch in children)
    for r in results:
        assert _manifest(r.run_dir)["notes"]["tracking"]["parent_mlflow_run_id"] == parent.info.run_id
    assert [(x.step, x.value) for x in c.get_metric_history(parent.info.run_id, "rows")] == [(1, 4.0), (2, 4.0)]

    from flywheel_lib.cli import main

    assert main(["track", results[1].run_id]) == 0  # a replayed cycle finds its parent again
    assert len(_runs_tagged(c, **{"flywheel.lineage": lineage, "flywheel.kind": "lineage"})) == 1
    assert len(_runs_tagged(c, **{"mlflow.parentRunId": parent.info.run_id})) == 2
    assert len(c.get_metric_history(parent.info.run_id, "rows")) == 2


@pytest.mark.slow
def test_default_store_is_local_under_outputs(runs):
    res = run_recipe(RECIPE, sets=["tracking=mlflow"], progress=False, render_html=False)
    assert res.ok, res.failure
    note = _manifest(res.run_dir)["notes"]["tracking"]
    store = runs.parent / "mlruns"
    assert note["status"] == "logged" and note["uri"] == f"sqlite:///{store / 'mlflow.db'}", note
    assert (store / "mlflow.db").is_file()
    assert (store / "artifacts" / note["mlflow_run_id"] / "artifacts" / "manifest.json").is_file()
    [run] = _runs_tagged(_client(note["uri"]), **{"flywheel.run_id": res.run_id})
    assert run.data.metrics["make.rows"] == 4
