"""Anthropic judges: structured output through a tool definition (``tool_choice`` forces the ``record_verdict``
tool, whose input schema is the verdict schema).

Every call goes through :class:`~flywheel_lib.providers.AnthropicApi` (aiohttp), the client the Message Batches
API uses too (:mod:`flywheel_lib.judges.batch_providers`): ``POST /v1/messages``. Retries are the runner's.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from ..providers import AnthropicApi
from .base import APIJudge, Completion, Request, TransientError
from .prompt import verdict_schema

__all__ = ["AnthropicJudge", "TOOL_NAME", "anthropic_result"]

TOOL_NAME = "record_verdict"


class AnthropicParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sampling: bool = False
    """Send temperature and top_p (older models take them; recent models dropped them)."""


def anthropic_result(msg: dict) -> Completion:
    """A Messages API response as a :class:`Completion`: the forced tool's input, else the text."""
    finish = "length" if msg.get("stop_reason") == "max_tokens" else "stop"
    usage = msg.get("usage") or {}
    tin, tout = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    blocks = [b for b in msg.get("content") or [] if isinstance(b, dict)]
    for block in blocks:
        if block.get("type") == "tool_use" and finish != "length":
            inp = block.get("input") if isinstance(block.get("input"), dict) else {}
            return Completion(text=json.dumps(inp), parsed=inp, finish_reason=finish, tokens_in=tin, tokens_out=tout)
    text = "".join(str(b.get("text") or "") for b in blocks)
    return Completion(text=text, finish_reason=finish, tokens_in=tin, tokens_out=tout)


class AnthropicJudge(APIJudge):
    Params = AnthropicParams
    API = AnthropicApi
    SDK_EXTRA = "anthropic"

    def _kwargs(self, req: Request) -> dict:
        """The Messages API body: system prompt apart, the verdict tool forced."""
        o = self.config.options
        system = "\n\n".join(m["content"] for m in req.messages if m["role"] == "system")
        msgs = [m for m in req.messages if m["role"] != "system"]
        kw = {"model": self.config.model, "system": system, "messages": msgs, "max_tokens": o.max_tokens,
              "tools": [{"name": TOOL_NAME, "description": "Record the verdict about the request.",
                         "input_schema": verdict_schema(self.taxonomy.ids)}],
              "tool_choice": {"type": "tool", "name": TOOL_NAME}}
        if self.params.sampling:
            kw["temperature"] = o.temperature
            if o.top_p is not None:
                kw["top_p"] = o.top_p
        return kw

    async def complete(self, req: Request) -> Completion:
        content = await self.api.post_json("/v1/messages", self._kwargs(req))
        try:
            msg = json.loads(content)
            if not isinstance(msg, dict):
                raise TypeError("not an object")
            return anthropic_result(msg)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise TransientError(f"malformed response body ({type(e).__name__})") from None
