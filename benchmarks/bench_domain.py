"""Benchmark: the bundled domain's data generator, customer store and segment-query executor.

These figures used to be upper-limit asserts in the test suite; a timing belongs here, where it is printed and
read, not in a test that fails on a busy machine.

    python benchmarks/bench_domain.py               # 20,000 production rows, a 3,000-customer store, 300 queries
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-production", type=int, default=20000)
    ap.add_argument("--n-customers", type=int, default=3000)
    ap.add_argument("--n-queries", type=int, default=300)
    args = ap.parse_args()

    from flywheel_lib.domains import get_domain
    from flywheel_lib.domains.segments.catalog import load_catalog
    from flywheel_lib.domains.segments.generator import generate
    from flywheel_lib.domains.segments.store import build_store

    dom = get_domain("segments", n_customers=args.n_customers)
    t = time.perf_counter()
    data = generate(dom.catalog, seed=7, n_production=args.n_production)
    print(f"generator: {len(data['production']):,} production rows + seed + eval in {time.perf_counter() - t:.2f} s")

    t = time.perf_counter()
    build_store(seed=3, n_customers=args.n_customers, catalog=load_catalog())
    print(f"store: {args.n_customers:,} customers with orders in {time.perf_counter() - t:.2f} s")

    qs = [f"amount_spent > {i} AND (customer_tags CONTAINS 'vip' OR last_order_date > -{i % 300 + 1}d) "
          f"AND products_purchased(tag: 'shoes', date: -{i % 90 + 1}d) = false" for i in range(args.n_queries)]
    t = time.perf_counter()
    for q in qs:
        dom.execute(q)
    new = (time.perf_counter() - t) / len(qs)
    t = time.perf_counter()
    for q in qs:
        dom.execute(q)
    cached = (time.perf_counter() - t) / len(qs)
    print(f"executor: {new * 1e3:.2f} ms a new query, {cached * 1e6:.1f} µs a cached one ({len(qs)} queries)")


if __name__ == "__main__":
    main()
