"""Which rows the decision head learns from, measured on a finished demo run's traffic (and, for reference, its eval).

    PYTHONPATH=$PWD python benchmarks/bench_head_rows.py outputs/runs/<a demo cycle>
    PYTHONPATH=$PWD python benchmarks/bench_head_rows.py RUN --variants curated,naive_merge --threshold 0.5

For each variant of the run's ``train_sets``, fits the head (``hybrid``, ``C`` 8) on each candidate row set and
prints right-category refusal recall / false-refusal rate of the head alone at the threshold:

- ``train``: the adapter's own rows (``max_steps x batch_size`` drawn by ``balanced_rows``; ``head.rows: train``);
- ``every row``: the whole deduplicated training split at the corpus's own refusal share;
- ``every row, weighted``: the same rows with sample weights that make refusals 35% of the weight;
- ``all @ s``: every refusal row with solvable rows drawn to share ``s`` (``head.rows: all`` uses the adapter's 0.35).

The choice is read on the run's ``traffic`` (the requests its deployed model answered, with the simulator's truth:
never an eval item); the eval column is printed beside it only to show how far each rule carries to unseen phrasing
families. The README's table under "The head learns from every refusal row" comes from this script on run
``20261201-140647_demo_1faff3``. Not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel_lib import load_taxonomy
from flywheel_lib.training import build_dataset
from flywheel_lib.training.datasets import head_rows
from flywheel_lib.training.head import DecisionHead


def _rates(head: DecisionHead, texts, gold: np.ndarray) -> str:
    """Right-category refusal recall / false-refusal rate of the head's own decisions."""
    pred = np.asarray(head.predict(list(texts)), dtype=object)
    solv = gold == head.solvable_id_
    return f"{(pred == gold)[~solv].mean():.3f} / {(pred != head.solvable_id_)[solv].mean():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="a finished demo cycle's run folder (with traffic)")
    ap.add_argument("--variants", default="curated,naive_merge")
    ap.add_argument("--taxonomy", default="params/taxonomy/segments.yaml")
    ap.add_argument("--n-train", type=int, default=960, help="the adapter's rows: max_steps x batch_size")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--shares", default="0.25,0.35,0.5")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    art = Path(a.run) / "artifacts"
    need = ["train_sets", "items", "truth", "traffic", "traffic_truth"]
    missing = [n for n in need if not (art / f"{n}.parquet").exists()]
    if missing:
        raise SystemExit(f"{art}: no {', '.join(n + '.parquet' for n in missing)} (a demo cycle that ran 06 has them)")
    tax = load_taxonomy(a.taxonomy)
    ts = pd.read_parquet(art / "train_sets.parquet")
    truth = pd.read_parquet(art / "truth.parquet").set_index("item_id")["true_label"]
    items = pd.read_parquet(art / "items.parquet")
    ev = items[items["source"] == "eval"]
    tr = pd.read_parquet(art / "traffic.parquet")
    tr_truth = pd.read_parquet(art / "traffic_truth.parquet").set_index("item_id")["true_label"]
    sets = {"traffic": (tr["text"], tr_truth.loc[tr["item_id"]].to_numpy()),
            "eval": (ev["text"], truth.loc[ev["item_id"]].to_numpy())}
    print(f"run {Path(a.run).name}: recall / false refusals of the head alone at threshold {a.threshold}; "
          f"{len(tr)} traffic requests, {len(ev)} eval items")
    for v in a.variants.split(","):
        ds = build_dataset(ts, variant=v, taxonomy=tax, seed=a.seed, max_refusal_share=0.35, n_train=a.n_train)
        pool = ds.train_pool
        rules = {"train": ds.train, "every row": pool}
        rules.update({f"all @ {s}": head_rows(pool, refusal_share=float(s), solvable_id=tax.solvable_id, seed=a.seed)
                      for s in a.shares.split(",")})
        print(f"{v}: {len(pool)} training-split rows, {int((pool['label'] != tax.solvable_id).sum())} refusals")
        ref = (pool["label"] != tax.solvable_id).to_numpy()
        weights = np.where(ref, 0.35 / ref.mean(), 0.65 / (~ref).mean())  # refusals 35% of the total weight
        for name, rows, w in [*((n, r, None) for n, r in rules.items()), ("every row, weighted", pool, weights)]:
            h = DecisionHead(C=8.0, refusal_threshold=a.threshold, encoder="hybrid")
            h.fit(rows["text"], rows["label"], solvable_id=tax.solvable_id, sample_weight=w)
            cells = "  ".join(f"{k} {_rates(h, t, g)}" for k, (t, g) in sets.items())
            print(f"  {name:22s} {len(rows):6d} rows  {cells}")


if __name__ == "__main__":
    main()
