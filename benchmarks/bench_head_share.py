"""Can a cycle choose its head's refusal share from its own training split? Two rules, read against its traffic.

    PYTHONPATH=$PWD python benchmarks/bench_head_share.py RUN [RUN ...] [--variant curated]

For each finished demo cycle (one with ``traffic`` from 06) this rebuilds the variant's training split as
04_finetune does and, for each refusal share of ``--shares``, prints the false-refusal rate / right-category
refusal recall of the ``hybrid`` head (threshold 0.5) three ways:

- **out of fold**: fitted on that share's rows (``head.rows: all``) with whole phrasing clusters held out (k-means
  clusters of the sentence embeddings of the whole split, GroupKFold), scored on the held-out rows;
- **newest rows**: fitted on that share's rows of everything but the newest traffic's labelled rows (item ids
  ``c<k>-traffic-``, the latest k), scored on those rows with the labels the loop gave them;
- **traffic**: fitted on that share's rows of the whole split, scored on the requests the cycle's deployed model
  answered afterwards, with the simulator's truth (never an eval item).

A rule read off the training split is worth shipping only if its column moves with the traffic's. Not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel_lib import load_taxonomy
from flywheel_lib.training import build_dataset
from flywheel_lib.training.datasets import head_rows
from flywheel_lib.training.head import DecisionHead, _embed
from flywheel_lib.training.head_fit import out_of_fold_scores, phrasing_clusters

THRESHOLD = 0.5


def _rates(p_refuse: np.ndarray, best, gold: np.ndarray, solvable: str) -> str:
    """False refusals / right-category refusal recall at :data:`THRESHOLD`."""
    refuse, solv = np.asarray(p_refuse) >= THRESHOLD, gold == solvable
    return f"{refuse[solv].mean():.3f} / {(refuse & (np.asarray(best, dtype=object) == gold))[~solv].mean():.3f}"


def _fit(rows: pd.DataFrame, solvable: str) -> DecisionHead:
    return DecisionHead(C=8.0, refusal_threshold=THRESHOLD, encoder="hybrid").fit(
        rows["text"], rows["label"], solvable_id=solvable)


def _scored(h: DecisionHead, texts) -> tuple[np.ndarray, list[str]]:
    _, p_refuse, best = h.decide(list(texts))
    return p_refuse, best


def out_of_fold(rows: pd.DataFrame, groups: np.ndarray, solvable: str) -> str:
    gold = rows["label"].astype(str).to_numpy(dtype=object)
    p_refuse, best = out_of_fold_scores(rows["text"], gold, groups, C=8.0, solvable_id=solvable, encoder="hybrid")
    return _rates(p_refuse, best, gold, solvable)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="finished demo cycles' run folders (with traffic)")
    ap.add_argument("--variant", default="curated")
    ap.add_argument("--taxonomy", default="params/taxonomy/segments.yaml")
    ap.add_argument("--shares", default="0.15,0.2,0.25,0.3,0.35")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    tax = load_taxonomy(a.taxonomy)
    solvable = tax.solvable_id
    for run in a.runs:
        art = Path(run) / "artifacts"
        ts = pd.read_parquet(art / "train_sets.parquet")
        tr = pd.read_parquet(art / "traffic.parquet")
        gold = pd.read_parquet(art / "traffic_truth.parquet").set_index("item_id")["true_label"]
        gold = gold.loc[tr["item_id"]].astype(str).to_numpy(dtype=object)
        pool = build_dataset(ts, variant=a.variant, taxonomy=tax, seed=a.seed, max_refusal_share=0.15,
                             n_train=960).train_pool.reset_index(drop=True)
        groups = phrasing_clusters(_embed(list(pool["text"])), clusters=a.clusters, seed=a.seed)
        cycles = pool["item_id"].str.extract(r"^c(\d+)-traffic-")[0].dropna().astype(int)
        newest = pool["item_id"].str.startswith(f"c{cycles.max()}-traffic-") if len(cycles) else None
        print(f"{Path(run).name} {a.variant}: {len(pool)} rows, {int((pool['label'] != solvable).sum())} refusals"
              + (f"; newest rows: {int(newest.sum())} of cycle {cycles.max()}'s traffic" if newest is not None else ""))
        print("  share   rows   out of fold    newest rows    traffic   (false refusals / recall)")
        for s in (float(x) for x in a.shares.split(",")):
            rows = head_rows(pool, refusal_share=s, solvable_id=solvable, seed=a.seed)
            cells = [out_of_fold(rows, groups[rows.index.to_numpy()], solvable)]
            if newest is not None:
                held = pool[newest]
                h = _fit(head_rows(pool[~newest], refusal_share=s, solvable_id=solvable, seed=a.seed), solvable)
                cells.append(_rates(*_scored(h, held["text"]),
                                    held["label"].astype(str).to_numpy(dtype=object), solvable))
            else:
                cells.append("      -      ")
            cells.append(_rates(*_scored(_fit(rows, solvable), tr["text"]), gold, solvable))
            print(f"  {s:5.2f} {len(rows):6d}   " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
