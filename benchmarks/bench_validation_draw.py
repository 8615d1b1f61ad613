"""The skill model's two parts measured on a validation draw: a fresh eval set of the bundled generator (another seed),
never the demo's eval items.

    PYTHONPATH=$PWD python benchmarks/bench_validation_draw.py --run outputs/runs/<a demo cycle 1>
    PYTHONPATH=$PWD python benchmarks/bench_validation_draw.py --run RUN --heads "" \
        --adapters shared35=outputs/runs/<old run>/artifacts/models/curated,shared15=outputs/runs/<new run>/artifacts/models/curated

The demo's eval set (generator seed 7) holds phrasing families no training row has. ``--seed`` (default 11) draws
another ``--n`` eval items from the same held-out families with other conditions, values and noise (2% of its texts
occur in seed 7's eval set): a validation set, so a recipe can be chosen on it and the demo's eval items stay the
test. Two measurements:

- **heads** (``--heads``, default ``hybrid,finetuned``): each fitted the way ``04_finetune`` fits it (``head.rows:
  all`` at ``--share``) on the run's ``--variant`` training split; prints right-category refusal recall / false
  refusals at ``--thresholds`` (0.4 ... 0.7), for ``finetuned`` once per ``--ft-seeds`` seed (it is trained with
  SGD), then the mean and spread over those seeds; ``--members 2,3`` also scores every pair and every triple of
  them, their probabilities averaged (what ``head.members: k`` does with seeds s, s + 1, ...; ``--pairs`` is
  ``--members 2``);
- **adapters** (``--adapters NAME=FOLDER,...``): the decoder forced to write a query (the query-only grammar) for
  every solvable item; prints the share whose result matches the gold query's and McNemar's exact p against the
  first adapter on the same items.

The README's figures under "A validation draw" come from this script with ``--run`` run
``20261201-163806_demo_82d9d2`` (the heads) and ``--adapters`` the curated adapters of runs
``20261201-163806_demo_82d9d2`` and ``20261201-170908_demo_e99c4c`` (35% refusals, cycles 1 and 2) and
``20261201-191134_demo_86d10d`` and ``20261201-194113_demo_6804dd`` (15%); the stable draw's rows are
``--run 20261201-220348_demo_7a7078 --heads finetuned`` with ``--adapters`` its curated adapter and that of
``20261201-223718_demo_1e4dff`` (cycles 1 and 2). The two-member head (``head.members: 2``) was chosen from
``--run 20261201-220348_demo_7a7078 --heads finetuned --ft-seeds 7,1,3,5 --pairs --seed 11,13
--thresholds 0.45,0.5,0.55,0.6,0.65`` (2,000 items, 800 solvable), the three-member head (``head.members: 3``,
the demo's default) from the same with ``--run 20261202-050518_demo_f1ef13`` (the same rows, rebuilt by
00-03 of the same recipe: its singles and pairs came out to the digit) and ``--members 2,3,4``. Not a test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel_lib import load_taxonomy
from flywheel_lib.domains import get_domain
from flywheel_lib.training import build_dataset
from flywheel_lib.training.datasets import head_rows
from flywheel_lib.training.head import DecisionHead, _refusal_scores


def _heads(a, tax, val: pd.DataFrame) -> None:
    ts = pd.read_parquet(Path(a.run) / "artifacts" / "train_sets.parquet")
    ds = build_dataset(ts, variant=a.variant, taxonomy=tax, seed=7, max_refusal_share=a.share, n_train=960)
    rows = head_rows(ds.train_pool, refusal_share=a.share, solvable_id=tax.solvable_id, seed=7)
    gold = val["true_label"].to_numpy()
    solv = gold == tax.solvable_id
    print(f"heads: {a.variant} of {Path(a.run).name}, {len(rows)} rows ({int((rows['label'] != tax.solvable_id).sum())}"
          f" refusals); {len(val)} validation items ({int(solv.sum())} solvable); recall / false refusals")
    runs = [(k, 0) for k in a.heads.split(",") if k and k != "finetuned"]
    if "finetuned" in a.heads.split(","):
        runs += [("finetuned", int(s)) for s in a.ft_seeds.split(",")]
    thresholds = [float(t) for t in a.thresholds.split(",")]
    table, probs = [], {}

    def row(name: str, p: np.ndarray, classes: list[str], group: str) -> None:
        p_refuse, best = _refusal_scores(p, classes, tax.solvable_id)
        best = np.asarray(best, dtype=object)
        cells = []
        for t in thresholds:
            pred = np.where(p_refuse >= t, best, tax.solvable_id)
            rec, frr = (pred == gold)[~solv].mean(), (pred != tax.solvable_id)[solv].mean()
            table.append({"group": group, "threshold": t, "recall": rec, "false_refusals": frr})
            cells.append(f"t {t}: {rec:.3f} / {frr:.3f}")
        print(f"  {name:22s} " + "   ".join(cells), flush=True)

    for kind, seed in runs:
        h = DecisionHead(C=8.0, encoder=kind, seed=seed).fit(rows["text"], rows["label"], solvable_id=tax.solvable_id)
        p = h.predict_proba(val["text"].tolist())
        if kind == "finetuned":
            probs[seed] = p
        row(kind + (f" (seed {seed})" if kind == "finetuned" else ""), p, h.classes_, kind)
    sizes = sorted({int(k) for k in str(a.members).split(",") if k.strip()} | ({2} if a.pairs else set()))
    for k in sizes:  # the mean of k heads' probabilities: DecisionHead(members=k) of seeds s, s + 1, ...
        from itertools import combinations

        if not 2 <= k <= len(probs):
            raise SystemExit(f"--members {k}: needs 2..{len(probs)} fine-tuned seeds (--ft-seeds {a.ft_seeds})")
        for combo in combinations(probs, k):
            row(f"{k} heads (seeds {', '.join(map(str, combo))})", sum(probs[s] for s in combo) / k, h.classes_,
                f"members {k}")
    groups = pd.DataFrame(table).groupby(["group", "threshold"])[["recall", "false_refusals"]].agg(["mean", "std"])
    for g in ["finetuned"] + [f"members {k}" for k in sizes]:
        if g != "finetuned" or len(probs) > 1:
            what = "single fine-tuned heads" if g == "finetuned" else f"{g.split()[1]}-head averages"
            print(f"  over the {what}, recall / false refusals, mean (sd):")
            for t, r in groups.loc[g].iterrows():
                print(f"    t {t}: {r[('recall', 'mean')]:.3f} ({r[('recall', 'std')]:.3f}) / "
                      f"{r[('false_refusals', 'mean')]:.3f} ({r[('false_refusals', 'std')]:.3f})")


def _adapters(a, tax, dom, val: pd.DataFrame) -> None:
    from scipy.stats import binomtest

    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import answer_grammar, query_grammar

    s = val[val["true_label"] == tax.solvable_id].reset_index(drop=True)
    grammar = query_grammar(answer_grammar(dom, [c for c in tax.ids if c != tax.solvable_id]))

    def ok(answer, gold) -> bool:
        try:
            return bool(dom.same_result(answer, gold))
        except Exception:  # noqa: BLE001 - an answer the executor rejects is a fail
            return False

    print(f"adapters: the query each writes for the {len(s)} solvable validation items (query-only grammar)")
    first = None
    for spec in a.adapters.split(","):
        name, folder = spec.split("=", 1)
        gen = VariantGenerator(a.base_model, {name: folder}, grammar=grammar, heads=False, threads=0)
        answers = gen.generate(s["text"].tolist(), variant=name, batch_size=32, max_new_tokens=64, progress=False)
        passed = np.array([ok(x, g) for x, g in zip(answers, s["gold_output"])])
        line = f"  {name:12s} query pass {passed.mean():.3f}"
        if first is None:
            first = (name, passed)
        else:
            b, c = int((~first[1] & passed).sum()), int((first[1] & ~passed).sum())
            p = binomtest(b, b + c).pvalue if b + c else 1.0
            line += f"   vs {first[0]}: {passed.mean() - first[1].mean():+.3f} ({b} fixed, {c} broken, McNemar p {p:.3g})"
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a finished demo cycle (its train_sets) for the heads")
    ap.add_argument("--variant", default="curated")
    ap.add_argument("--taxonomy", default="params/taxonomy/segments.yaml")
    ap.add_argument("--seed", default="11", help="generator seed(s) of the validation draw, comma-separated (the "
                    "demo's is 7; several seeds concatenate their draws)")
    ap.add_argument("--n", type=int, default=1000, help="validation items per seed")
    ap.add_argument("--thresholds", default="0.4,0.5,0.6,0.7", help="the heads' refusal thresholds to print")
    ap.add_argument("--share", type=float, default=0.35, help="the heads' refusal share (head_refusal_share)")
    ap.add_argument("--heads", default="hybrid,finetuned")
    ap.add_argument("--ft-seeds", default="7,1", help="seeds of the fine-tuned head")
    ap.add_argument("--pairs", action="store_true", help="the same as --members 2")
    ap.add_argument("--members", default="", help="also score every subset of this many fine-tuned heads, their "
                    "probabilities averaged, e.g. 2,3 (what head_members: k does with k consecutive seeds)")
    ap.add_argument("--adapters", default="", help="NAME=ADAPTER_FOLDER,... (the first is the reference)")
    ap.add_argument("--base-model", default="smollm2-135m")
    a = ap.parse_args()
    tax, dom = load_taxonomy(a.taxonomy), get_domain("segments")
    seeds = [int(x) for x in str(a.seed).split(",")]
    if 7 in seeds:
        raise SystemExit("--seed 7 is the demo's own generator seed: its eval items are the test, not a validation draw")
    val = pd.concat([dom.generate(seed=s, n_production=2000, n_seed_solvable=600, n_seed_refusal=600,
                                  n_eval=a.n)["eval"] for s in seeds], ignore_index=True)
    if a.heads:
        if not a.run:
            raise SystemExit("--heads needs --run (a finished demo cycle whose train_sets the heads learn from)")
        _heads(a, tax, val)
    if a.adapters:
        _adapters(a, tax, dom, val)


if __name__ == "__main__":
    main()
