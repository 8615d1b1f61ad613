"""Benchmark of batch mode (a script, not a timed test): prints the figures.

N requests (default 100,000) through ``mode: batch`` against the local batch server (its own process, so its work
is not the client's): prompts rendered, split at the provider's limits (OpenAI 50,000 requests or 200 MB a file),
uploaded, polled, results downloaded, parsed and written to the verdict cache. Reports wall time per phase, the
client's CPU time per verdict, bytes uploaded, and the cost at the batch rate vs the online rate; then a fully
cached re-run (a batch verdict is a cache hit).

    .venv/bin/python benchmarks/bench_batch.py [--items 100000] [--backend openai|anthropic]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_judges import items, panel_for

from flywheel_lib.taxonomy import load_taxonomy


class BatchServerProcess:
    def __init__(self, polls: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "flywheel_lib.testing.batch_server", "--polls", str(polls)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"batch server did not start: {line!r}")
        self.port = int(line.split()[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--backend", choices=["openai", "anthropic"], default="openai")
    ap.add_argument("--polls", type=int, default=2)
    a = ap.parse_args()
    os.environ["BENCH_KEY"] = "bench"
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    with BatchServerProcess(a.polls) as srv, tempfile.TemporaryDirectory() as tmp:
        base = f"http://127.0.0.1:{srv.port}" + ("/v1" if a.backend == "openai" else "")
        judge = {"name": a.backend, "backend": "openai-compatible" if a.backend == "openai" else "anthropic",
                 "model": "m", "base_url": base, "api_key_env": "BENCH_KEY", "mode": "batch",
                 "options": {"max_tokens": 100}, "fewshot": {"strategy": "stratified", "per_category": 1},
                 "prices": {"input_per_mtok": 0.40, "output_per_mtok": 1.60},
                 "batch": {"poll_s": 0.5, "poll_growth": 1.5, "poll_max_s": 5}}
        pan = panel_for(Path(tmp), judge, tax)
        df = items(a.items, "b")
        t0, c0 = time.perf_counter(), time.process_time()
        reqs = pan[a.backend].requests(df[["item_id", "text", "context"]].to_dict("records"))
        render_s, render_cpu = time.perf_counter() - t0, time.process_time() - c0
        del reqs
        t0, c0 = time.perf_counter(), time.process_time()
        v = pan.judge(df, cache_dir=Path(tmp) / "cache", progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = pan.stats_.iloc[0]
        online = float(((v["tokens_in"] * 0.40 + v["tokens_out"] * 1.60) / 1e6).sum())
        t0 = time.perf_counter()
        v2 = pan.judge(df, cache_dir=Path(tmp) / "cache", progress=False)
        cached_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"backend {a.backend}: {a.items:,} requests in {int(getattr(st, 'batches', 0) or 0) or '?'} batches")
    print(f"  verdicts {int(v['category'].notna().sum()):,}, abstentions {int(v['category'].isna().sum()):,}")
    print(f"  prompt rendering alone: {render_s:.1f} s wall, {render_cpu / a.items * 1e6:.0f} us CPU per request")
    print(f"  submit + poll + collect + cache: {wall:.1f} s wall, client CPU {cpu:.1f} s = "
          f"{cpu / a.items * 1e6:.0f} us per verdict (rendering included)")
    print(f"  spend at the batch rate ${st['cost_usd']:.4f} vs ${online:.4f} online ({st['cost_usd'] / online:.2f}x)")
    print(f"  cached re-run: {cached_s:.1f} s, all cached: {bool(v2['cached'].all())}; client peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
