"""Lever 4, the training: Direct Preference Optimization of a LoRA adapter, on top of the curated SFT adapter.

The loss is DPO's (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", eq. 7)::

    L = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

with ``pi`` the adapter being trained and ``ref`` the adapter it starts from (the SFT adapter, or the bare base when
none is given). Because the policy starts equal to the reference, the reference log-probabilities are computed once
before the first step (no second model in memory), and the loss starts at log 2 = 0.693.

A small loop rather than TRL's ``DPOTrainer`` (TRL 1.16 installs beside torch 2.13): it reuses the SFT loop's
left-padded batches (:func:`flywheel_lib.training.lora.collate_left`), so logits are computed for the answer tokens
only, the dominant saving on a CPU; a chosen and a rejected answer share one forward pass::

    res = train_dpo(pairs, DPOConfig(max_steps=24), "runs/r2/artifacts/models/curated_dpo", adapter=sft_path)
    res.metrics["loss_before"], res.metrics["loss_after"]
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..training.base import TrainResult
from ..training.targets import SYSTEM_PROMPT

__all__ = ["DPOConfig", "dpo_loss", "train_dpo"]


class DPOConfig(BaseModel):
    """Options of the DPO loop (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = "smollm2-135m"
    """The base model the SFT adapter was trained on."""
    beta: float = 0.1
    """DPO's beta: how far the policy may move from the reference."""
    max_steps: int = 24
    """Optimizer steps."""
    batch_size: int = 4
    """Pairs per step (each gives a chosen and a rejected sequence)."""
    lr: float = 2e-4
    """Peak learning rate (constant after warm-up)."""
    warmup_steps: int = 2
    """Linear warm-up steps."""
    lora_r: int = 16
    """LoRA rank when no adapter is given (a fresh adapter on the base)."""
    max_len: int = 96
    """Longest sequence in tokens (prompts cut from the left)."""
    seed: int = 7
    """Seed for batch order."""
    bf16: Literal["auto", "on", "off"] = "auto"
    """bf16 autocast: auto = where the hardware has it."""
    cache_dir: str | None = None
    """Converted-model cache (default outputs/cache)."""
    threads: int = 0
    """CPU threads for torch; 0 = auto."""
    system_prompt: str = SYSTEM_PROMPT
    """The system turn of every prompt (the one the SFT adapter saw)."""
    progress: bool = True
    """Show a progress bar."""


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO loss and the implicit reward margin ``beta * (chosen logratio - rejected logratio)``."""
    import torch.nn.functional as F

    margin = beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))
    return -F.logsigmoid(margin), margin


def _seq_logps(model, examples, pad_id: int, device: str, amp):
    """Sum of the answer tokens' log-probabilities, one per example."""
    import torch

    from ..training.lora import collate_left

    b = collate_left(examples, pad_id)
    with amp():
        out = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                    position_ids=b["position_ids"].to(device), logits_to_keep=b["k"], use_cache=False)
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
    tok = logp.gather(-1, b["targets"].to(device).unsqueeze(-1)).squeeze(-1)
    return (tok * b["target_mask"].to(device).float()).sum(1)


def _pair_logps(model, chosen, rejected, pad_id, device, amp):
    lp = _seq_logps(model, chosen + rejected, pad_id, device, amp)
    return lp[: len(chosen)], lp[len(chosen):]


def train_dpo(pairs: pd.DataFrame, cfg: DPOConfig, out_dir: str | Path, *, adapter: str | None = None,
              variant: str = "curated_dpo") -> TrainResult:
    """Train DPO on ``pairs`` (``prompt, chosen, rejected``) from ``adapter``; save the new adapter in ``out_dir``.

    ``metrics`` hold ``loss_before`` / ``loss_after`` (mean DPO loss over all pairs, before the first and after the
    last step), ``reward_accuracy_after`` (share of pairs whose chosen answer the policy now prefers beyond the
    reference) and timings.
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from ..models import bf16_supported, load_base_model
    from ..progress import progress_bar
    from ..threads import set_threads
    from ..training.lora import tokenize_chats

    miss = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.columns]
    if miss:
        raise ValueError(f"preference pairs lack columns: {', '.join(miss)}")
    if not len(pairs):
        raise ValueError(f"variant {variant!r}: no preference pairs to train on")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, tok = load_base_model(cfg.base_model, cache_dir=cfg.cache_dir)
    device = str(next(model.parameters()).device)
    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and bf16_supported(device))
    amp = (lambda: torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)) \
        if use_bf16 else contextlib.nullcontext
    if adapter:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))

    def chats(col):
        return [[{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": str(p)},
                 {"role": "assistant", "content": str(a)}] for p, a in zip(pairs["prompt"], pairs[col])]

    ch = tokenize_chats(tok, chats("chosen"), max_len=cfg.max_len)
    rj = tokenize_chats(tok, chats("rejected"), max_len=cfg.max_len)
    pad = tok.pad_token_id
    n, bs = len(ch), cfg.batch_size

    def all_logps():
        model.eval()
        c, r = [], []
        with torch.no_grad():
            for s in range(0, n, bs):
                a, b = _pair_logps(model, ch[s:s + bs], rj[s:s + bs], pad, device, amp)
                c.append(a), r.append(b)
        model.train()
        return torch.cat(c), torch.cat(r)

    ref_c, ref_r = all_logps()
    loss0, _ = dpo_loss(ref_c, ref_r, ref_c, ref_r, cfg.beta)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (cfg.warmup_steps + 1)))
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    rows, t0 = [], time.perf_counter()
    model.train()
    bar = progress_bar(total=cfg.max_steps, desc=f"dpo {variant}", disable=not cfg.progress)
    for step in range(cfg.max_steps):
        if len(order) < bs:
            order += rng.permutation(n).tolist()
        idx, order = order[:bs], order[bs:]
        pc, pr = _pair_logps(model, [ch[i] for i in idx], [rj[i] for i in idx], pad, device, amp)
        loss, margin = dpo_loss(pc, pr, ref_c[idx], ref_r[idx], cfg.beta)
        loss = loss.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rows.append({"variant": variant, "step": step + 1, "loss": float(loss.detach()),
                     "margin": float(margin.detach().mean()), "seconds": round(time.perf_counter() - t0, 3)})
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}")
    bar.close()
    train_s = time.perf_counter() - t0
    pc, pr = all_logps()
    loss1, margin1 = dpo_loss(pc, pr, ref_c, ref_r, cfg.beta)
    model.save_pretrained(out_dir)
    from ..training.head import DecisionHead

    if adapter and DecisionHead.exists(adapter):  # DPO trains the decoder; the decision stays the SFT model's head
        DecisionHead.copy(adapter, out_dir)
    log = pd.DataFrame(rows)
    log.to_csv(out_dir / "train_log.csv", index=False)
    (out_dir / "train_config.json").write_text(json.dumps({**cfg.model_dump(), "adapter": adapter}, indent=2))
    metrics = {"steps": cfg.max_steps, "n_pairs": n, "seconds": round(train_s, 2),
               "seconds_per_step": round(train_s / max(cfg.max_steps, 1), 3), "threads": threads, "bf16": use_bf16,
               "loss_before": float(loss0.mean()), "loss_after": float(loss1.mean()),
               "reward_accuracy_after": float((margin1 > 0).float().mean()), "start_adapter": adapter}
    return TrainResult(variant, "local-dpo", str(out_dir), cfg.base_model, log, metrics)
