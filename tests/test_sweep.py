"""``flywheel sweep``: pooled statistics on hand-made tables, and real sweeps of a one-stage recipe (a tiny notebook
written here that draws seeded predictions for two variants) through real worker processes, a real SIGKILL and a
real local Ray instance."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel_lib.evaluation import item_outcomes
from flywheel_lib.sweep import (
    cmh,
    parse_grid,
    pool_comparisons,
    pooled_mcnemar,
    run_sweep,
    summarize_metrics,
    t_interval,
)
from flywheel_lib.sweep.launch import available_cores, thread_share
from flywheel_lib.sweep.stats import mcnemar_counts

ROOT = Path(__file__).resolve().parents[1]

# --- statistics on hand-made tables ---------------------------------------------------------------------------


def test_t_interval_known_values():
    r = t_interval([0.5, 0.6, 0.7])  # sd 0.1, t(0.975, 2) = 4.3027
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.6)
    assert r["hi"] - r["mean"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    one = t_interval([0.4])
    assert one["mean"] == 0.4 and math.isnan(one["lo"]) and math.isnan(one["hi"])
    flat = t_interval([2.0, 2.0, float("nan")])
    assert (flat["lo"], flat["hi"], flat["n"]) == (2.0, 2.0, 2)


def test_summarize_metrics_per_config_and_metric():
    v = pd.DataFrame({"config": ["a"] * 4 + ["b"] * 2, "seed": [1, 2, 1, 2, 1, 2],
                      "metric": ["m", "m", "k", "k", "m", "m"], "value": [1.0, 3.0, 0.5, 0.5, 10.0, 12.0]})
    s = summarize_metrics(v).set_index(["config", "metric"])
    assert s.loc[("a", "m"), "mean"] == 2.0 and s.loc[("b", "m"), "mean"] == 11.0
    assert s.loc[("a", "m"), "hi"] == pytest.approx(2.0 + 12.706205 * math.sqrt(2) / math.sqrt(2), rel=1e-6)
    assert s.loc[("a", "k"), "lo"] == s.loc[("a", "k"), "hi"] == 0.5


SEEDS = pd.DataFrame({"seed": [7, 11], "both": [10, 8], "a_only": [2, 1], "b_only": [6, 5], "neither": [2, 6]})


def test_pooled_mcnemar_is_cmh_over_pair_strata():
    # Pooled discordant pairs: a only 3, b only 11. CMH over matched pairs = McNemar on the sums:
    # (11 - 3)^2 / 14 = 4.5714 (p 0.03251); with Edwards' correction (8 - 1)^2 / 14 = 3.5 (p 0.06137).
    raw = pooled_mcnemar(SEEDS, correction=False)
    assert (raw["a_only"], raw["b_only"], raw["n"], raw["seeds"]) == (3, 11, 40, 2)
    assert raw["statistic"] == pytest.approx(64 / 14) and raw["p_value"] == pytest.approx(0.0325094, abs=1e-6)
    corr = pooled_mcnemar(SEEDS)
    assert corr["statistic"] == pytest.approx(3.5) and corr["p_value"] == pytest.approx(0.0613688, abs=1e-6)
    assert raw["odds_ratio"] == pytest.approx(11 / 3)  # Mantel-Haenszel over the pair strata: b_only / a_only
    # the per-seed differences (b - a): (6-2)/20 = 0.2 and (5-1)/20 = 0.2
    assert raw["mean_diff"] == pytest.approx(0.2) and raw["diff_lo"] == pytest.approx(0.2)
    from statsmodels.stats.contingency_tables import mcnemar

    summed = mcnemar([[18, 3], [11, 8]], exact=False, correction=False)
    assert raw["p_value"] == pytest.approx(summed.pvalue)
    none = pooled_mcnemar(SEEDS.assign(a_only=0, b_only=0))
    assert none["p_value"] == 1.0 and none["statistic"] == 0.0


def test_cmh_on_textbook_strata_matches_the_formula():
    t = np.dstack([[[10, 5], [4, 11]], [[8, 6], [3, 9]]])  # two strata, rows exposure, columns outcome
    num = var = 0.0
    for k in range(2):
        (a, b), (c, d) = t[:, :, k]
        n = a + b + c + d
        num += a - (a + b) * (a + c) / n
        var += (a + b) * (c + d) * (a + c) * (b + d) / (n * n * (n - 1))
    r = cmh(t, correction=False)
    assert r["statistic"] == pytest.approx(num ** 2 / var) == pytest.approx(7.21736, abs=1e-5)
    assert r["odds_ratio"] == pytest.approx((10 * 11 / 30 + 8 * 9 / 26) / (5 * 4 / 30 + 6 * 3 / 26))
    assert cmh(t)["statistic"] == pytest.approx((abs(num) - 0.5) ** 2 / var)


def test_pool_comparisons_groups_by_config_comparison_and_metric():
    rows = []
    for cfg, shift in (("x=0", 0), ("x=1", 4)):
        for seed, (a_only, b_only) in zip((1, 2, 3), ((3, 3), (2, 4), (4, 2))):
            rows.append({"config": cfg, "comparison": "pc", "a": "p", "b": "c", "metric": "pass_rate", "seed": seed,
                         "both": 10, "a_only": a_only, "b_only": b_only + shift, "neither": 5, "p_value": 0.5})
    out = pool_comparisons(pd.DataFrame(rows)).set_index("config")
    assert out.loc["x=0", "a_only"] == 9 and out.loc["x=0", "b_only"] == 9
    assert out.loc["x=0", "statistic"] == pytest.approx((abs(9 - 9) - 1) ** 2 / 18)  # the correction's floor
    assert out.loc["x=0", "p_value"] > 0.8 and out.loc["x=0", "mean_diff"] == pytest.approx(0.0)
    assert out.loc["x=1", "b_only"] == 21
    assert out.loc["x=1", "statistic"] == pytest.approx((abs(21 - 9) - 1) ** 2 / 30)
    assert out.loc["x=1", "seed_p"] == [0.5, 0.5, 0.5]


def test_grid_values_split_outside_brackets():
    g = parse_grid(["03_resolve.gate_scope=changes,all", "03_resolve.train_policies=[all],[curated, all]"])
    assert g == {"03_resolve.gate_scope": ["changes", "all"],
                 "03_resolve.train_policies": [["all"], ["curated", "all"]]}
    assert thread_share(2, 2) == 1 and thread_share(16, 3) == 5 and thread_share(1, 4) == 1


# --- real sweeps of a one-stage recipe ------------------------------------------------------------------------

_PARAMS = '''run_dir: str = ""  # run folder
seed: int = 7  # random seed
lift: float = 0.0  # chance that curated passes an item production failed
n_items: int = 60  # items per variant
sleep_s: float = 0.0  # seconds to wait before writing (to catch a point while it runs)
fail_seed: int = -1  # fail on purpose for this seed'''

_CODE = '''import time
import numpy as np
import pandas as pd
from flywheel_lib.stage import open_stage
st = open_stage(run_dir, "evaluate")
if seed == fail_seed:
    raise RuntimeError("failing on purpose")
time.sleep(sleep_s)
rng = np.random.default_rng(seed)
labels = np.where(np.arange(n_items) % 4 == 0, "missing_capability", "solvable")
base = rng.random(n_items) < 0.5
curated = base | (rng.random(n_items) < lift)
refused = labels != "solvable"
pred = pd.concat([pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "variant": v, "label": labels,
                                "passed": p, "refused": refused, "refusal_category": np.where(refused, labels, ""),
                                "valid": True, "executed": True, "n_selected": 1})
                  for v, p in (("production_only", base), ("curated", curated))], ignore_index=True)
st.write("predictions", pred)
st.metric("pass_rate_curated", float(curated.mean()), headline=True)
st.metric("pass_rate_production", float(base.mean()), headline=True)'''


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A one-stage recipe (``evaluate``) with a ``sweep:`` block: lift 0.0, 0.3 x seeds 1, 2."""
    d = tmp_path_factory.mktemp("sweep_recipe")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(_PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# evaluate: seeded predictions"), params,
                nbformat.v4.new_code_cell(_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (d / "notebooks").mkdir()
    nbformat.write(nb, str(d / "notebooks" / "evaluate.ipynb"))
    path = d / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "notebook_dir": str(d / "notebooks"), "stages": ["evaluate"], "params": {"seed": 7},
        "sweep": {"grid": {"evaluate.lift": [0.0, 0.3]}, "seeds": [1, 2]}}))
    return path


