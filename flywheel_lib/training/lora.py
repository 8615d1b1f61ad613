"""The ``local-lora`` backend: LoRA fine-tuning with transformers + peft on CPU or GPU.

The loop is deliberately small, and faster than a stock loop on a CPU for one reason: batches are *left*-padded, so
every answer ends at the last position, and the model computes logits only for the last ``max answer length + 1``
positions (``logits_to_keep``). The loss covers the answer tokens only, which is what we want anyway, and the
vocabulary projection (the largest matmul of a 135M model at 49k vocabulary) shrinks by the prompt's share.
``benchmarks/bench_training.py`` compares it with a bare peft loop.

Other choices: eager attention on a CPU (:attr:`LoRAConfig.attention`), bf16 autocast where the hardware has it
(:func:`flywheel_lib.models.bf16_supported`), AdamW with linear warm-up and decay, gradient clipping at 1.0,
length-grouped random batches (seeded; the first pass in a stable order of the examples,
:func:`~flywheel_lib.training.datasets.stable_order`), validation loss on a fixed slice before and after. The
run folder gets the adapter (``adapter_model.safetensors``, ``adapter_config.json``), ``train_log.csv`` and
``train_config.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..paths import atomic_dir
from .base import TrainResult
from .datasets import stable_order

__all__ = ["LORA_TARGETS", "lr_factor", "LoRAConfig", "LocalLoRABackend", "tokenize_chats", "collate_left",
           "answer_loss", "train_lora"]


LORA_TARGETS = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all-linear": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
"""Presets for ``target_modules`` (Llama-style module names: SmolLM2, Gemma 3)."""


def lr_factor(step: int, *, max_steps: int, warmup: int, schedule: str = "linear") -> float:
    """The multiplier of the peak learning rate at ``step`` (0-based): linear warm-up, then the schedule.

    >>> [round(lr_factor(s, max_steps=10, warmup=1, schedule="cosine"), 3) for s in (0, 1, 5, 9)]
    [0.5, 1.0, 0.587, 0.03]
    """
    import math

    if step < warmup:
        return (step + 1) / (warmup + 1)
    frac = (step - warmup) / max(max_steps - warmup, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    if schedule == "linear":
        return max(0.0, 1 - frac)
    raise ValueError(f"lr_schedule must be linear, cosine or constant, got {schedule!r}")


class LoRAConfig(BaseModel):
    """Options of the local-lora backend (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = "smollm2-135m"
    """A built-in model name (see :mod:`flywheel_lib.models`) or a Hugging Face model folder."""
    max_steps: int = 60
    """Optimizer steps."""
    batch_size: int = 8
    """Examples per step."""
    lr: float = 1e-3
    """Peak learning rate (LoRA tolerates high rates; 1e-3 learns the format within ~30 steps at 135M)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int | None = None
    """LoRA alpha; None means 2 * lora_r."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Modules that get adapters: names, or one of the presets of :data:`LORA_TARGETS` (``attention``,
    ``all-linear``)."""
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    """After warm-up: linear decay to 0, cosine decay to 0, or constant."""
    max_len: int = 96
    """Longest example in tokens; longer prompts are cut from the left, the answer is kept."""
    seed: int = 7
    """Seed for adapter init, batch order and dropout."""
    bf16: Literal["auto", "on", "off"] = "auto"
    """bf16 autocast: auto = where the hardware has it."""
    attention: Literal["auto", "eager", "sdpa"] = "auto"
    """The attention kernel while training: auto = ``eager`` on a CPU, ``sdpa`` on a GPU. On a CPU the fused
    ``sdpa`` kernel's backward is slow for these short sequences (~70 tokens), so eager attention trains the demo's
    recipe faster a step with the same losses (``benchmarks/bench_training.py --attention`` prints the figures). Generation keeps ``sdpa``, which is faster there (one new token a
    step, a growing KV cache)."""
    warmup_steps: int = 5
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    per_example_loss: bool = False
    """Average the loss per example first (a short query weighs as much as a long refusal); else per token."""
    val_batches: int = 4
    """Validation batches scored before and after training (0 = skip)."""
    init_adapter: str | None = None
    """A saved LoRA adapter folder to continue training from (its rank and target modules win over ``lora_r`` and
    ``target_modules``); None starts a fresh adapter."""
    cache_dir: str | None = None
    """Converted-model cache (default outputs/cache)."""
    device: str | None = None
    """cpu or cuda; None = cuda when available."""
    threads: int = 0
    """CPU threads for torch; 0 = auto (one per core idle when training starts)."""
    progress: bool = True
    """Show a progress bar."""


def tokenize_chats(tok, chats: list[list[dict]], *, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) per chat, with the answer the text the template puts after the prompt."""
    chats = [[dict(m) for m in c] for c in chats]
    prompts = [tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True) for c in chats]
    fulls = [tok.apply_chat_template(c, tokenize=False) for c in chats]
    answers = []
    for i, (p, f) in enumerate(zip(prompts, fulls)):
        if not f.startswith(p):
            raise ValueError(f"chat {i}: the template's full text does not start with its generation prompt")
        answers.append(f[len(p):])
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    a_ids = tok(answers, add_special_tokens=False)["input_ids"]
    out = []
    for p, a in zip(p_ids, a_ids):
        a = a[: max(max_len - 16, 1)]
        p = p[-(max_len - len(a)):] if len(p) + len(a) > max_len else p
        out.append((list(p), list(a)))
    return out


