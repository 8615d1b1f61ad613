"""Scale benchmark: N generated production items (default 1,000,000) through ``00_data`` .. ``03_resolve`` with the
default offline panel, as one real ``flywheel run`` (a script, not a timed test): prints wall time and peak memory
per stage.

Each stage runs in its own papermill kernel, so a sampler polls the run's process tree (psutil, every half second)
and keeps each kernel's peak resident memory, and the peak of the whole tree (runner + kernel). The recipe is the
demo's cycle-1 recipe cut at ``03_resolve``, with ``n_production`` set and the input validators' topic and anomaly
vectors from the static encoder (``validation.encoder: static``: the transformer embeds ~100-300 texts a second on two
cores, hours for a million requests).

    .venv/bin/python benchmarks/bench_scale.py                     # 1,000,000 items
    .venv/bin/python benchmarks/bench_scale.py --items 100000 --set 03_resolve.review.budget=300

The run folder stays under ``outputs/runs/`` (its manifest holds every stage's metrics); ``--keep 0`` removes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["00_data", "01_calibrate", "02_judge", "03_resolve"]


def _recipe(items: int, out: Path) -> Path:
    demo = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    sp = {k: v for k, v in demo["stage_params"].items() if k in STAGES}
    sp["00_data"] = {**sp["00_data"], "n_production": items, "validation": {"encoder": "static"}}
    sp.setdefault("03_resolve", {}).pop("train_policies", None)
    recipe = {"name": f"scale{items // 1000}k", "description": f"bench_scale.py: {items:,} production items, 00..03",
              "stages": STAGES, "params": demo["params"], "stage_params": sp}
    path = out / "scale.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


class Sampler(threading.Thread):
    """Peak RSS per kernel process (in start order) and of the whole process tree."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.root, self.every, self.stop = psutil.Process(pid), every, threading.Event()
        self.kernels: dict[int, float] = {}  # pid -> peak GB, insertion order = start order
        self.tree_peak = 0.0

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            total = 0.0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss / 2**30
                    total += rss
                    if p.pid != self.root.pid and "ipykernel" in " ".join(p.cmdline()):
                        self.kernels[p.pid] = max(self.kernels.get(p.pid, 0.0), rss)
                except psutil.Error:
                    continue
            self.tree_peak = max(self.tree_peak, total)
            self.stop.wait(self.every)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--set", action="append", default=[], help="extra --set overrides for flywheel run")
    ap.add_argument("--keep", type=int, default=1, help="keep the run folder (1) or remove it (0)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = _recipe(a.items, Path(tmp))
        cmd = [sys.executable, "-m", "flywheel_lib.cli", "run", str(recipe), "--no-html", "--no-progress"]
        for s in a.set:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = Sampler(proc.pid)
        sampler.start()
        run_dir = None
        for line in proc.stdout:
            sys.stdout.write(line)
            if "folder:" in line and run_dir is None:
                run_dir = Path(line.split("folder:", 1)[1].strip())
        rc = proc.wait()
        sampler.stop.set()
        sampler.join()
        wall = time.perf_counter() - t0
    if rc != 0 or run_dir is None:
        sys.exit(f"flywheel run failed (exit {rc}); run folder {run_dir}")
    m = json.loads((run_dir / "manifest.json").read_text())
    peaks = list(sampler.kernels.values())
    print(f"\n{a.items:,} production items, stages {', '.join(STAGES)}; run {m['run_id']} ({run_dir})")
    print(f"{'stage':14s} {'wall':>9s} {'kernel peak RSS':>16s}")
    for i, st in enumerate(m["stages"]):
        peak = f"{peaks[i]:.2f} GB" if i < len(peaks) else "?"
        print(f"{st['name']:14s} {st['duration_s'] / 60:7.1f} min {peak:>16s}")
    print(f"{'total':14s} {wall / 60:7.1f} min {'tree peak ' + format(sampler.tree_peak, '.2f') + ' GB':>16s}")
    met = m["metrics"]
    for k in ("n_production", "validator_any_flagged", "verdicts", "consensus_coverage",
              "consensus_precision_vs_truth", "conflicts_found", "train_curated"):
        for stage, vals in met.items():
            if k in vals:
                print(f"  {stage}.{k} = {vals[k]}")
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
