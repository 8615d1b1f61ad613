"""Benchmark: generation speed and validity with and without the answer grammar (constrained decoding).

The same model and prompts (segment requests from the bundled generator) decoded greedily twice: free, and under
the segments answer grammar (:mod:`flywheel_lib.evaluation.constrained`, xgrammar). Prints seconds per item, the share
of non-refusal answers that parse and validate, and the refusal share, plus the one-time grammar compile time.

    python benchmarks/bench_constrained.py                         # untuned SmolLM2-135M, 64 prompts
    python benchmarks/bench_constrained.py --adapter outputs/runs/<id>/artifacts/models/curated --n 200

On a shared machine the absolute times move with the load; compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-model", default="smollm2-135m")
    ap.add_argument("--adapter", default="", help="a LoRA adapter folder (empty: the untuned base)")
    ap.add_argument("--n", type=int, default=64, help="prompts")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain
    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import answer_grammar
    from flywheel_lib.threads import free_cores
    from flywheel_lib.training import parse_answer

    idle = free_cores()
    dom = get_domain("segments")
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    ref = [c for c in tax.ids if c != tax.solvable_id]
    data = dom.generate(seed=args.seed, n_production=max(args.n, 200), n_seed_solvable=60, n_seed_refusal=60,
                        n_eval=max(args.n, 40), n_conflicts=10)
    texts = data["eval"]["text"].tolist()[:args.n]
    adapters = {"model": args.adapter} if args.adapter else {}
    variant = "model" if args.adapter else "base"
    t0 = time.perf_counter()
    gen = VariantGenerator(args.base_model, adapters, threads=args.threads, grammar=answer_grammar(dom, ref))
    print(f"free cores {idle:.1f}, threads {gen.threads_}; model load + grammar compile "
          f"{time.perf_counter() - t0:.1f}s; {len(texts)} eval prompts, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}")
    print(f"{'decoder':12s} {'s/item':>7s} {'valid':>7s} {'refused':>8s}")
    for constrained in (False, True):
        t0 = time.perf_counter()
        out = gen.generate(texts, variant=variant, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                           constrained=constrained, progress=False)
        dt = time.perf_counter() - t0
        ans = [parse_answer(o, ref) for o in out]
        q = [a.output for a in ans if not a.refused]
        valid = sum(dom.check_output(x).valid for x in q) / max(len(q), 1)
        print(f"{'grammar' if constrained else 'free':12s} {dt / len(texts):7.3f} {valid:7.2f} "
              f"{sum(a.refused for a in ans) / len(ans):8.2f}")


if __name__ == "__main__":
    main()
