"""Benchmark of ``flywheel sweep --jobs N`` against the same runs one after another (a script, not a timed test).

The smoke recipe's first stages (default 00_data..03_resolve) for five seeds: once as five ``flywheel run``
processes in a row (each free to use every core), once as ``flywheel sweep --seeds ... --jobs 2`` (two points at a
time, the cores divided between them). Each side gets its own fresh runs folder and verdict cache, so neither
reads what the other judged. Prints both wall times, the ratio (sweep / sequential), the machine's load, and
whether the two sides' headline metrics agree seed by seed.

``--seq-threads N`` caps the sequential runs' threads too (OMP_NUM_THREADS = FLYWHEEL_MAX_THREADS = N), to tell
the gain of running points side by side from the gain of capping threads on a busy machine; ``--only sequential``
times that side alone.

    .venv/bin/python benchmarks/bench_sweep.py [--seeds 7,11,13,17,19] [--jobs 2] [--seq-threads N]
        [--stages 00_data,01_calibrate,02_judge,03_resolve] [--only sequential|sweep] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env(runs: Path, threads: int | None = None) -> dict[str, str]:
    env = {**os.environ, "FLYWHEEL_RUNS_DIR": str(runs), "FLYWHEEL_ROOT": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for k in ("OMP_NUM_THREADS", "FLYWHEEL_MAX_THREADS"):  # each side divides (or not) the cores itself
        env.pop(k, None)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), FLYWHEEL_MAX_THREADS=str(threads))
    return env


def _headlines(runs: Path) -> dict[int, dict]:
    out = {}
    for m in runs.glob("*/manifest.json"):
        d = json.loads(m.read_text())
        seed = d["params_passed"]["00_data"].get("seed")
        out[seed] = d.get("headline", {})
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="params/smoke.yaml")
    ap.add_argument("--seeds", default="7,11,13,17,19")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--stages", default="00_data,01_calibrate,02_judge,03_resolve")
    ap.add_argument("--seq-threads", type=int, help="cap the sequential runs' threads too (default: no cap)")
    ap.add_argument("--only", choices=["sequential", "sweep"], help="time one side only")
    ap.add_argument("--keep", help="keep both runs folders under this folder")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    base.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "flywheel_lib.cli"]
    print(f"{a.recipe} stages {a.stages}, seeds {seeds}; {os.cpu_count()} cores; load before: {_load()}", flush=True)

    t_seq = t_par = None
    seq_runs = base / "sequential" / "runs"
    if a.only != "sweep":
        t0 = time.perf_counter()
        for s in seeds:
            r = subprocess.run([*cli, "run", a.recipe, "--stages", a.stages, "--set", f"seed={s}",
                                "--set", f"cache_dir={base / 'sequential' / 'cache'}", "--no-progress"],
                               env=_env(seq_runs, a.seq_threads), cwd=ROOT, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"sequential run for seed {s} failed:\n{r.stderr[-3000:]}")
        t_seq = time.perf_counter() - t0
        print(f"sequential ({f'{a.seq_threads} thread(s)' if a.seq_threads else 'threads uncapped'}): "
              f"{len(seeds)} runs in {t_seq:.0f} s ({t_seq / len(seeds):.0f} s a run); load: {_load()}", flush=True)

    par_runs = base / "sweep" / "runs"
    if a.only != "sequential":
        t0 = time.perf_counter()
        r = subprocess.run([*cli, "sweep", a.recipe, "--stages", a.stages, "--seeds", a.seeds, "--jobs", str(a.jobs),
                            "--set", f"cache_dir={base / 'sweep' / 'cache'}", "--fresh"],
                           env=_env(par_runs), cwd=ROOT, capture_output=True, text=True)
        t_par = time.perf_counter() - t0
        if r.returncode:
            sys.exit(f"sweep failed:\n{r.stderr[-3000:]}")
        sweep = json.loads(next((base / "sweep" / "sweeps").glob("*/sweep.json")).read_text())
        print(f"sweep --jobs {a.jobs}: {len(seeds)} points in {t_par:.0f} s "
              f"({sweep['threads_per_point']} thread(s) a point); load: {_load()}", flush=True)
    if t_seq and t_par:
        print(f"ratio sweep / sequential: {t_par / t_seq:.2f} (goal <= 0.6)")
        seq, par = _headlines(seq_runs), _headlines(par_runs)
        same = [s for s in seeds if seq.get(s) == par.get(s)]
        print(f"headline metrics equal for {len(same)}/{len(seeds)} seeds"
              + ("" if len(same) == len(seeds) else f" (differ: {[s for s in seeds if s not in same]})"))
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
