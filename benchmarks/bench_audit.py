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
- ``--shift db`` (TriageSQL only): a real distribution shift instead of random folds. The rows are grouped by their
  database (the set of table names in ``schema``); whole databases go to the seed (``--seed-share`` of the rows,
  the panel fits on them) or to production (judged as logged successes), so production asks about databases no
  judge saw. The audit samples ``--n`` of production's accepted labels, or all of them when fewer were accepted
  (then stated: a census covers by construction).

    .venv/bin/python benchmarks/bench_audit.py
    .venv/bin/python benchmarks/bench_audit.py --data triagesql --shift db --draws 50 --n 200
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


def database_of(schema: dict) -> str:
    """The database a TriageSQL row is asked against: its table names, sorted (Spider databases share them)."""
    return "|".join(sorted(schema))


def split_by_database(db: pd.Series, *, seed_share: float, seed: int) -> pd.Series:
    """True for the rows whose database goes to the seed: databases in a seeded random order, taken whole until
    ``seed_share`` of the rows is reached; the rest is production. No database is on both sides."""
    sizes = db.value_counts()
    order = sizes.index.to_numpy()[np.random.default_rng(seed).permutation(len(sizes))]
    taken = set(order[: int(np.searchsorted(np.cumsum(sizes.reindex(order).to_numpy()), seed_share * len(db))) + 1])
    return db.isin(taken)


def triagesql_db_shift(seed_share: float, seed: int, cache: str) -> tuple[pd.DataFrame, pd.Series, dict]:
    """The panel fitted on the seed's databases judges production's (other) databases; the gate's accepted labels
    and the human class as truth, with the split's sizes."""
    import json

    from flywheel_lib import load_taxonomy
    from flywheel_lib.data.loaders import load_items
    from flywheel_lib.domains import get_domain
    from flywheel_lib.judges import load_panel
    from flywheel_lib.taxonomy_lab import fit_pool

    tax = load_taxonomy("params/taxonomy/triagesql.yaml")
    dom = get_domain("triagesql")
    rows = load_items(TRIAGESQL, TRIAGESQL_MAP, "seed", tax, workload_id="triagesql")
    if "reason_key" not in rows.columns:
        rows["reason_key"] = None
    with open(TRIAGESQL, encoding="utf-8") as f:
        db_of = {r["id"]: database_of(r["schema"]) for r in map(json.loads, f)}
    db = rows["item_id"].map(db_of)
    in_seed = split_by_database(db, seed_share=seed_share, seed=seed).to_numpy()
    seed_rows, prod = rows[in_seed], rows[~in_seed]
    assert not set(db[in_seed]) & set(db[~in_seed])
    pan = load_panel("params/judges/triagesql.yaml", taxonomy=tax, domain=dom)
    pan.fit(fit_pool(seed_rows, tax, exclude=prod["text"]))
    verdicts = pan.judge(prod.assign(label=tax.solvable_id, source="production"), cache_dir=cache, progress=False)
    info = {"seed_rows": int(in_seed.sum()), "seed_databases": int(db[in_seed].nunique()),
            "production_rows": int((~in_seed).sum()), "production_databases": int(db[~in_seed].nunique()),
            "seed_classes": rows.loc[in_seed, "label"].value_counts().to_dict(),
            "production_classes": prod["label"].value_counts().to_dict()}
    return _gate(verdicts, pan.names, tax.ids), rows.set_index("item_id")["label"], info


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


def shift_db(args, cache: str) -> None:
    """``--shift db``: per database split, coverage at ``--n`` (or every accepted label, a census, when fewer were
    accepted) and at the size 03_resolve's audit would draw (``audit_size``: half-width 0.05, capped at ``--n``)."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.curation.audit import audit_size

    labels = load_taxonomy("params/taxonomy/triagesql.yaml").ids
    pooled: dict[int, list[float]] = {}
    for split_seed in range(args.seed, args.seed + args.splits):
        t = time.perf_counter()
        accepted, truth, info = triagesql_db_shift(args.seed_share, split_seed, cache)
        setup = time.perf_counter() - t
        print(f"triagesql --shift db, split seed {split_seed}: {info}")
        sizes = {min(args.n, len(accepted)), audit_size(len(accepted), half_width=0.05, max_n=args.n)}
        for n in sorted(sizes, reverse=True):
            res = coverage(accepted, truth, n=n, draws=args.draws, error_rate=args.reviewer_error_rate, labels=labels)
            census = res["n"] >= len(accepted)
            if not census:
                pooled.setdefault(split_seed, []).append(res["coverage"])
            how = ("a census of every accepted label: covers by construction" if census else
                   "the sample 03_resolve's audit draws (half-width 0.05)" if res["n"] < min(args.n, len(accepted))
                   else f"--n {args.n}")
            ok = "meets" if res["coverage"] >= 0.90 else "MISSES"
            print(f"  n={res['n']} ({how}): {res}  (reviewer error {args.reviewer_error_rate}; panel and gate "
                  f"{setup:.0f}s) -> {ok} the 0.90 coverage target")
    if pooled:
        cov = [c for v in pooled.values() for c in v]
        print(f"triagesql --shift db: coverage over {len(cov)} (split, sample size) settings x {args.draws} draws "
              f"(censuses left out): "
              f"mean {np.mean(cov):.3f}, min {np.min(cov):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["segments", "triagesql", "both"], default="both")
    ap.add_argument("--production", type=int, default=3000, help="segments: generated production requests")
    ap.add_argument("--folds", type=int, default=5, help="triagesql: cross-fitting folds")
    ap.add_argument("--shift", choices=["none", "db"], default="none",
                    help="triagesql: db splits seed and production by database instead of judging every row out of fold")
    ap.add_argument("--splits", type=int, default=1, help="--shift db: database splits, seeds --seed, --seed+1, ...")
    ap.add_argument("--seed-share", type=float, default=0.6, help="--shift db: share of the rows whose databases "
                    "go to the seed")
    ap.add_argument("--n", type=int, default=200, help="audit sample size")
    ap.add_argument("--draws", type=int, default=50, help="seeded audit draws")
    ap.add_argument("--reviewer-error-rate", type=float, default=0.0, help="share of wrong reviewer answers")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from flywheel_lib import load_taxonomy

    todo = ["segments", "triagesql"] if args.data == "both" else [args.data]
    if args.shift == "db":
        todo = [t for t in todo if t == "triagesql"]
        if not todo:
            ap.error("--shift db applies to --data triagesql")
    with tempfile.TemporaryDirectory() as cache:
        for name in todo:
            t = time.perf_counter()
            if name == "segments":
                accepted, truth = segments(args.production, args.seed, cache)
                labels = load_taxonomy("params/taxonomy/segments.yaml").ids
            elif args.shift == "db":
                shift_db(args, cache)
                continue
            else:
                accepted, truth = triagesql(args.folds, args.seed, cache)
                labels = load_taxonomy("params/taxonomy/triagesql.yaml").ids
            setup = time.perf_counter() - t
            res = coverage(accepted, truth, n=args.n, draws=args.draws, error_rate=args.reviewer_error_rate,
                           labels=labels)
            ok = "meets" if res["coverage"] >= 0.90 else "MISSES"
            if res["n"] < args.n:
                ok += f" (the sample is every accepted label, {res['n']} < --n {args.n}: a census)"
            print(f"{name}: {res}  (reviewer error {args.reviewer_error_rate}; panel and gate {setup:.0f}s) "
                  f"-> {ok} the 0.90 coverage target")


if __name__ == "__main__":
    main()
