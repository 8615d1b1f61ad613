"""Benchmark of the judge runner (a script, not a timed test): prints the figures.

1. Throughput against the local fault server with a fixed latency per call (default 100 ms, no faults; the server
   runs in its own process), for each API backend (openai-compatible and anthropic, both through
   :mod:`flywheel_lib.providers`): verdicts per second at concurrency 8, 32 and 128, and the ratio to the ideal
   concurrency / latency. Goal: at least 0.9 at 32.
2. A fully cached re-run of 20,000 verdicts (fake backend, same runner and cache). Goal: over 20,000 verdicts/s.

    .venv/bin/python benchmarks/bench_judges.py [--latency 0.1] [--items 1500] [--cached 20000] [--backends openai-compatible]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel_lib.judges import load_panel
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_seed


class ServerProcess:
    """The fault server in its own process, so its work does not share the client's interpreter lock."""

    def __init__(self, latency: float):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "flywheel_lib.testing.fault_server", "--latency",
                                      str(latency)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fault server did not start: {line!r}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"
        self.url = f"{self.base}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def items(n: int, prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"{prefix}{i}" for i in range(n)],
                         "text": [f"{prefix} customers who placed {i} orders" for i in range(n)], "context": ""})


def panel_for(tmp: Path, judge: dict, tax):
    f = tmp / f"{judge['name']}.yaml"
    f.write_text(yaml.safe_dump({"name": "bench", "judges": [judge]}))
    return load_panel(f, taxonomy=tax).fit(toy_seed())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--items", type=int, default=0, help="items per concurrency level (default: 12 s of ideal work)")
    ap.add_argument("--cached", type=int, default=20000)
    ap.add_argument("--levels", default="8,32,128")
    ap.add_argument("--backends", default="openai-compatible,anthropic")
    a = ap.parse_args()
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    os.environ.setdefault("BENCH_KEY", "bench")
    tmp = Path(tempfile.mkdtemp(prefix="bench_judges_"))
    print(f"judge runner benchmark (latency {a.latency * 1000:.0f} ms per call, API judges -> 127.0.0.1)")
    print(f"{'backend':>17} {'concurrency':>12} {'items':>7} {'seconds':>8} {'verdicts/s':>11} {'ideal/s':>8} {'ratio':>6} "
          f"{'client CPU ms/verdict':>22}")
    with ServerProcess(a.latency) as srv:
        backends = a.backends.split(",")
        url = {b: srv.base if b == "anthropic" else srv.url for b in backends}
        name = {b: b.split("-")[0] for b in backends}
        for b in backends:  # warm-up (not timed): imports the client, opens connections
            warm = {"name": f"warm_{name[b]}", "backend": b, "model": "bench", "base_url": url[b],
                    "api_key_env": "BENCH_KEY", "fewshot": {"strategy": "stratified", "per_category": 1}}
            panel_for(tmp, warm, tax).judge(items(20, f"warm_{name[b]}_"), cache_dir=None, progress=False)
        for b in backends:
            for c in [int(x) for x in a.levels.split(",")]:
                n = a.items or max(200, int(12 * c / a.latency))
                judge = {"name": f"{name[b]}{c}", "backend": b, "model": "bench", "base_url": url[b],
                         "api_key_env": "BENCH_KEY", "fewshot": {"strategy": "stratified", "per_category": 1},
                         "options": {"timeout_s": 30}, "limits": {"concurrency": c, "max_retries": 2}}
                panel = panel_for(tmp, judge, tax)
                df = items(n, f"{name[b]}{c}_")
                t0, c0 = time.perf_counter(), time.process_time()
                v = panel.judge(df, cache_dir=tmp / f"cache_{name[b]}{c}", progress=False)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                assert len(v) == n and v.category.notna().all()
                rate, ideal = n / dt, c / a.latency
                print(f"{b:>17} {c:>12} {n:>7} {dt:>8.2f} {rate:>11.1f} {ideal:>8.1f} {rate / ideal:>6.2f} "
                      f"{1000 * cpu / n:>22.2f}")
    n = a.cached
    fake = {"name": "fake", "backend": "fake", "fewshot": {"strategy": "stratified", "per_category": 1}}
    panel = panel_for(tmp, fake, tax)
    df = items(n, "cached_")
    t0 = time.perf_counter()
    panel.judge(df, cache_dir=tmp / "cache_fake", progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    v = panel.judge(df, cache_dir=tmp / "cache_fake", progress=False)
    dt = time.perf_counter() - t0
    assert v.cached.all()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes share them)")
    print(f"cached re-run: {n} verdicts in {dt:.2f} s = {n / dt:,.0f} verdicts/s "
          f"(first run with the fake backend: {first:.2f} s)")


if __name__ == "__main__":
    main()
