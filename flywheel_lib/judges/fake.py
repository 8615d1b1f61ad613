"""A scripted fake backend, registered like any other: for tests and smoke runs, no model and no network.

It goes through the same prompt rendering, runner, parser and cache as a real LLM judge. Answers come from the
``script`` (the first rule whose regex matches the request text gives its answer: a verdict dict, or raw text to
simulate a malformed one), else ``default``: ``hash`` picks a category by a hash of the text; ``first`` is the
solvable category. ``fail_every`` raises a transient error on every n-th call, to exercise retries.

``sycophancy`` (0..1) scripts the anchoring bias: when the request carries the production system's claimed label
(:data:`flywheel_lib.monitoring.probes.ANCHOR_RE`), the judge gives that label on this share of requests (chosen by
a hash of the text); otherwise, and always when 0, it answers about the request alone, the anchor stripped (an
honest judge).

    - name: fake
      backend: fake
      params:
        script:
          - {match: "doctor|nurse", answer: {category: missing_capability, reason_key: occupation}}
          - {match: "garbage", answer: "not json at all"}
        default: hash
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Completion, LLMJudge, Request, TransientError

__all__ = ["FakeJudge"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: str
    """Regex searched in the request text (case-insensitive)."""
    answer: dict[str, Any] | str
    """The verdict to give, or raw answer text."""


class FakeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: list[Rule] = Field(default_factory=list)
    default: Literal["hash", "first"] = "hash"
    latency_s: float = 0.0
    """Simulated latency per call."""
    fail_every: int = 0
    """Every n-th call fails with a transient error (0 = never)."""
    sycophancy: float = Field(0.0, ge=0.0, le=1.0)
    """Share of anchored requests on which the judge gives the claimed label (0 = honest)."""


class FakeJudge(LLMJudge):
    Params = FakeParams

    def __init__(self, config, *, taxonomy, domain=None):
        super().__init__(config, taxonomy=taxonomy, domain=domain)
        self._rules = [(re.compile(r.match, re.I), r.answer) for r in self.params.script]
        self.calls = 0

    def answer_for(self, text: str) -> str:
        from ..monitoring.probes import ANCHOR_RE

        m = ANCHOR_RE.search(text)
        if m:
            text = text[: m.start()]
            h = int(hashlib.sha256(f"syc\0{text}".encode()).hexdigest(), 16) % 10_000
            if h < self.params.sycophancy * 10_000 and m.group(1) in self.taxonomy.ids:
                return json.dumps({"category": m.group(1), "reason_key": "fake", "rationale": "agrees with production"})
        for rx, ans in self._rules:
            if rx.search(text):
                return ans if isinstance(ans, str) else json.dumps(ans)
        ids = self.taxonomy.ids
        if self.params.default == "first":
            cat = self.taxonomy.solvable_id
        else:
            cat = ids[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(ids)]
        return json.dumps({"category": cat, "reason_key": "fake", "rationale": "scripted default"})

    async def complete(self, req: Request) -> Completion:
        self.calls += 1
        if self.params.latency_s:
            await asyncio.sleep(self.params.latency_s)
        if self.params.fail_every and self.calls % self.params.fail_every == 0:
            raise TransientError("scripted failure")
        text = self.answer_for(str(req.item.get("text", "")))
        return Completion(text=text, tokens_in=sum(len(m["content"]) for m in req.messages) // 4,
                          tokens_out=len(text) // 4)
