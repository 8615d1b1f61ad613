"""A run owns its status: real ``flywheel run`` processes killed, terminated and interrupted mid-stage, then resumed.

The recipe is three tiny stages (``make``, ``wait``, ``use``); ``wait`` writes a table and starts a model folder,
tells the test it has started (``<gate>.started`` holds the kernel's pid), then waits until the file ``<gate>``
exists. The test signals the runner while ``wait`` waits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from flywheel_lib.cli import main
from flywheel_lib.paths import atomic_dir, is_partial
from flywheel_lib.runner import RecipeError, run_recipe
from flywheel_lib.runner.manifest import Heartbeat, pid_alive, run_state, runner_gone, runner_identity

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_NB = ROOT / "tests" / "fixtures" / "notebooks"

WAIT_CELL = """\
import os, time
from pathlib import Path
import pandas as pd
from flywheel_lib.paths import atomic_dir
from flywheel_lib.stage import open_stage
st = open_stage(run_dir, 'wait')
st.write('early', pd.DataFrame({'x': [1, 2]}))
with atomic_dir(st.path('models/v', ext='')) as tmp:
    (tmp / 'weights.bin').write_bytes(b'w' * 4096)
    Path(gate + '.started').write_text(str(os.getpid()))
    t0 = time.time()
    while not Path(gate).exists() and time.time() - t0 < 120:  # bounded: an orphaned kernel ends by itself
        time.sleep(0.05)
    (tmp / 'config.json').write_text('{}')
