"""Benchmark: the local-lora training loop against a bare peft loop with the same settings.

Both loops fine-tune the same base model with the same LoRA (rank, alpha, attention projections), AdamW, learning
rate, batch size, max length, bf16 autocast and threads, on the same chat examples (segment requests from the
bundled generator, refusals included). Throughput is answer-and-prompt tokens (non-padding) per second of optimizer
steps, model loading excluded. The bare loop is what the peft quick-start does: right-padded batches, ``labels``
with -100 on prompt and padding, the model's own loss over full-sequence logits. The workbench loop left-pads so
answers end together and asks the model for the last ``answer + 1`` logits only (``logits_to_keep``).

    python benchmarks/bench_training.py                      # 12 steps each, batch 8 x 96 tokens, SmolLM2-135M
    python benchmarks/bench_training.py --steps 30 --base-model gemma3-270m

The issue's bar: the workbench loop reaches at least 0.95 of the bare loop's tokens per second.

    python benchmarks/bench_training.py --recipes            # seconds per step of each recipe 04 offers
    python benchmarks/bench_training.py --attention --steps 12   # attention kernel x batch size, same examples

``--recipes`` times the workbench loop for each recipe option of ``04_finetune`` (adapters on attention only vs every
linear layer, rank 16 vs 64, refusal targets full vs category only) on the same examples and prints seconds per
optimizer step, tokens per second and trainable parameters: the figures behind the demo's step budget. On a shared
machine the absolute times move with the load (the ``free cores`` column says how many were idle at the start).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def chats(n: int, seed: int):
    from flywheel_lib.training import build_dataset

    rows, tax = _rows(seed, n, n_conflicts=n // 20)
    ds = build_dataset(rows, taxonomy=tax, val_frac=0.0, seed=seed)
    return list(ds.train["messages"])


def bare_loop(examples, args) -> tuple[float, int, float]:
    """A bare peft loop: right padding, labels=-100 on prompt/pad, full logits. Returns (tokens/s, tokens, s)."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model

    from flywheel_lib.models import load_base_model

    torch.manual_seed(args.seed)
    model, tok = load_base_model(args.base_model)
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    tokens = 0
    t0 = None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            tokens, t0 = 0, time.perf_counter()
        batch = [examples[i] for i in rng.choice(len(examples), args.batch_size, replace=False)]
        L = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((len(batch), L), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, (p, a) in enumerate(batch):
            seq = p + a
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            labels[r, len(p):len(seq)] = torch.tensor(a)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    dt = time.perf_counter() - t0
    return tokens / dt, tokens, dt


RECIPES = [  # (name, target_modules preset, rank, refusal_target)
    ("attention r16", "attention", 16, "full"),
    ("all-linear r16", "all-linear", 16, "full"),
    ("all-linear r64", "all-linear", 64, "full"),
    ("all-linear r64, category-only refusals", "all-linear", 64, "category"),
]


def _rows(seed: int, n_production: int, n_conflicts: int = 20):
    """Generated production and seed rows of the segments domain (a quarter as many seed rows of each kind as
    production rows) and the taxonomy: the examples the timing modes train on."""
    import pandas as pd

    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain

    data = get_domain("segments").generate(seed=seed, n_production=n_production, n_seed_solvable=n_production // 4,
                                           n_seed_refusal=n_production // 4, n_eval=40, n_conflicts=n_conflicts)
    rows = pd.concat([data["production"], data["seed"]])[["item_id", "text", "label", "output", "reason_key"]]
    return rows, load_taxonomy("params/taxonomy/segments.yaml")


def recipes(args) -> None:
    """Seconds per step of each recipe option (the workbench loop), same examples, steps and batch."""
    import tempfile

    from flywheel_lib.threads import free_cores, set_threads
    from flywheel_lib.training import build_dataset
    from flywheel_lib.training.lora import LoRAConfig, train_lora

    idle = free_cores()
    threads = set_threads(args.threads)
    rows, tax = _rows(args.seed, 400)
    print(f"free cores {idle:.1f}, threads {threads}, {args.steps} steps of {args.batch_size}, max_len {args.max_len}")
    print(f"{'recipe':42s} {'s/step':>7s} {'tokens/s':>9s} {'answer tok/ex':>13s} {'trainable':>10s}")
    for name, targets, r, style in RECIPES:
        ds = build_dataset(rows, taxonomy=tax, val_frac=0.0, seed=args.seed, n_train=args.steps * args.batch_size,
                           refusal_target=style)
        ans = ds.train["messages"].map(lambda m: len(m[-1]["content"]) / 4).mean()  # ~4 characters per token
        cfg = LoRAConfig(base_model=args.base_model, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         lora_r=r, target_modules=(targets,), max_len=args.max_len, seed=args.seed,
                         bf16="on" if args.bf16 else "off", val_batches=0, threads=threads, progress=False,
                         warmup_steps=0)
        with tempfile.TemporaryDirectory() as tmp:
            res = train_lora(list(ds.train["messages"]), [], cfg, tmp, variant="bench")
        m = res.metrics
        print(f"{name:42s} {m['seconds'] / args.steps:7.2f} {m['tokens_per_s']:9.1f} {ans:13.1f} "
              f"{m['trainable_params']:10d}")


def attention_sweep(args) -> None:
    """The demo's recipe (every linear layer, rank 64, 15% refusals) under each attention kernel and batch size: the
    same examples seen (``--steps`` x 8 of them) in steps of 8, 16 and 32. Prints seconds per step and per example,
    tokens per second and the mean loss of the last steps (equal kernels should give equal losses)."""
    import tempfile

    from flywheel_lib.threads import free_cores, set_threads
    from flywheel_lib.training import build_dataset
    from flywheel_lib.training.lora import LoRAConfig, train_lora

    idle = free_cores()
    threads = set_threads(args.threads)
    rows, tax = _rows(args.seed, 800)
    n_examples = args.steps * 8
    ds = build_dataset(rows, taxonomy=tax, val_frac=0.0, seed=args.seed, n_train=n_examples, max_refusal_share=0.15)
    print(f"free cores {idle:.1f}, threads {threads}, {n_examples} examples, all-linear r64, bf16 {args.bf16}")
    print(f"{'attention':9s} {'batch':>5s} {'s/step':>7s} {'s/example':>9s} {'tokens/s':>9s} {'last loss':>9s}")
    for attention in ("sdpa", "eager"):
        for bs in (8, 16, 32):
            steps = max(n_examples // bs, 1)
            cfg = LoRAConfig(base_model=args.base_model, max_steps=steps, batch_size=bs, lr=args.lr, lora_r=64,
                             target_modules=("all-linear",), max_len=args.max_len, seed=args.seed,
                             bf16="on" if args.bf16 else "off", val_batches=0, threads=threads, progress=False,
                             warmup_steps=0, attention=attention)
            with tempfile.TemporaryDirectory() as tmp:
                res = train_lora(list(ds.train["messages"]), [], cfg, tmp, variant="bench")
            m = res.metrics
            print(f"{attention:9s} {bs:5d} {m['seconds'] / steps:7.2f} {m['seconds'] / (steps * bs):9.3f} "
                  f"{m['tokens_per_s']:9.1f} {m['loss_last']:9.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per loop")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (bare loop)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: auto)")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--recipes", action="store_true", help="time each recipe option of 04 instead")
    ap.add_argument("--attention", action="store_true",
                    help="time the demo's recipe under sdpa and eager attention at batch 8, 16 and 32 instead")
    args = ap.parse_args()
    if args.recipes:
        recipes(args)
        return
    if args.attention:
        attention_sweep(args)
        return

    import tempfile

    from flywheel_lib.models import load_base_model
    from flywheel_lib.threads import set_threads
    from flywheel_lib.training.lora import LoRAConfig, tokenize_chats, train_lora

    threads = set_threads(args.threads)
    msgs = chats(400, args.seed)
    _, tok = load_base_model(args.base_model)
    examples = tokenize_chats(tok, msgs, max_len=args.max_len)
    print(f"{len(examples)} examples, mean {sum(len(p) + len(a) for p, a in examples) / len(examples):.1f} tokens, "
          f"batch {args.batch_size}, threads {threads}, bf16 {args.bf16}")

    bare_tps, bare_tok, bare_s = bare_loop(examples, args)
    print(f"bare peft loop     : {bare_tps:8.1f} tokens/s  ({bare_tok} tokens in {bare_s:.1f}s, {args.steps} steps)")

    cfg = LoRAConfig(base_model=args.base_model, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     lora_r=args.lora_r, max_len=args.max_len, seed=args.seed, bf16="on" if args.bf16 else "off",
                     val_batches=0, threads=threads, progress=False, warmup_steps=0)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_lora(msgs, [], cfg, tmp, variant="bench")
    ours = res.metrics["tokens_per_s"]
    print(f"workbench loop     : {ours:8.1f} tokens/s  ({int(res.log['tokens'].iloc[-1])} tokens in "
          f"{res.metrics['seconds']:.1f}s, {args.steps} steps; includes its first step)")
    print(f"ratio (workbench / bare): {ours / bare_tps:.2f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
