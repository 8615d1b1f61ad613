"""Batched greedy generation for every fine-tuned variant, and scoring of the answers by execution.

One base model is loaded once; each variant's LoRA adapter is attached under its own name and switched on in turn;
the untuned base (``variant="base"``) runs with adapters disabled, as the floor. Prompts are sorted by length and
left-padded in batches; bf16 autocast where the hardware has it::

    gen = VariantGenerator("smollm2-135m", {"curated": "runs/r1/models/curated"})
    texts = gen.generate(eval_items["text"].tolist(), variant="curated")
    preds = score_predictions(eval_items, texts, variant="curated", domain=dom, refusal_ids=tax.refusal_ids)

An adapter folder that holds a decision head (:class:`~flywheel_lib.training.head.DecisionHead`, written by
``04_finetune`` with ``decision_head: minilm``) makes that variant a two-part skill model: the head decides
(refuse with a category, or write a query), the adapted decoder writes the query (under the query-only grammar
when decoding is constrained) or the refusal's sentence after a forced ``REFUSE <category>:``.
``generate(..., decide=False)`` lets the decoder decide alone, to measure what the head adds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..training.targets import REFUSE, SYSTEM_PROMPT, parse_answer
from .memo import GenerationMemo, adapter_digest

__all__ = ["BASE_VARIANT", "VariantGenerator", "score_predictions", "select_eval_items", "openai_generate"]

BASE_VARIANT = "base"
"""The name of the untuned base model in predictions and metrics."""


class VariantGenerator:
    """A base model with several LoRA adapters, generating answers for any of them (or for the bare base)."""

    def __init__(self, base_model: str, adapters: dict[str, str], *, cache_dir: str | None = None,
                 device: str | None = None, bf16: str = "auto", threads: int = 0, grammar: str | None = None,
                 heads: bool = True, execute: Callable[[str], Any] | None = None,
                 zero_result_floor: float | None = None, memo: GenerationMemo | None = None):
        if zero_result_floor is not None:
            if execute is None:
                raise ValueError("zero_result_floor needs execute (the domain's query executor)")
            if not 0.0 <= float(zero_result_floor) <= 1.0:
                raise ValueError(f"zero_result_floor must be in [0, 1], got {zero_result_floor}")
        import torch

        from ..models import bf16_supported, load_base_model
        from ..threads import set_threads
        from ..training.head import DecisionHead

        self.threads_ = set_threads(threads)
        self.memo_ = memo
        """Answers already decoded (:class:`~flywheel_lib.evaluation.memo.GenerationMemo`): a prompt the same adapter
        decoded before under the same grammar and token budget is answered from it, not decoded again."""
        self._paths = dict(adapters)
        self._base_name = base_model
        self._digests: dict[str, str] = {}
        self.model, self.tok = load_base_model(base_model, cache_dir=cache_dir, device=device)
        self.device = str(next(self.model.parameters()).device)
        self.variants = list(adapters)
        self.heads_ = {v: DecisionHead.load(path) for v, path in adapters.items()
                       if heads and DecisionHead.exists(path)}
        """Variants whose adapter folder holds a decision head, with the head."""
        self.decisions_: dict[str, list[str]] = {}
        """The head's label per text of the last ``generate`` call of each variant that used its head."""
        self.execute_ = execute
        self.zero_result_floor_ = None if zero_result_floor is None else float(zero_result_floor)
        """The zero-result guard: a query the head let through that runs and selects nobody becomes a refusal when
        the head gives a refusal at least this probability (None: off). The seed's silent failure, an impossible
        request answered with an empty segment, turned into the refusal it should have been."""
        self.guarded_: dict[str, dict[int, str]] = {}
        """Per variant, the last ``generate`` call's guarded answers: text index -> the query the guard replaced."""
        self._query_decoder = None
        if adapters:
            from peft import PeftModel

            first, *rest = adapters.items()
            self.model = PeftModel.from_pretrained(self.model, first[1], adapter_name=first[0])
            for name, path in rest:
                self.model.load_adapter(path, adapter_name=name)
            self.model.eval()
        use = bf16 == "on" or (bf16 == "auto" and bf16_supported(self.device))
        dev = "cuda" if self.device.startswith("cuda") else "cpu"
        self._amp = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if use else contextlib.nullcontext
        self.bf16_ = use
        self.decoder_ = None
        """The compiled answer grammar (:class:`~flywheel_lib.evaluation.constrained.ConstrainedDecoder`), if any."""
        if grammar:
            from .constrained import ConstrainedDecoder

            self.decoder_ = ConstrainedDecoder(self.tok, grammar, vocab_size=self.model.config.vocab_size)

    @property
    def dead_ends_(self) -> list[str]:
        """Every answer that reached a grammar state allowing no token (each ended there, an invalid answer; the
        batch went on): what the decoder had written, and why."""
        decs = [d for d in (self.decoder_, self._query_decoder) if d is not None]
        return [e for d in decs for e in d.dead_ends_]

    @contextlib.contextmanager
    def _adapter(self, variant: str):
        """Switch ``variant`` on, merged into the base weights while it generates (unmerged after).

        A merged adapter costs nothing per token; left as a side branch it adds ~120 small matmuls to every decode
        step, ~15% of the time on a CPU.
        """
        if variant == BASE_VARIANT:
            with (self.model.disable_adapter() if self.variants else contextlib.nullcontext()):
                yield
            return
        if variant not in self.variants:
            raise KeyError(f"no adapter for variant {variant!r}; loaded: {', '.join(self.variants) or 'none'}")
        self.model.set_adapter(variant)
        self.model.merge_adapter()
        try:
            yield
        finally:
            self.model.unmerge_adapter()

    def generate(self, texts: list[str], *, variant: str, batch_size: int = 32, max_new_tokens: int = 48,
                 system_prompt: str = SYSTEM_PROMPT, progress: bool = True,
                 constrained: bool | None = None, decide: bool | None = None,
                 refusal_tokens: int = 32, head_texts: list[str] | None = None) -> list[str]:
        """Greedy answers for ``texts`` (in order) from ``variant``'s adapter, or the bare base for ``"base"``.

        ``constrained`` (default: whenever the generator was built with a ``grammar``) masks every decoding step to
        the answer grammar, so each answer is a valid query or a refusal line. ``decide`` (default: whenever the
        variant has a decision head) lets the head decide and the decoder write; ``False``: the decoder alone.
        A refusal's sentence is at most ``refusal_tokens`` tokens after the forced ``REFUSE <category>:``.
        ``head_texts``: what the head reads, when the decoder's texts are more than the request (retrieved examples
        prepended: the head decides on the request alone). With the head deciding and the generator built with a
        ``zero_result_floor``, a query that selects nobody is turned into a refusal (see ``guarded_``).
        """
        use_grammar = self.decoder_ is not None if constrained is None else bool(constrained)
        if use_grammar and self.decoder_ is None:
            raise ValueError("constrained decoding asked for, but this VariantGenerator was built without a grammar")
        head = self.heads_.get(variant) if decide is not False else None
        if decide and head is None:
            raise ValueError(f"decide=True, but variant {variant!r} has no decision head "
                             f"(heads: {', '.join(self.heads_) or 'none'})")
        prompts = [self.tok.apply_chat_template([{"role": "system", "content": system_prompt},
                                                 {"role": "user", "content": str(t)}],
                                                tokenize=False, add_generation_prompt=True) for t in texts]
        self.guarded_[variant] = {}
        if head is None:
            return self._decode(prompts, variant, batch_size, max_new_tokens,
                                self.decoder_ if use_grammar else None, progress)
        if head_texts is not None and len(head_texts) != len(texts):
            raise ValueError(f"head_texts: {len(head_texts)} texts for {len(texts)} prompts")
        labels, p_refuse, best = head.decide(texts if head_texts is None else head_texts)
        out: list[str] = [""] * len(texts)
        solv = [i for i, y in enumerate(labels) if y == head.solvable_id_]
        if use_grammar and self._query_decoder is None:
            from .constrained import ConstrainedDecoder, query_grammar

            self._query_decoder = ConstrainedDecoder(self.tok, query_grammar(self.decoder_.grammar),
                                                     vocab_size=self.model.config.vocab_size)
        for i, a in zip(solv, self._decode([prompts[i] for i in solv], variant, batch_size, max_new_tokens,
                                           self._query_decoder if use_grammar else None, progress)):
            out[i] = a
        guarded = self._zero_result_guard(out, solv, p_refuse, best, head.solvable_id_)
        for i in guarded:
            labels[i] = best[i]
        self.guarded_[variant] = {i: out[i] for i in guarded}
        self.decisions_[variant] = labels
        ref = [i for i, y in enumerate(labels) if y != head.solvable_id_]
        lead = [f"{REFUSE} {labels[i]}:" for i in ref]
        said = self._decode([prompts[i] + p for i, p in zip(ref, lead)], variant, batch_size,
                            min(refusal_tokens, max_new_tokens), None, progress, desc=f"generate {variant} refusals")
        for i, p, a in zip(ref, lead, said):
            line = a.strip().splitlines()[0].strip() if a.strip() else ""
            out[i] = f"{p} {line}".strip()
        return out

    def _zero_result_guard(self, out: list[str], solv: list[int], p_refuse, best: list[str],
                           solvable_id: str) -> list[int]:
        """Indices among ``solv`` whose query runs, selects nobody, and whose request the head gives a refusal at
        least ``zero_result_floor`` probability (an answer that does not run is left to the scorer)."""
        if self.zero_result_floor_ is None:
            return []
        hit = []
        for i in solv:
            if p_refuse[i] < self.zero_result_floor_ or best[i] == solvable_id or not out[i]:
                continue
            try:
                got = self.execute_(out[i])
            except Exception:  # noqa: BLE001 - not a query that runs: nothing to guard
                continue
            if got is not None and len(got) == 0:
                hit.append(i)
        return hit

    def unguarded(self, variant: str, answers: list[str]) -> list[str]:
        """``answers`` (the last ``generate`` output of ``variant``) with the zero-result guard undone: each guarded
        refusal back to the empty-result query it replaced, so the guard's effect is scored without decoding twice."""
        back = list(answers)
        for i, q in self.guarded_.get(variant, {}).items():
            back[i] = q
        return back

    def _digest(self, variant: str) -> str:
        if variant != BASE_VARIANT and variant not in self._paths:
            raise KeyError(f"no adapter for variant {variant!r}; loaded: {', '.join(self.variants) or 'none'}")
        if variant not in self._digests:
            self._digests[variant] = adapter_digest(
                self._base_name, None if variant == BASE_VARIANT else self._paths[variant])
        return self._digests[variant]

    def _decode(self, prompts: list[str], variant: str, batch_size: int, max_new_tokens: int, decoder,
                progress: bool, desc: str | None = None) -> list[str]:
        """Greedy continuations of ready-made prompts, in order, under ``decoder``'s grammar if one is given; with a
        memo, only the prompts it does not hold are decoded."""
        if self.memo_ is None or not prompts:
            return self._decode_all(prompts, variant, batch_size, max_new_tokens, decoder, progress, desc)
        key = self._digest(variant)
        mode = GenerationMemo.mode(decoder.grammar if decoder is not None else None, max_new_tokens)
        found, todo = self.memo_.lookup(key, mode, prompts)
        fresh = self._decode_all([prompts[i] for i in todo], variant, batch_size, max_new_tokens, decoder, progress,
                                 desc)
        self.memo_.keep(key, mode, [prompts[i] for i in todo], fresh)
        found.update(zip(todo, fresh))
        return [found[i] for i in range(len(prompts))]

    def _decode_all(self, prompts: list[str], variant: str, batch_size: int, max_new_tokens: int, decoder,
                    progress: bool, desc: str | None = None) -> list[str]:
        import torch

        from ..progress import progress_bar

        if not prompts:
            return []
        enc = self.tok(prompts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
        out: list[str] = [""] * len(enc)
        pad = self.tok.pad_token_id
        procs = (lambda: [decoder.processor(max_new_tokens)]) if decoder is not None else (lambda: None)
        with self._adapter(variant), torch.no_grad():
            bar = progress_bar(total=len(order), desc=desc or f"generate {variant}", disable=not progress,
                               mininterval=10)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                batch = self.tok.pad({"input_ids": [enc[i] for i in idx]}, padding=True, return_tensors="pt")
                L = batch["input_ids"].shape[1]  # the tokenizer pads on the left (models.load_base_model)
                with self._amp():
                    gen = self.model.generate(input_ids=batch["input_ids"].to(self.device),
                                              attention_mask=batch["attention_mask"].to(self.device),
                                              max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                              eos_token_id=self.tok.eos_token_id,
                                              logits_processor=procs())
                for r, i in enumerate(idx):
                    out[i] = self.tok.decode(gen[r, L:], skip_special_tokens=True).strip()
                bar.update(len(idx))
            bar.close()
        return out


def select_eval_items(items: pd.DataFrame, *, limit: int = 0, seed: int = 7) -> pd.DataFrame:
    """The held-out eval rows (``source == "eval"``); ``limit > 0`` takes a seeded sample stratified by label."""
    ev = items[items["source"] == "eval"].reset_index(drop=True)
    if ev.empty:
        raise ValueError("items has no rows with source == 'eval': 00_data must write a held-out eval set")
    if 0 < limit < len(ev):
        frac = limit / len(ev)
        parts = [g.sample(max(1, int(round(frac * len(g)))), random_state=seed) for _, g in ev.groupby("label")]
        ev = pd.concat(parts).sort_index().reset_index(drop=True)
    return ev


def openai_generate(model_id: str, texts: list[str], *, base_url: str | None = None,
                    api_key_env: str = "OPENAI_API_KEY", system_prompt: str = SYSTEM_PROMPT,
                    max_tokens: int = 64, progress: bool = True, concurrency: int = 8) -> list[str]:
    """Answers from a fine-tuned model behind the OpenAI chat-completions API (greedy: temperature 0), in the order
    of ``texts``: ``concurrency`` calls at a time through :class:`~flywheel_lib.providers.OpenAIApi`, each retried on
    429, 5xx and dropped connections."""
    import asyncio
    import json
    import os

    from ..progress import progress_bar
    from ..providers import OpenAIApi, run_coroutine
    from ..providers.retry import RetryLimits, async_retrying

    key = os.environ.get(api_key_env)
    if not key and not base_url:
        raise RuntimeError(f"set {api_key_env} to evaluate an OpenAI fine-tuned model")
    limits = RetryLimits(max_retries=3)
    api = OpenAIApi(base_url, key, connections=concurrency, limits=limits)
    bar = progress_bar(total=len(texts), desc=f"generate {model_id}", disable=not progress)

    async def one(t: str, gate: asyncio.Semaphore) -> str:
        body = {"model": model_id, "temperature": 0, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": str(t)}]}
        async with gate:
            async for attempt in async_retrying(limits):
                with attempt:
                    content = await api.post_json("/chat/completions", body)
        bar.update(1)
        return (json.loads(content)["choices"][0]["message"].get("content") or "").strip()

    async def main() -> list[str]:
        gate = asyncio.Semaphore(concurrency)
        try:
            return list(await asyncio.gather(*(one(t, gate) for t in texts)))
        finally:
            await api.aclose()

    try:
        return run_coroutine(main())
    finally:
        bar.close()


def _execute(domain, q: str) -> frozenset | None:
    try:
        return domain.execute(q)
    except Exception:  # noqa: BLE001 - DomainError or anything the executor raises: the output does not execute
        return None


def score_predictions(items: pd.DataFrame, texts: list[str], *, variant: str, domain: Any,
                      refusal_ids: list[str] | tuple[str, ...] | None = None, solvable_id: str = "solvable",
                      gold_cache: dict | None = None) -> pd.DataFrame:
    """Predictions rows for one variant: parse each answer, check and execute it, compare with the gold query.

    ``items`` needs ``item_id, label, output``. A solvable item passes when the answer is a valid query selecting the
    same customers as the gold query; a non-solvable item passes when the answer refuses with the gold category.
    Extra columns: ``label`` (gold), ``text`` (raw answer), ``n_selected`` (customers the answer selects, if it ran).
    """
    if len(items) != len(texts):
        raise ValueError(f"{len(items)} items but {len(texts)} answers for variant {variant!r}")
    gold_cache = {} if gold_cache is None else gold_cache
    same = getattr(domain, "same_result", None) if domain is not None else None
    rows = []
    for it, text in zip(items.itertuples(index=False), texts):
        ans = parse_answer(text, refusal_ids)
        valid = executed = passed = False
        n_sel = None
        if not ans.refused and ans.output and domain is not None:
            valid = bool(domain.check_output(ans.output).valid)
            got = _execute(domain, ans.output) if valid else None
            executed = got is not None
            n_sel = len(got) if executed else None
            if executed and it.label == solvable_id and isinstance(it.output, str) and it.output:
                if same is not None:
                    try:
                        passed = bool(same(ans.output, it.output))
                    except Exception:  # noqa: BLE001 - an answer the executor rejects is a fail
                        passed = False
                else:
                    if it.item_id not in gold_cache:
                        gold_cache[it.item_id] = _execute(domain, it.output)
                    passed = gold_cache[it.item_id] is not None and got == gold_cache[it.item_id]
        elif ans.refused and it.label != solvable_id:
            passed = ans.refusal_category == it.label
        rows.append({"item_id": it.item_id, "variant": variant, "output": ans.output, "valid": valid,
                     "executed": executed, "passed": passed, "refused": ans.refused,
                     "refusal_category": ans.refusal_category, "label": it.label, "text": text,
                     "n_selected": n_sel})
    return pd.DataFrame(rows)

