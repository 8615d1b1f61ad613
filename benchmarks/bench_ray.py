"""Benchmark of ``executor: ray`` vs ``local`` on one node (a script, not a timed test): prints the figures.

N generated production items (default 100,000) judged by the default offline panel (knn, linear, rules) with a
cold cache, once in this process and once over Ray Data in Parquet blocks on a local Ray instance; the ratio is
Ray's overhead (or gain) on one machine. Verdict tables are compared (they must be equal).

    .venv/bin/python benchmarks/bench_ray.py [--items 100000] [--cpus 2] [--block-rows 8192]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flywheel_lib import executors
from flywheel_lib.judges import load_panel
from flywheel_lib.taxonomy import load_taxonomy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--block-rows", type=int, default=8192)
    a = ap.parse_args()
    from flywheel_lib.domains import get_domain

    dom = get_domain("segments")
    data = dom.generate(seed=7, n_production=a.items)
    prod = data["production"].reset_index(drop=True)
    seed = data["seed"].reset_index(drop=True)
    if "reason_key" not in seed.columns:
        seed["reason_key"] = None
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    pan = load_panel("params/judges/offline.yaml", taxonomy=tax, domain=dom).fit(seed)
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        executors.use_executor("local")
        t0 = time.perf_counter()
        local = pan.judge(prod, cache_dir=Path(tmp) / "local", progress=False)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        executors.use_executor("ray", block_rows=a.block_rows)
        t0 = time.perf_counter()
        far = pan.judge(prod, cache_dir=Path(tmp) / "ray", progress=False)
        t_ray = time.perf_counter() - t0
        ray.shutdown()
    cols = [c for c in local.columns if c != "latency_s"]
    same = local[cols].equals(far[cols])
    print(f"{len(prod):,} production items, offline panel, cold cache, {a.cpus} CPUs")
    print(f"  local: {t_local:.1f} s; ray: {t_ray:.1f} s (+ {t_init:.1f} s ray.init); ratio ray/local {t_ray / t_local:.2f}")
    print(f"  verdict tables equal: {same}")


if __name__ == "__main__":
    main()
