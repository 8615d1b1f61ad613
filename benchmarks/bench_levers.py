"""The levers' CPU cost per cycle: retrieval per request, DPO seconds per step, arena judging and rating.

    PYTHONPATH=$PWD python benchmarks/bench_levers.py [--steps 8] [--n 64]

Prints one line per figure. Run it with nothing else busy (the README's figures assume an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()

    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain
    from flywheel_lib.levers import BradleyTerry, ExampleRetriever, OfflinePairwiseJudge, append_examples, judge_battles
    from flywheel_lib.levers.dpo import DPOConfig, train_dpo

    tax, dom = load_taxonomy("params/taxonomy/segments.yaml"), get_domain("segments")
    rows = pd.DataFrame([dict(item_id=f"s{i}", text=f"customers who spent over {i} dollars in the last {i % 12} months",
                              label="solvable", output=f"amount_spent > {i}", reason_key="amount_spent")
                         for i in range(2000)])
    store = append_examples(None, rows, cycle=1, taxonomy=tax)
    t0 = time.perf_counter()
    ret = ExampleRetriever(store, k=4)
    q = rows.sample(a.n, random_state=1).assign(item_id=lambda d: "q" + d["item_id"])
    ret.neighbours(q)
    print(f"retrieval: store of {len(store)} embedded + {a.n} queries: {time.perf_counter() - t0:.1f} s "
          f"(embeddings cached afterwards)")

    pairs = pd.DataFrame([dict(prompt=f"customers by {w}", chosen=f"REFUSE missing_capability: no {w}.",
                               rejected=f"amount_spent > {10 ** 9 + i}") for i, w in enumerate(
                          ["shoe size", "zodiac sign", "eye colour", "employer", "height", "pet name"] * 6)])
    res = train_dpo(pairs, DPOConfig(max_steps=a.steps, batch_size=4, progress=False), "/tmp/bench_dpo")
    print(f"dpo: {res.metrics['seconds_per_step']:.2f} s a step (batch 4 pairs, {res.metrics['threads']} threads), "
          f"loss {res.metrics['loss_before']:.3f} -> {res.metrics['loss_after']:.3f}")

    req = pd.DataFrame({"item_id": range(a.n), "text": ["customers by shoe size"] * a.n,
                        "label": ["missing_capability"] * a.n})
    answers = {m: [ans] * a.n for m, ans in zip("abcdef", ["REFUSE missing_capability: x", "amount_spent > 5",
                                                          "REFUSE wrong_skill: x", "amount_spent > 1000000000",
                                                          "REFUSE missing_capability: y", "bad query >>"])}
    t0 = time.perf_counter()
    battles = judge_battles(req, answers, [OfflinePairwiseJudge(domain=dom, taxonomy=tax)])
    t1 = time.perf_counter()
    BradleyTerry(n_boot=200).fit(battles)
    print(f"arena: {len(battles)} battles judged both orders in {t1 - t0:.1f} s; Bradley-Terry + 200 bootstraps "
          f"{time.perf_counter() - t1:.1f} s")


if __name__ == "__main__":
    main()