def collate_left(examples: list[tuple[list[int], list[int]]], pad_id: int):
    """Left-padded batch: input_ids, attention_mask, position_ids, targets (last k-1 tokens) and their mask, k."""
    import torch

    lens = [len(p) + len(a) for p, a in examples]
    L = max(lens)
    k = max(len(a) for _, a in examples) + 1
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), L), dtype=torch.long)
    tmask = torch.zeros((len(examples), k - 1), dtype=torch.bool)
    for i, (p, a) in enumerate(examples):
        seq = p + a
        ids[i, L - len(seq):] = torch.tensor(seq)
        mask[i, L - len(seq):] = 1
        tmask[i, k - 1 - len(a):] = True
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "targets": ids[:, L - k + 1:],
            "target_mask": tmask, "k": k, "tokens": int(mask.sum())}


def answer_loss(model, batch: dict, device: str = "cpu", per_example: bool = False):
    """Cross-entropy over the answer tokens, computing logits only where they are needed.

    ``per_example`` averages each example's tokens first, then the examples, so a short query weighs as much as a
    long refusal sentence; otherwise every answer token weighs the same.
    """
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                position_ids=batch["position_ids"].to(device), logits_to_keep=batch["k"], use_cache=False)
    logits = out.logits[:, :-1].float()
    tm = batch["target_mask"].to(device)
    tok_loss = F.cross_entropy(logits.transpose(1, 2), batch["targets"].to(device), reduction="none")
    if not per_example:
        return tok_loss[tm].mean()
    tmf = tm.float()
    return ((tok_loss * tmf).sum(1) / tmf.sum(1).clamp(min=1)).mean()


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 16,
             first: np.ndarray | None = None):
    """Endless length-grouped random batches of indices: shuffle, sort within chunks of group*batch, shuffle batches.

    ``first`` (a permutation of the indices) replaces the first pass's shuffle: :func:`train_lora` passes a stable
    order of the examples' tokens, so a training set that differs by a few rows from another one (the next cycle's)
    is cut into nearly the same batches, and its model differs by the data, not by a reshuffle."""
    n = len(lengths)
    if first is not None and sorted(first.tolist()) != list(range(n)):
        raise ValueError(f"_batches: first must be a permutation of 0..{n - 1}")
    passes = 0
    while True:
        perm = first if passes == 0 and first is not None else rng.permutation(n)
        passes += 1
        chunk = batch_size * group
        batches = []
        for s in range(0, n, chunk):
            part = perm[s:s + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
        for b in rng.permutation(len(batches)):
            yield batches[b]


def _val_loss(model, examples, cfg: LoRAConfig, pad_id: int, device: str, amp) -> float | None:
    import torch

    if not examples or cfg.val_batches <= 0:
        return None
    ex = sorted(examples, key=lambda e: len(e[0]) + len(e[1]))[: cfg.val_batches * cfg.batch_size]
    tot, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(ex), cfg.batch_size):
            b = collate_left(ex[s:s + cfg.batch_size], pad_id)
            with amp():
                loss = answer_loss(model, b, device, per_example=False)
            w = int(b["target_mask"].sum())
            tot, n = tot + float(loss) * w, n + w
    model.train()
    return tot / max(n, 1)


