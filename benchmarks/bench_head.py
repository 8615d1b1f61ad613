"""The decision head's regularisation, chosen by cross-validation that holds out whole phrasing families.

    PYTHONPATH=$PWD python benchmarks/bench_head.py            # generator seeds 7 and 11, C in 0.5..16, both heads
    PYTHONPATH=$PWD python benchmarks/bench_head.py --C 8 --encoders minilm,hybrid

The eval set of the bundled domain is built from phrasing families the training data never saw, so the honest way
to pick the head's ``C`` (04_finetune's ``head.C``) is cross-validation over the seed grouped by family (GroupKFold),
never the eval set. Prints right-category refusal recall, false-refusal rate and accuracy per encoder (``minilm``:
the sentence embedding alone; ``hybrid``: beside TF-IDF word and character n-grams) and C. Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import GroupKFold

from flywheel_lib.domains import get_domain
from flywheel_lib.training.head import DecisionHead


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="7,11")
    ap.add_argument("--C", default="0.5,1,2,4,8,16")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--encoders", default="minilm,hybrid")
    a = ap.parse_args()
    for gseed in (int(s) for s in a.seeds.split(",")):
        seed = get_domain("segments").generate(seed=gseed, n_production=2000, n_eval=40)["seed"].reset_index(drop=True)
        print(f"generator seed {gseed}: {len(seed)} seed rows, {seed['family'].nunique()} phrasing families")
        for enc, C in ((e, float(c)) for e in a.encoders.split(",") for c in a.C.split(",")):
            rec, fr, acc = [], [], []
            for tr, te in GroupKFold(a.folds).split(seed, groups=seed["family"]):
                h = DecisionHead(C=C, encoder=enc).fit(seed["text"][tr], seed["label"][tr])
                p = np.asarray(h.predict(seed["text"][te]), dtype=object)
                g = seed["label"][te].to_numpy()
                imp = g != "solvable"
                rec.append((p[imp] == g[imp]).mean() if imp.any() else np.nan)
                fr.append((p[~imp] != "solvable").mean() if (~imp).any() else np.nan)
                acc.append((p == g).mean())
            print(f"  {enc:7s} C={C:<5} right-category refusal recall {np.nanmean(rec):.3f}  false refusals {np.nanmean(fr):.3f}"
                  f"  accuracy {np.mean(acc):.3f}")


if __name__ == "__main__":
    main()
