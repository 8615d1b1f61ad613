"""What the adapter learns per CPU-minute: training recipes measured on a validation draw, never the demo's eval items.

With a decision head the adapter's job is to write the query once the head has said "solvable", so a recipe is
judged by the query it writes for requests of phrasing families no training row has. Every recipe trains on the
same rows (a demo run's ``--variant`` training split, drawn as ``04_finetune`` draws it: ``steps x batch`` class-
balanced rows at 15% refusals) and is then forced to write a query (the query-only grammar) for the solvable items
of a validation draw of the generator (``--seed`` 11: the held-out families with other conditions and values).
Printed per recipe: training seconds, seconds a step, query pass with its 95% Wilson interval, and McNemar's exact p
against the first recipe on the same items::

    PYTHONPATH=$PWD python benchmarks/bench_recipe.py --run outputs/runs/<a demo cycle 1>
    PYTHONPATH=$PWD python benchmarks/bench_recipe.py --run RUN --recipes demo,half,attention16 --n 160

``--reuse NAME=FOLDER`` scores an adapter already trained (e.g. the run's own curated adapter, which is the ``demo``
recipe) instead of training that recipe again. Recipes (:data:`RECIPES`): the demo's (every linear layer, rank 64,
1e-3, cosine, 120 steps of 8), the same for half the steps, adapters on attention only at rank 16, a lower learning
rate, bigger batches for the same rows seen, and Gemma 3 270M as the base. Not a test: figures for the README.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

RECIPES = {  # name -> (base model, LoRA options)
    "demo": ("smollm2-135m", dict(max_steps=120, batch_size=8, lr=1e-3, lora_r=64, target_modules=("all-linear",))),
    "half": ("smollm2-135m", dict(max_steps=60, batch_size=8, lr=1e-3, lora_r=64, target_modules=("all-linear",))),
    "attention16": ("smollm2-135m", dict(max_steps=120, batch_size=8, lr=1e-3, lora_r=16,
                                         target_modules=("attention",))),
    "lr3e-4": ("smollm2-135m", dict(max_steps=120, batch_size=8, lr=3e-4, lora_r=64, target_modules=("all-linear",))),
    "batch16": ("smollm2-135m", dict(max_steps=60, batch_size=16, lr=1e-3, lora_r=64, target_modules=("all-linear",))),
    "gemma60": ("gemma3-270m", dict(max_steps=60, batch_size=8, lr=1e-3, lora_r=64, target_modules=("all-linear",))),
}


def main() -> None:
    from scipy.stats import binomtest

    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain
    from flywheel_lib.evaluation import VariantGenerator, score_predictions
    from flywheel_lib.evaluation.constrained import answer_grammar, query_grammar
    from flywheel_lib.evaluation.metrics import wilson
    from flywheel_lib.training import build_dataset
    from flywheel_lib.training.lora import LoRAConfig, train_lora

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a finished demo cycle (its train_sets)")
    ap.add_argument("--variant", default="curated")
    ap.add_argument("--recipes", default="demo,half,attention16,gemma60", help=f"of {', '.join(RECIPES)}")
    ap.add_argument("--reuse", default="", help="NAME=ADAPTER_FOLDER,...: score these instead of training them")
    ap.add_argument("--seed", type=int, default=11, help="generator seed of the validation draw (not 7)")
    ap.add_argument("--n", type=int, default=160, help="solvable validation items scored")
    ap.add_argument("--taxonomy", default="params/taxonomy/segments.yaml")
    a = ap.parse_args()
    if a.seed == 7:
        raise SystemExit("--seed 7 is the demo's own generator seed: its eval items are the test, not a validation draw")
    unknown = [r for r in a.recipes.split(",") if r not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    reuse = dict(spec.split("=", 1) for spec in a.reuse.split(",") if spec)
    tax, dom = load_taxonomy(a.taxonomy), get_domain("segments")
    ts = pd.read_parquet(Path(a.run) / "artifacts" / "train_sets.parquet")
    val = dom.generate(seed=a.seed, n_production=2000, n_seed_solvable=600, n_seed_refusal=600, n_eval=1000)["eval"]
    s = val[val["true_label"] == tax.solvable_id].head(a.n).reset_index(drop=True)
    s = s.assign(label=s["true_label"], output=s["gold_output"])  # the columns score_predictions reads
    grammar = query_grammar(answer_grammar(dom, [c for c in tax.ids if c != tax.solvable_id]))

    print(f"rows: {a.variant} of {Path(a.run).name}; {len(s)} solvable validation items (seed {a.seed}), "
          "query-only grammar")
    print(f"{'recipe':12s} {'base':13s} {'steps':>5s} {'train s':>8s} {'s/step':>7s} {'query pass':>10s} "
          f"{'95% CI':>14s}  vs first")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.recipes.split(","):
            base, opts = RECIPES[name]
            t0 = time.perf_counter()
            if name in reuse:
                folder, seconds = reuse[name], float("nan")
            else:
                ds = build_dataset(ts, variant=a.variant, taxonomy=tax, seed=7, max_refusal_share=0.15, max_per_class=400,
                                   n_train=opts["max_steps"] * opts["batch_size"])
                folder = str(Path(tmp) / name)
                cfg = LoRAConfig(base_model=base, lr_schedule="cosine", max_len=96, seed=7, val_batches=0,
                                 progress=False, **opts)
                res = train_lora(list(ds.train["messages"]), [], cfg, folder, variant="bench")
                seconds = res.metrics["seconds"]
            gen = VariantGenerator(base, {"bench": folder}, grammar=grammar, heads=False, threads=0)
            answers = gen.generate(s["text"].tolist(), variant="bench", batch_size=32, max_new_tokens=64,
                                   progress=False)
            del gen
            passed = score_predictions(s, answers, variant=name, domain=dom)["passed"].to_numpy()
            _, lo, hi = wilson(int(passed.sum()), len(passed))
            line = (f"{name:12s} {base:13s} {opts['max_steps']:5d} {seconds:8.0f} {seconds / opts['max_steps']:7.2f} "
                    f"{passed.mean():10.3f} {f'[{lo:.2f}, {hi:.2f}]':>14s}")
            if first is None:
                first = (name, passed)
            else:
                b, c = int((~first[1] & passed).sum()), int((first[1] & ~passed).sum())
                p = binomtest(b, b + c).pvalue if b + c else 1.0
                line += f"  {passed.mean() - first[1].mean():+.3f} ({b} fixed, {c} broken, p {p:.2g})"
            print(line, f"({time.perf_counter() - t0:.0f} s in all)", flush=True)


if __name__ == "__main__":
    main()