def train_lora(train_chats, val_chats, cfg: LoRAConfig, out_dir: str | Path, *, variant: str = "") -> TrainResult:
    """Fine-tune ``cfg.base_model`` with LoRA on chat examples; save adapter, log and config into ``out_dir``."""
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model

    from ..models import bf16_supported, load_base_model
    from ..progress import progress_bar
    from ..threads import set_threads

    out_dir = Path(out_dir)  # written only once trained, all at once (atomic_dir): never a half-written folder
    threads = set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, tok = load_base_model(cfg.base_model, cache_dir=cfg.cache_dir, device=cfg.device)
    device = str(next(model.parameters()).device)
    attention = cfg.attention if cfg.attention != "auto" else ("sdpa" if device.startswith("cuda") else "eager")
    model.set_attn_implementation(attention)
    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and bf16_supported(device))
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    amp = (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    train = tokenize_chats(tok, list(train_chats), max_len=cfg.max_len)
    val = tokenize_chats(tok, list(val_chats), max_len=cfg.max_len) if len(val_chats) else []
    if not train:
        raise ValueError(f"variant {variant!r}: no training examples")
    targets = list(cfg.target_modules)
    if len(targets) == 1 and targets[0] in LORA_TARGETS:
        targets = list(LORA_TARGETS[targets[0]])
    if cfg.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r,
                                                 lora_dropout=cfg.lora_dropout, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(cfg.warmup_steps, 0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, max_steps=cfg.max_steps, warmup=warm, schedule=cfg.lr_schedule))
    pad_id = tok.pad_token_id
    val_before = _val_loss(model, val, cfg, pad_id, device, amp)
    rng = np.random.default_rng(cfg.seed)
    first = stable_order([" ".join(map(str, [*p, -1, *a])) for p, a in train], seed=cfg.seed, salt="batches")
    batches = _batches(np.array([len(p) + len(a) for p, a in train]), cfg.batch_size, rng, first=first)
    rows, tokens, t0 = [], 0, time.perf_counter()
    model.train()
    bar = progress_bar(range(cfg.max_steps), desc=f"train {variant}", disable=not cfg.progress, mininterval=10)
    for step in bar:
        b = collate_left([train[i] for i in next(batches)], pad_id)
        with amp():
            loss = answer_loss(model, b, device, cfg.per_example_loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += b["tokens"]
        el = time.perf_counter() - t0
        rows.append({"variant": variant, "step": step + 1, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0],
                     "tokens": tokens, "seconds": round(el, 3)})
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}")
    train_s = time.perf_counter() - t0
    val_after = _val_loss(model, val, cfg, pad_id, device, amp)
    log = pd.DataFrame(rows)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        log.to_csv(tmp / "train_log.csv", index=False)
        (tmp / "train_config.json").write_text(json.dumps(cfg.model_dump(), indent=2, default=str))
    metrics = {"steps": cfg.max_steps, "n_train": len(train), "n_validation": len(val), "seconds": round(train_s, 2),
               "tokens_per_s": round(tokens / max(train_s, 1e-9), 1), "bf16": use_bf16, "device": device,
               "attention": attention,
               "threads": threads, "trainable_params": int(sum(p.numel() for p in params)),
               "n_distinct_train": len({(tuple(p), tuple(a)) for p, a in train}),
               "loss_first": rows[0]["loss"], "loss_last": float(log["loss"].tail(5).mean()),
               "val_loss_before": val_before, "val_loss_after": val_after}
    del model, opt
    return TrainResult(variant, "local-lora", str(out_dir), cfg.base_model, log, metrics)


class LocalLoRABackend:
    """``local-lora``: transformers + peft, CPU or GPU. Options are :class:`LoRAConfig` fields."""

    name = "local-lora"

    def __init__(self, **options):
        self.config = LoRAConfig(**options)

    def train(self, dataset, *, out_dir: str | Path) -> TrainResult:
        """Train on a BuiltDataset (its ``messages`` column) and return the adapter folder and curve."""
        return train_lora(list(dataset.train["messages"]), list(dataset.validation["messages"]), self.config,
                          out_dir, variant=dataset.variant)
