"""The default offline panels: out-of-fold kappa on a labelled set, the gate's precision/coverage, and labelling speed.

    PYTHONPATH=$PWD python benchmarks/bench_offline_panel.py --domain triagesql          # 955 visible TriageSQL rows
    PYTHONPATH=$PWD python benchmarks/bench_offline_panel.py --domain segments --n 1500  # generated bundled seed
    PYTHONPATH=$PWD python benchmarks/bench_offline_panel.py --domain triagesql --speed 20000

Cross-fitting (:func:`flywheel_lib.judges.crossfit.cross_fit`, 5 stratified folds) judges every row with judges
fitted without it; kappa per judge, the unanimous gate under each reasoning check and the strategy ladder come from
those out-of-fold verdicts. ``--speed N`` times each judge labelling N items (the rows repeated with a suffix so
no two texts are equal) after fitting on the whole set. Not a test: figures go to the README's tables.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from flywheel_lib import load_taxonomy
from flywheel_lib.curation import calibration as cal
from flywheel_lib.curation import gate
from flywheel_lib.curation.split import stratified_folds
from flywheel_lib.domains import get_domain
from flywheel_lib.judges import load_panel
from flywheel_lib.judges.crossfit import cross_fit
from flywheel_lib.taxonomy_lab import fit_pool

DOMAINS = {
    "triagesql": ("params/taxonomy/triagesql.yaml", "params/judges/triagesql.yaml"),
    "segments": ("params/taxonomy/segments.yaml", "params/judges/offline.yaml"),
}


def load_items(domain: str, n: int, seed: int) -> pd.DataFrame:
    if domain == "triagesql":
        with open("../shared/data/triagesql/triagesql_visible.jsonl") as f:
            rows = [json.loads(x) for x in f]
        df = pd.DataFrame({"item_id": [r["id"] for r in rows], "text": [r["question"] for r in rows],
                           "context": [json.dumps(r["schema"]) for r in rows], "label": [r["label"] for r in rows]})
        df["reason_key"] = None
        return df.head(n) if n else df
    n = n or 1200
    data = get_domain(domain).generate(seed=seed, n_seed_solvable=n // 2, n_seed_refusal=n - n // 2,
                                       n_production=200, n_eval=10, n_conflicts=0)
    return data["seed"].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domain", default="triagesql", choices=sorted(DOMAINS))
    ap.add_argument("--panel", default="")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--speed", type=int, default=0)
    ap.add_argument("--cache", default="")
    ap.add_argument("--no-cv", action="store_true", help="only the speed figures")
    a = ap.parse_args()
    tax_path, panel_path = DOMAINS[a.domain]
    panel_path = a.panel or panel_path
    tax = load_taxonomy(tax_path)
    dom = get_domain(a.domain)
    items = load_items(a.domain, a.n, a.seed)
    if not a.no_cv:
        crossvalidate(a, items, tax, dom, panel_path)
    if a.speed:
        speed(a, items, tax, dom, panel_path)


def crossvalidate(a, items, tax, dom, panel_path) -> None:
    folds = stratified_folds(items, k=a.folds, seed=a.seed)
    t0 = time.time()
    res = cross_fit(lambda: load_panel(panel_path, taxonomy=tax, domain=dom), items, folds,
                    pool=lambda tr, te: fit_pool(tr, tax, exclude=te["text"]), cache_dir=a.cache or None)
    print(f"cross-fit {a.folds} folds over {len(items)} rows: {time.time() - t0:.1f}s")
    gold = items.set_index("item_id")["label"]
    v = res.verdicts
    rep = cal.judge_report(v, gold, labels=tax.ids)
    print(rep.round(3).to_string(index=False))
    eff = cal.effective_votes(cal.error_correlation(v, gold))
    print("error correlation:", {k: round(x, 3) if isinstance(x, float) else x for k, x in eff.items()})
    judges = sorted(v["judge"].unique())
    checks = gate.reasoning_checks(v, gold, judges=judges, labels=tax.ids)
    print(checks[["strategy", "accepted", "coverage", "precision"]].round(3).to_string(index=False))
    has = gate.seed_has_reasons(items)
    r = gate.choose_reasoning(checks, has_reasons=has)
    ladder = gate.ladder_table(v, gold, judges=judges, labels=tax.ids, reasoning=r["reasoning"])
    print("reasoning:", r["reasoning"])
    print(ladder[["strategy", "accepted", "coverage", "precision"]].round(3).to_string(index=False))


def speed(a, items, tax, dom, panel_path) -> None:
    if True:
        pan = load_panel(panel_path, taxonomy=tax, domain=dom).fit(fit_pool(items, tax))
        reps = -(-a.speed // len(items))
        big = pd.concat([items.assign(item_id=items["item_id"] + f"#{i}", text=items["text"] + f" ({i})")
                         for i in range(reps)], ignore_index=True).head(a.speed)
        for j in pan.judges:
            t0 = time.time()
            j.predict(big)
            print(f"speed {j.name}: {len(big)} items in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
