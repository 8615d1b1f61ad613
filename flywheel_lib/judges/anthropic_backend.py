"""Anthropic judges: structured output through a tool definition (``tool_choice`` forces the ``record_verdict``
tool, whose input schema is the verdict schema). The SDK's own retries are off; the runner retries.
The SDK is imported only here.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from .base import Completion, LLMJudge, PermanentError, Request, TransientError
from .openai_backend import error_message, retry_after_from
from .prompt import verdict_schema

__all__ = ["AnthropicJudge", "TOOL_NAME"]

TOOL_NAME = "record_verdict"


class AnthropicParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sampling: bool = False
    """Send temperature and top_p (older models take them; recent SDKs and models dropped them)."""


class AnthropicJudge(LLMJudge):
    SDK_EXTRA = "anthropic"

    def sdk_modules(self) -> list[str]:
        return ["anthropic"]
    Params = AnthropicParams
    needs_key = True
    _client = None

    def _make_client(self):
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self.api_key(), base_url=self.config.base_url, max_retries=0,
                                        timeout=self.config.options.timeout_s)

    def _kwargs(self, req: Request) -> dict:
        o = self.config.options
        system = "\n\n".join(m["content"] for m in req.messages if m["role"] == "system")
        msgs = [m for m in req.messages if m["role"] != "system"]
        kw = {"model": self.config.model, "system": system, "messages": msgs, "max_tokens": o.max_tokens,
              "tools": [{"name": TOOL_NAME, "description": "Record the verdict about the request.",
                         "input_schema": verdict_schema(self.taxonomy.ids)}],
              "tool_choice": {"type": "tool", "name": TOOL_NAME}}
        if self.params.sampling:
            extra = {"temperature": o.temperature} | ({"top_p": o.top_p} if o.top_p is not None else {})
            kw["extra_body"] = extra
        return kw

    async def complete(self, req: Request) -> Completion:
        import asyncio

        import anthropic

        loop = asyncio.get_running_loop()
        if self._client is None or getattr(self, "_loop", None) is not loop:  # a client lives in one event loop
            self._client, self._loop = self._make_client(), loop
        try:
            resp = await self._client.messages.create(**self._kwargs(req))
        except anthropic.APIStatusError as e:
            code = e.status_code
            if code == 429 or code >= 500 or code in (408, 409):
                raise TransientError(f"HTTP {code}", retry_after=retry_after_from(e.response.headers)) from None
            raise PermanentError(f"HTTP {code}: {error_message(e.response.content)}") from None
        except (anthropic.APITimeoutError, anthropic.APIConnectionError) as e:
            raise TransientError(type(e).__name__) from None
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TransientError(f"malformed response body ({type(e).__name__})") from None
        finish = "length" if resp.stop_reason == "max_tokens" else "stop"
        usage = resp.usage
        tin, tout = getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0
        for block in resp.content or []:
            if getattr(block, "type", "") == "tool_use" and finish != "length":
                inp = block.input if isinstance(block.input, dict) else {}
                return Completion(text=json.dumps(inp), parsed=inp, finish_reason=finish, tokens_in=tin, tokens_out=tout)
        text = "".join(getattr(b, "text", "") for b in resp.content or [])
        return Completion(text=text, finish_reason=finish, tokens_in=tin, tokens_out=tout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._loop = None  # nothing of the loop stays on the judge (it is pickled to Ray workers)