st.metric('waited', 1, headline=True)
"""


def _wait_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('run_dir: str = ""  # run folder\ngate: str = ""  # the file to wait for')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(WAIT_CELL)]
    nb.metadata["kernelspec"] = {"display_name": "Python (flywheel)", "language": "python", "name": "flywheel"}
    nbformat.write(nb, path)


@pytest.fixture
def hold(tmp_path, runs):
    """The three-stage recipe, its gate file, a private TMPDIR, and the environment for a ``flywheel`` process."""
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    for name in ("make", "use"):
        shutil.copy(FIXTURE_NB / f"{name}.ipynb", nbdir / f"{name}.ipynb")
    _wait_notebook(nbdir / "wait.ipynb")
    gate = tmp_path / "gate"
    recipe = tmp_path / "hold.yaml"
    recipe.write_text(
        f"name: hold\ndescription: three tiny stages, the middle one waits\nnotebook_dir: {nbdir}\n"
        f"stages: [make, wait, use]\nparams:\n  label: hello\n"
        f"stage_params:\n  make: {{n_rows: 4, scale: 2.0}}\n  wait: {{gate: {gate}}}\n")
    tmp = Path(tempfile.mkdtemp(prefix="fwk-", dir="/tmp"))  # short: a kernel's socket path must fit in ~107 bytes
    env = {**os.environ, "FLYWHEEL_RUNS_DIR": str(runs), "FLYWHEEL_ROOT": str(ROOT), "TMPDIR": str(tmp),
           "OMP_NUM_THREADS": "1", "FLYWHEEL_MAX_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    kernels: list[int] = []
    yield {"recipe": recipe, "gate": gate, "tmp": tmp, "env": env, "runs": runs, "kernels": kernels}
    for pid in kernels:  # a kernel orphaned by SIGKILL ends by itself; never leave one behind regardless
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


def _flywheel(hold, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flywheel_lib.cli", "run", str(hold["recipe"]), "--no-progress",
                             *args], cwd=ROOT, env=hold["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _until(cond, what: str, limit: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"flywheel exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() - t0 > limit:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start_and_hold(hold) -> tuple[subprocess.Popen, Path]:
    """Start ``flywheel run``; return it and its run folder once ``wait`` is waiting."""
    proc = _flywheel(hold)
    started = Path(f"{hold['gate']}.started")
    _until(started.exists, "stage wait to start", proc=proc)
    hold["kernels"].append(int(started.read_text()))
    (run_dir,) = [d for d in hold["runs"].iterdir() if d.is_dir()]
    return proc, run_dir


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _stages(m: dict) -> dict[str, dict]:
    return {s["name"]: s for s in m["stages"]}


def _hashes(run_dir: Path) -> dict[str, str]:
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _partials(run_dir: Path) -> list[str]:
    return [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if is_partial(p.name)]


def _kernel_dirs(hold) -> list[str]:
    return [p.name for p in hold["tmp"].glob("flywheel-kernel-*")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_run_as_interrupted_with_the_stage_and_a_report(hold, sig, capsys):
    proc, run_dir = _start_and_hold(hold)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "Traceback" not in out
    assert f"interrupted (wait interrupted by {sig.name})" in err.strip().splitlines()[-1]

    m = _manifest(run_dir)
    assert m["status"] == "interrupted" and m["finished_at"]
    assert m["interrupted"] == {"signal": sig.name, "stage": "wait"}
    st = _stages(m)
    assert st["make"]["status"] == "succeeded" and st["use"]["status"] == "skipped"
    assert st["wait"]["status"] == "interrupted" and st["wait"]["error"] == f"interrupted by {sig.name}"
    assert st["wait"]["outputs"] == ["artifacts/early.parquet"]  # written before the interrupt; no model folder
    assert "interrupted" in (run_dir / "index.html").read_text()
    assert (run_dir / "notebooks" / "wait.html").exists()  # the interrupted notebook is kept and rendered
    # the cell was stopped by the interrupt: the model folder is not there, half-written or otherwise
    assert not (run_dir / "artifacts" / "models" / "v").exists() and _partials(run_dir) == []
    assert not (run_dir / "heartbeat").exists()
    _until(lambda: not pid_alive(hold["kernels"][0]), "the kernel to be gone", limit=30)
    assert _kernel_dirs(hold) == []

    assert main(["runs"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if run_dir.name in line)
    assert " interrupted " in row
    assert main(["show", run_dir.name]) == 0
    assert f"status    interrupted by {sig.name} during wait" in capsys.readouterr().out


def test_killed_run_shows_dead_and_resume_reruns_only_what_is_missing(hold, capsys):
    proc, run_dir = _start_and_hold(hold)
    assert run_state(_manifest(run_dir), run_dir) == "running"
    assert main(["runs"]) == 0
    assert " running " in next(x for x in capsys.readouterr().out.splitlines() if run_dir.name in x)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)

    m = _manifest(run_dir)
    assert m["status"] == "running" and m["runner"]["pid"] == proc.pid  # the file cannot know ...
    assert run_state(m, run_dir) == "dead"  # ... but the runs list can
    assert main(["runs"]) == 0
    assert " dead " in next(x for x in capsys.readouterr().out.splitlines() if run_dir.name in x)
    assert main(["show", run_dir.name]) == 0
    shown = capsys.readouterr().out
    assert f"status    dead during wait (runner pid {proc.pid}" in shown and "has exited" in shown
    assert not (run_dir / "artifacts" / "models" / "v").exists()  # killed mid-write: no model folder
    _until(lambda: not pid_alive(hold["kernels"][0]), "the orphaned kernel to end", limit=60)

    before = _hashes(run_dir)
    hold["gate"].write_text("go")
    res = _flywheel(hold, "--from", run_dir.name)
    out, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    assert "resuming" in err and "running wait, use" in err
    new = hold["runs"] / out.strip()
    m2 = _manifest(new)
    st = _stages(m2)
    assert m2["status"] == "succeeded" and m2["parent"] == {"from_run": run_dir.name, "reused_stages": ["make"]}
    assert st["make"]["status"] == "reused" and st["make"]["reused_from"] == run_dir.name
    assert st["wait"]["status"] == "succeeded" and st["use"]["status"] == "succeeded"
    assert (new / "artifacts" / "models" / "v" / "config.json").exists()
    table = "artifacts/table.parquet"  # make's output, lent by a hard link
    assert (new / table).stat().st_ino == (run_dir / table).stat().st_ino
    early = "artifacts/early.parquet"  # written by the killed wait: not lent, written anew
    assert (new / early).exists() and (new / early).stat().st_ino != (run_dir / early).stat().st_ino
    assert _partials(new) == []  # a write the kill cut short is never lent
    assert m2["metrics"]["use"]["mean_v"] == 3.0
    assert _hashes(run_dir) == before  # the killed run's files are exactly as it left them
    assert _kernel_dirs(hold) == []  # the resumed run swept the killed runner's kernel folder too


def test_resume_refuses_a_run_that_is_still_running(runs):
    live = runs / "20990101-000000_fixture_live"
    live.mkdir(parents=True)
    (live / "manifest.json").write_text(json.dumps({
        "run_id": live.name, "status": "running", "runner": runner_identity(), "stages": [], "stage_order": []}))
    with pytest.raises(RecipeError, match="still running"):
        run_recipe("tests/fixtures/recipe_ok.yaml", from_run=live.name, progress=False)
    assert sorted(p.name for p in runs.iterdir()) == [live.name]


def test_a_reused_pid_or_a_stale_heartbeat_means_dead(tmp_path):
    me = runner_identity()
    assert runner_gone(me, tmp_path) is None
    assert "another process" in runner_gone({**me, "process_start": "ticks:1"}, tmp_path)
    assert run_state({"status": "running", "runner": {**me, "process_start": "ticks:1"}}, tmp_path) == "dead"
    assert run_state({"status": "succeeded", "runner": {**me, "process_start": "ticks:1"}}, tmp_path) == "succeeded"
    assert run_state({"status": "running"}, tmp_path) == "running"  # no runner record: nothing to judge by
    elsewhere = {**me, "host": "another-machine"}
    assert "no heartbeat" in runner_gone(elsewhere, tmp_path)
    with Heartbeat(tmp_path):
        _until((tmp_path / "heartbeat").exists, "the first heartbeat", limit=30)
        assert runner_gone(elsewhere, tmp_path) is None
        os.utime(tmp_path / "heartbeat", (1e9, 1e9))  # as if the runner stopped beating long ago
        assert "last heartbeat" in runner_gone(elsewhere, tmp_path)
    assert not (tmp_path / "heartbeat").exists()


def test_atomic_dir_leaves_nothing_or_the_whole_folder_and_never_writes_through_links(tmp_path):
    target = tmp_path / "models" / "v"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.bin").write_bytes(b"half")
            raise RuntimeError("stopped")
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "a.bin").write_bytes(b"earlier run")
    target.mkdir(parents=True)
    os.link(earlier / "a.bin", target / "a.bin")  # as ``--from`` lends it
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"new")
        (tmp / "b.bin").write_bytes(b"new")
    assert sorted(p.name for p in target.iterdir()) == ["a.bin", "b.bin"]
    assert (target / "a.bin").read_bytes() == b"new" and (earlier / "a.bin").read_bytes() == b"earlier run"
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["v"]


def test_kernel_sockets_go_to_a_short_folder_when_the_temp_dir_is_long(tmp_path, monkeypatch):
    """Under a deep temp dir (pytest-xdist's, a CI runner's) a kernel's IPC socket path would pass the ~107-byte
    limit and the kernel would not start: the runner puts its kernel folders in /tmp instead."""
    import tempfile as tf

    from flywheel_lib.runner.execute import IPC_PATH_MAX, _kernel_tmp_root

    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tf, "tempdir", str(deep))
    assert _kernel_tmp_root() == Path("/tmp")
    monkeypatch.setattr(tf, "tempdir", "/tmp")
    assert _kernel_tmp_root() == Path("/tmp") and len("/tmp") < IPC_PATH_MAX
