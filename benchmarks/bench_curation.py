"""Benchmark: the consensus gate and conflict detection on 100,000 production items.

Judge calls are excluded (the verdicts are simulated from the generator's hidden truth with per-judge noise);
sentence embeddings are included. Prints one line per step and the total, which the issue wants under 3 minutes.

    python benchmarks/bench_curation.py                 # 100,000 items, 4 judges, blocking at 0.6
    python benchmarks/bench_curation.py --n 20000 --prefilter 0   # embed every distinct request

On a large corpus conflict detection blocks first (``--prefilter``: word TF-IDF cosine to a different-label seed
row) and embeds only the survivors; the recall of the planted conflicts is printed beside the time, so the
trade-off is visible.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def simulate_verdicts(items: pd.DataFrame, labels: list[str], *, n_judges: int, seed: int) -> pd.DataFrame:
    """Each judge: right with prob. 0.85, else a random other label; abstains 3% of the time; reason key = the
    true label's name with case/spacing noise (so normalisation matters)."""
    rng = np.random.default_rng(seed)
    truth = items["true_label"].fillna(items["label"]).to_numpy()
    lab = np.asarray(labels, dtype=object)
    frames = []
    for j in range(n_judges):
        cat = truth.copy()
        wrong = rng.random(len(cat)) < 0.15
        cat[wrong] = lab[rng.integers(0, len(lab), wrong.sum())]
        cat = cat.astype(object)
        cat[rng.random(len(cat)) < 0.03] = None
        key = np.where(rng.random(len(cat)) < 0.5, np.char.upper(truth.astype(str)), truth.astype(str)).astype(object)
        frames.append(pd.DataFrame({"item_id": items["item_id"].to_numpy(), "judge": f"j{j + 1}", "category": cat,
                                    "reason_key": key, "rationale": "", "model": "sim", "prompt_hash": "",
                                    "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "latency_s": 0.0,
                                    "cached": False, "error": None}))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="production items")
    ap.add_argument("--judges", type=int, default=4, help="simulated judges")
    ap.add_argument("--threshold", type=float, default=0.9, help="paraphrase similarity threshold")
    ap.add_argument("--prefilter", type=float, default=0.6, help="TF-IDF blocking threshold (0: embed all)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from flywheel_lib import load_taxonomy
    from flywheel_lib.curation import DawidSkene, KOfN, MajorityVote, Unanimous
    from flywheel_lib.curation.conflicts import find_conflicts
    from flywheel_lib.domains import get_domain
    from flywheel_lib.embeddings import load_encoder

    tax = load_taxonomy("params/taxonomy/segments.yaml")
    t = time.perf_counter()
    data = get_domain("segments").generate(seed=args.seed, n_production=args.n)
    items = pd.concat([data["production"], data["seed"]], ignore_index=True)
    prod = data["production"]
    verdicts = simulate_verdicts(prod, tax.ids, n_judges=args.judges, seed=args.seed)
    load_encoder()
    print(f"setup (generate {len(prod):,} production + {len(data['seed']):,} seed, simulate "
          f"{len(verdicts):,} verdicts, load encoder; not timed): {time.perf_counter() - t:.1f}s")

    timings = {}
    t0 = time.perf_counter()
    for name, s in [("unanimous", Unanimous(labels=tax.ids)), ("k_of_n", KOfN(k=args.judges - 1, labels=tax.ids)),
                    ("majority", MajorityVote(labels=tax.ids)), ("dawid_skene", DawidSkene(labels=tax.ids))]:
        t = time.perf_counter()
        s.fit(verdicts)
        table = s.table()
        timings[f"consensus_{name}"] = time.perf_counter() - t
        print(f"consensus {name:<12} {timings[f'consensus_{name}']:6.1f}s  coverage {s.coverage_:.3f}  rows {len(table):,}")
    t = time.perf_counter()
    conflicts = find_conflicts(items, similarity_threshold=args.threshold, prefilter=args.prefilter)
    timings["conflicts"] = time.perf_counter() - t
    a = conflicts.attrs
    planted = prod[prod["conflict_with"].fillna("") != ""]
    recall = float(planted["item_id"].isin(conflicts["item_id"]).mean()) if len(planted) else float("nan")
    print(f"conflicts            {timings['conflicts']:6.1f}s  exact {a['n_exact']:,}  paraphrase {a['n_paraphrase']:,}  "
          f"embedded {a['n_embedded']:,} texts in {a['embed_s']:.1f}s  (blocking kept {a['n_candidates']:,})  "
          f"planted conflicts found {recall:.3f} of {len(planted)}")
    total = time.perf_counter() - t0
    print(f"TOTAL consensus (4 strategies) + conflict detection on {len(prod):,} items: {total:.1f}s "
          f"({'under' if total < 180 else 'OVER'} the 3-minute target; {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
    main()
