"""Input validators on simulated traffic: precision / recall against the planted truth, and time per request.

    PYTHONPATH=$PWD python benchmarks/bench_monitoring.py --n 2000 --cycles 1,2

History for the anomaly validator: the generator's production logs (as a first cycle's history would be).
"""

from __future__ import annotations

import argparse
import time

from flywheel_lib.domains import get_domain
from flywheel_lib.domains.segments.generator import generate
from flywheel_lib.domains.segments.traffic import traffic_requests
from flywheel_lib.monitoring import run_validators, score_validators


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--cycles", default="1,2")
    ap.add_argument("--methods", default="auto,stopwords")
    a = ap.parse_args()
    dom = get_domain("segments")
    g = generate(dom.catalog, seed=7, n_production=1000, n_seed_solvable=300, n_seed_refusal=300, n_eval=40,
                 n_conflicts=20)
    for cycle in map(int, a.cycles.split(",")):
        req = traffic_requests(dom.catalog, seed=7, cycle=cycle, n=a.n)  # the default drift schedule
        print(f"cycle {cycle}: {a.n} requests, planted {req['planted'].value_counts().to_dict()}")
        for method in a.methods.split(","):
            t = time.perf_counter()
            out, info = run_validators(req, reference=g["seed"]["text"], history=g["production"]["text"],
                                       language_method=method)
            dt = time.perf_counter() - t
            print(f"  language={method}: {dt:.1f} s ({1000 * dt / a.n:.1f} ms/request), {info}")
            print(score_validators(out, req).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
