"""Lever 1 at the decision: how much the example store moves a decision head on the drift slice, and what it costs
on the original eval set, per ``min_score`` (the cosine a stored neighbour needs).

A head (logistic regression on MiniLM embeddings, ``--encoder``) is fitted on a generated seed; the store holds the
truth-labelled traffic of cycles ``1..--upto`` (what a cycle's accepted labels add, at their best); the drift slice
of the same cycles and the generator's eval set are decided by the head alone and with the store. Prints decision
accuracy (label == truth) per slice; nothing here reads the demo's eval answers.

    python benchmarks/bench_store_head.py --seed 7 --upto 1 --scores 0.75,0.8,0.85,0.9
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--upto", type=int, default=1)
    ap.add_argument("--n-traffic", type=int, default=1500)
    ap.add_argument("--scores", default="0.75,0.8,0.85,0.9")
    ap.add_argument("--shares", default="0.75")
    ap.add_argument("--encoder", default="minilm")
    a = ap.parse_args()

    import pandas as pd

    from flywheel_lib.domains.segments import SegmentsDomain
    from flywheel_lib.levers import ExampleRetriever
    from flywheel_lib.levers.store import append_examples
    from flywheel_lib.levers.store_head import StoreConsultedHead
    from flywheel_lib.training.head import DecisionHead

    dom = SegmentsDomain(n_customers=300)
    data = dom.generate(seed=a.seed, n_production=2000, n_seed_solvable=600, n_seed_refusal=600, n_eval=400,
                        n_conflicts=50)
    seed = data["seed"]
    head = DecisionHead(encoder=a.encoder).fit(seed["text"].tolist(), seed["label"].tolist())
    traffic = pd.concat([dom.traffic_requests(seed=a.seed, cycle=c, n=a.n_traffic) for c in range(1, a.upto + 1)])
    rows = traffic.assign(label=traffic["true_label"], output=traffic["gold_output"])
    store = append_examples(None, rows[["item_id", "text", "label", "output", "reason_key"]], cycle=1)
    drift = dom.drift_slice(seed=a.seed, upto=a.upto, exclude=traffic["text"])
    slices = {"drift": drift, "original": data["eval"]}
    base = {k: head.decide(v["text"].tolist())[0] for k, v in slices.items()}
    truth = {k: v["true_label"].tolist() for k, v in slices.items()}

    def acc(pred, k):
        return sum(p == t for p, t in zip(pred, truth[k])) / len(truth[k])

    print(f"seed {a.seed}, cycles 1..{a.upto}: store {len(store)} rows, drift slice {len(drift)}, "
          f"original eval {len(data['eval'])}")
    print(f"{'min_score':>9} {'min_share':>9} {'drift':>7} {'original':>8} {'decided':>8}")
    print(f"{'head':>9} {'':>9} {acc(base['drift'], 'drift'):7.3f} {acc(base['original'], 'original'):8.3f}")
    ret = ExampleRetriever(store, k=5)
    for s in [float(x) for x in a.scores.split(",")]:
        for sh in [float(x) for x in a.shares.split(",")]:
            sh_head = StoreConsultedHead(head, ret, min_score=s, min_share=sh)
            res = {k: sh_head.decide(v["text"].tolist())[0] for k, v in slices.items()}
            dec = sum(x is not None for x in sh_head.consulted_) / max(len(sh_head.consulted_), 1)
            print(f"{s:9.2f} {sh:9.2f} {acc(res['drift'], 'drift'):7.3f} {acc(res['original'], 'original'):8.3f}"
                  f" {dec:8.3f}")


if __name__ == "__main__":
    main()