def _sweep(runs: Path) -> dict:
    (d,) = [p for p in (runs.parent / "sweeps").iterdir() if (p / "sweep.json").exists()]
    return json.loads((d / "sweep.json").read_text())


def _manifest(runs: Path, run_id: str) -> dict:
    return json.loads((runs / run_id / "manifest.json").read_text())


def test_sweep_in_parallel_processes_divides_cores_links_runs_and_pools_seeds(runs, recipe, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_MAX_THREADS", raising=False)  # the sweep divides the cores itself
    res = run_sweep(str(recipe), jobs=2, executor="process", render_html=False, progress_every=5)
    assert res.ok and len(res.points) == 4
    s = _sweep(runs)
    threads = max(1, available_cores() // 2)
    assert s["threads_per_point"] == threads and threads * 2 <= max(2, available_cores())
    for p in s["points"]:
        assert p["status"] == "succeeded" and p["exit_code"] == 0
        assert p["env"]["OMP_NUM_THREADS"] == p["env"]["FLYWHEEL_MAX_THREADS"] == str(threads)  # as the worker saw it
        assert p["env"]["FLYWHEEL_RUNS_DIR"] == str(runs.resolve()) and p["worker"]["pid"] != os.getpid()
        m = _manifest(runs, p["run_id"])
        assert m["status"] == "succeeded" and m["sweep"]["sweep_id"] == s["sweep_id"]
        assert m["params_passed"]["evaluate"] == {"seed": p["seed"], "lift": p["params"]["evaluate.lift"]}
        assert (runs / p["run_id"] / m["sweep"]["report"]).resolve() == (res.sweep_dir / "index.html").resolve()
        assert "Part of sweep" in (runs / p["run_id"] / "index.html").read_text()
    assert [(p["config"], p["seed"]) for p in s["points"]] == [
        ("evaluate.lift=0.0", 1), ("evaluate.lift=0.0", 2), ("evaluate.lift=0.3", 1), ("evaluate.lift=0.3", 2)]

    # the report's numbers, recomputed here from each run's predictions
    metrics = pd.read_csv(res.sweep_dir / "metrics.csv").set_index(["config", "metric"])
    pooled = pd.read_csv(res.sweep_dir / "comparisons.csv")
    for cfg in ("evaluate.lift=0.0", "evaluate.lift=0.3"):
        pts = [p for p in s["points"] if p["config"] == cfg]
        vals = [_manifest(runs, p["run_id"])["headline"]["pass_rate_curated"] for p in pts]
        assert metrics.loc[(cfg, "pass_rate_curated"), "mean"] == pytest.approx(np.mean(vals))
        assert metrics.loc[(cfg, "pass_rate_curated"), "hi"] == pytest.approx(t_interval(vals)["hi"])
        tables = pd.DataFrame([{"seed": p["seed"], **mcnemar_counts(item_outcomes(pd.read_parquet(
            runs / p["run_id"] / "artifacts" / "predictions.parquet")), "production_only", "curated", "pass_rate")}
            for p in pts])
        want = pooled_mcnemar(tables)
        got = pooled[(pooled.config == cfg) & (pooled.metric == "pass_rate")].iloc[0]
        assert got["a_only"] == want["a_only"] == 0 and got["p_value"] == pytest.approx(want["p_value"])
        assert got["mean_diff"] == pytest.approx(want["mean_diff"])
    lifted = pooled[(pooled.config == "evaluate.lift=0.3") & (pooled.metric == "pass_rate")].iloc[0]
    assert lifted["b_only"] > 0 and lifted["p_value"] < 0.05
    html = (res.sweep_dir / "index.html").read_text()
    assert "data:image/png;base64," in html and "pass_rate_curated" in html and "production_only vs curated" in html
    # the docs' sweep table (flywheel report --results SWEEP) carries the same pooled evidence
    from flywheel_lib.flywheel.results import extract_sweep, sweep_table

    ex = extract_sweep(res.sweep_dir)
    assert ex["sweep_id"] == s["sweep_id"] and ex["seeds"] == [1, 2]
    row = next(c for c in ex["comparisons"] if c["config"] == "evaluate.lift=0.3")
    assert row["p_value"] == pytest.approx(lifted["p_value"]) and row["mean_diff"] == pytest.approx(lifted["mean_diff"])
    assert row["rate_b"] > row["rate_a"] and len(row["seed_p"]) == 2
    table = sweep_table([ex]).splitlines()
    assert len(table) == 2 + 2 and all(s["sweep_id"] in line and "production_only vs curated" in line
                                       for line in table[2:])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flywheel_lib.cli", "sweep", *args]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_after_sigkill_reruns_only_the_unfinished_points(runs, recipe):
    cmd = _cli(str(recipe), "--grid", "evaluate.lift=0.2", "--seeds", "1,2,3", "--set", "evaluate.sleep_s=3",
               "--jobs", "1", "--no-html")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            sweeps = runs.parent / "sweeps"
            done, mid_run = [], []
            if sweeps.exists():
                try:
                    points = _sweep(runs)["points"]
                except (ValueError, FileNotFoundError):
                    points = []
                done = [p for p in points if p["status"] == "succeeded"]
                mid_run = [p for p in points if p["status"] == "running" and (runs / p["run_id"] / "manifest.json").exists()]
            if done and mid_run:  # one point finished, the next one's run has begun
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _sweep(runs)
    finished = {p["point_id"]: p["run_id"] for p in killed["points"] if p["status"] == "succeeded"}
    left = [p["point_id"] for p in killed["points"] if p["status"] != "succeeded"]
    assert finished and left and killed["status"] == "running"  # the record of a sweep whose process died
    hashes = {pid: _sha(runs / rid / "manifest.json") for pid, rid in finished.items()}

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(finished)} of 3 points finished before" in again.stderr
    s = _sweep(runs)
    assert s["status"] == "succeeded" and all(p["status"] == "succeeded" for p in s["points"])
    assert s["sessions"][-1]["points"] == left  # only the unfinished points ran again
    for p in s["points"]:
        if p["point_id"] in finished:
            assert p["run_id"] == finished[p["point_id"]] and not p["attempts"]
            assert _sha(runs / p["run_id"] / "manifest.json") == hashes[p["point_id"]]
    interrupted = [a for p in s["points"] for a in p["attempts"]]
    assert len(interrupted) == 1  # the point that ran when the sweep was killed: its worker stopped with it
    assert interrupted[0]["status"] == _manifest(runs, interrupted[0]["run_id"])["status"] == "interrupted"
    run_dirs = [d for d in runs.iterdir() if (d / "manifest.json").exists()]
    assert len(run_dirs) == 3 + 1


ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture
def local_ray():
    for var, val in {"RAY_worker_register_timeout_seconds": "600", "RAY_agent_register_timeout_ms": "600000",
                     "RAY_raylet_start_wait_time_s": "600"}.items():
        os.environ.setdefault(var, val)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_tasks_give_the_local_executors_metrics_and_a_failed_point_does_not_stop_the_rest(runs, recipe, local_ray):
    local = run_sweep(str(recipe), grid={"evaluate.lift": [0.3]}, seeds=[1, 2], executor="local",
                      render_html=False, progress_every=5)
    far = run_sweep(str(recipe), grid={"evaluate.lift": [0.3]}, seeds=[1, 2, 3], sets=["evaluate.fail_seed=3"],
                    executor="ray", jobs=2, render_html=False, progress_every=5)
    assert local.ok and far.status == "failed"
    by_seed = {p["seed"]: p for p in far.points}
    assert by_seed[3]["status"] == "failed" and "failing on purpose" in by_seed[3]["failure"]
    nb = runs / by_seed[3]["notebook"]
    assert nb.exists() and nb.name == "evaluate.ipynb"  # the failed notebook is kept in its run
    for p in local.points:
        q = by_seed[p["seed"]]
        assert q["status"] == "succeeded" and q["run_id"] != p["run_id"]
        assert q["env"]["FLYWHEEL_RUNS_DIR"] == str(runs.resolve()) and q["env"]["OMP_NUM_THREADS"] == "1"
        a, b = _manifest(runs, p["run_id"]), _manifest(runs, q["run_id"])
        assert a["headline"] == b["headline"] and a["metrics"] == b["metrics"]
        assert b["sweep"]["sweep_id"] == far.sweep_id
