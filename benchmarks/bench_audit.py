"""Benchmark: does the audit's 95% interval cover the gate's true production precision?

On two data sets with a known truth, the real offline judge panel labels production, a gate accepts the items where
every judge gives the same category, and the audit (``flywheel_lib.curation.audit``) is drawn ``--draws`` times
with different seeds at a sample of ``--n`` accepted labels, answered by a reviewer who gives the truth (wrong at
``--reviewer-error-rate``, 0 by default: the estimator's own coverage). Prints, per data set, the true precision,
the coverage of the interval, its mean width and the mean estimate; the target is coverage >= 0.90 at n = 200.

- ``segments``: the bundled generator (``--production`` requests), the panel fitted on the generated seed, as in
  02_judge.
- ``triagesql``: the 955 labelled TriageSQL questions (``../shared/data/triagesql/triagesql_visible.jsonl``), each
  judged by a panel fitted on the other folds (``--folds``), so every row is a production row no judge saw; the
  human class is the truth.

    .venv/bin/python benchmarks/bench_audit.py
    .venv/bin/python benchmarks/bench_audit.py --data segments --production 4000 --draws 200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TRIAGESQL = "../shared/data/triagesql/triagesql_visible.jsonl"
TRIAGESQL_MAP = {"item_id": "id", "text": "question", "label": "label", "context": "schema",
                 "source_label": "source_label"}


def _gate(verdicts: pd.DataFrame, judges: list[str], labels: list[str]) -> pd.DataFrame:
    """``item_id, category`` accepted when every judge gives the same category (k of n, k = n)."""
    from flywheel_lib.curation import KOfN

    table = KOfN(k=len(judges), labels=labels, judges=judges).fit(verdicts).table()
    return table.loc[table["status"] == "accepted", ["item_id", "category"]].reset_index(drop=True)


def segments(n_production: int, seed: int, cache: str) -> tuple[pd.DataFrame, pd.Series]:
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy_lab import fit_pool

    tax = load_taxonomy("params/taxonomy/segments.yaml")
    dom = get_domain("segments")
    data = dom.generate(seed=seed, n_production=n_production)
    prod, seed_items = data["production"], data["seed"]
    pan = load_panel("params/judges/offline.yaml", taxonomy=tax, domain=dom)
    pan.fit(fit_pool(seed_items.assign(reason_key=seed_items.get("reason_key")), tax))
    verdicts = pan.judge(prod.drop(columns=["true_label", "gold_output", "family"], errors="ignore"),
                         cache_dir=cache, progress=False)
    return _gate(verdicts, pan.names, tax.ids), prod.set_index("item_id")["true_label"]


def triagesql(folds: int, seed: int, cache: str) -> tuple[pd.DataFrame, pd.Series]:
    from flywheel_lib import load_taxonomy
    from flywheel_lib.curation.split import stratified_folds
    from flywheel_lib.data.loaders import load_items
    from flywheel_lib.domains import get_domain
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy_lab import fit_pool

    tax = load_taxonomy("params/taxonomy/triagesql.yaml")
    dom = get_domain("triagesql")
    rows = load_items(TRIAGESQL, TRIAGESQL_MAP, "seed", tax, workload_id="triagesql")
    if "reason_key" not in rows.columns:
        rows["reason_key"] = None
    fold_of = stratified_folds(rows, k=folds, seed=seed).set_index("item_id")["fold"]
    accepted = []
    for f in range(folds):
        held = rows["item_id"].map(fold_of).eq(f).to_numpy()
        pan = load_panel("params/judges/triagesql.yaml", taxonomy=tax, domain=dom)
        pan.fit(fit_pool(rows[~held], tax, exclude=rows.loc[held, "text"]))
        judged = rows[held].assign(label=tax.solvable_id, source="production")  # judged as logged successes
        verdicts = pan.judge(judged, cache_dir=cache, progress=False)
        accepted.append(_gate(verdicts, pan.names, tax.ids))
    return pd.concat(accepted, ignore_index=True), rows.set_index("item_id")["label"]


def coverage(accepted: pd.DataFrame, truth: pd.Series, *, n: int, draws: int, error_rate: float,
             labels: list[str]) -> dict:
    from flywheel_lib.curation.audit import audit_precision, draw_audit

    right = accepted["category"].to_numpy() == truth.reindex(accepted["item_id"]).to_numpy()
    true = float(right.mean())
    hits, widths, ests = [], [], []
    for d in range(draws):
        s = draw_audit(accepted, n, seed=d)
        answer = truth.reindex(s["item_id"]).to_numpy().astype(object)
        rng = np.random.default_rng(10_000 + d)
        for k in np.flatnonzero(rng.random(len(s)) < error_rate):  # a wrong answer: another category
            answer[k] = rng.choice([c for c in labels if c != answer[k]])
        est = audit_precision(accepted, s.assign(human_label=answer))
        hits.append(est.lo <= true <= est.hi)
        widths.append(est.hi - est.lo)
        ests.append(est.precision)
    return {"accepted": len(accepted), "true_precision": round(true, 4), "n": min(n, len(accepted)),
            "draws": draws, "coverage": round(float(np.mean(hits)), 3), "mean_width": round(float(np.mean(widths)), 4),
            "mean_estimate": round(float(np.mean(ests)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["segments", "triagesql", "both"], default="both")
    ap.add_argument("--production", type=int, default=3000, help="segments: generated production requests")
    ap.add_argument("--folds", type=int, default=5, help="triagesql: cross-fitting folds")
    ap.add_argument("--n", type=int, default=200, help="audit sample size")
    ap.add_argument("--draws", type=int, default=50, help="seeded audit draws")
    ap.add_argument("--reviewer-error-rate", type=float, default=0.0, help="share of wrong reviewer answers")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from flywheel_lib import load_taxonomy

    todo = ["segments", "triagesql"] if args.data == "both" else [args.data]
    with tempfile.TemporaryDirectory() as cache:
        for name in todo:
            t = time.perf_counter()
            if name == "segments":
                accepted, truth = segments(args.production, args.seed, cache)
                labels = load_taxonomy("params/taxonomy/segments.yaml").ids
            else:
                accepted, truth = triagesql(args.folds, args.seed, cache)
                labels = load_taxonomy("params/taxonomy/triagesql.yaml").ids
            setup = time.perf_counter() - t
            res = coverage(accepted, truth, n=args.n, draws=args.draws, error_rate=args.reviewer_error_rate,
                           labels=labels)
            ok = "meets" if res["coverage"] >= 0.90 else "MISSES"
            print(f"{name}: {res}  (reviewer error {args.reviewer_error_rate}; panel and gate {setup:.0f}s) "
                  f"-> {ok} the 0.90 coverage target")


if __name__ == "__main__":
    main()
