"""OpenAI judges: the ``openai`` backend and ``openai-compatible`` (the same API at any base URL: vLLM, Ollama,
llama.cpp's server, LM Studio).

Structured output through a JSON schema (``response_format={"type": "json_schema", ...}``); servers without it
can use ``params: {response_format: json_object}`` or ``none`` (the parser still reads the JSON from the text).

Every call goes through :class:`~flywheel_lib.providers.OpenAIApi` (aiohttp), the same client the Batch API
(:mod:`flywheel_lib.judges.batch_providers`), fine-tuning (:mod:`flywheel_lib.training.openai_ft`) and generation
use: one POST per verdict to ``<base_url>/chat/completions``. The openai SDK is not used: at 32 concurrent calls it
spends ~1.3 ms of CPU per call on its own request machinery and httpx, aiohttp ~0.3 ms, which on a 2-core machine
is the difference between 0.88 and 0.95 of the ideal throughput (``benchmarks/bench_judges.py``). Retries are the
runner's, so every retry is counted and honours Retry-After. The key travels in the Authorization header only.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ..providers import OpenAIApi
from .base import APIJudge, Completion, PermanentError, Request, TransientError
from .prompt import verdict_schema

__all__ = ["OpenAIJudge", "OpenAICompatibleJudge", "openai_result"]


class OpenAIParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    """How the verdict's shape is enforced by the server."""

    @model_validator(mode="before")
    @classmethod
    def _no_transport(cls, data):
        if isinstance(data, dict) and "transport" in data:
            raise ValueError("params.transport is gone: every call goes through one HTTP client (aiohttp); "
                             "delete the key")
        return data


def openai_result(body: dict) -> Completion:
    """A chat-completion body as a :class:`Completion` (a refusal raises :class:`PermanentError`)."""
    ch = body["choices"][0]
    msg = ch.get("message") or {}
    if msg.get("refusal"):
        raise PermanentError(f"model refused: {str(msg['refusal'])[:200]}")
    usage = body.get("usage") or {}
    return Completion(text=msg.get("content") or "", finish_reason=ch.get("finish_reason") or "stop",
                      tokens_in=int(usage.get("prompt_tokens") or 0), tokens_out=int(usage.get("completion_tokens") or 0))


class OpenAIJudge(APIJudge):
    Params = OpenAIParams
    API = OpenAIApi
    SDK_EXTRA = "openai"

    def _kwargs(self, req: Request) -> dict:
        o = self.config.options
        kw = {"model": self.config.model, "messages": req.messages, "temperature": o.temperature,
              "max_tokens": o.max_tokens}
        if o.top_p is not None:
            kw["top_p"] = o.top_p
        if o.seed is not None:
            kw["seed"] = o.seed
        rf = self.params.response_format
        if rf == "json_schema":
            kw["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "verdict", "strict": True, "schema": verdict_schema(self.taxonomy.ids)}}
        elif rf == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    async def complete(self, req: Request) -> Completion:
        content = await self.api.post_json("/chat/completions", self._kwargs(req))
        try:
            return openai_result(json.loads(content))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise TransientError(f"malformed response body ({type(e).__name__})") from None


class OpenAICompatibleJudge(OpenAIJudge):
    """Any server speaking the OpenAI chat-completions API; ``base_url`` is required, a key only if it wants one."""

    needs_key = False

    def __init__(self, config, *, taxonomy, domain=None):
        super().__init__(config, taxonomy=taxonomy, domain=domain)
        if not config.base_url:
            from .config import PanelError

            raise PanelError(f"judge {config.name!r} (openai-compatible) needs base_url, e.g. http://127.0.0.1:8000/v1")
