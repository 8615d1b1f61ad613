"""The model providers' HTTP APIs: one path per provider for every call the workbench makes.

Every call to OpenAI (or a server speaking its API: vLLM, Ollama, llama.cpp's server, LM Studio) goes through
:class:`OpenAIApi`, every call to Anthropic through :class:`AnthropicApi`: the judges' live verdicts, the Batch APIs,
fine-tuning jobs and the evaluation of a fine-tuned model. Both are :class:`Http` clients on aiohttp, with one
mapping of HTTP statuses to :class:`TransientError` (worth retrying) and :class:`PermanentError`, and one retry
policy (:mod:`flywheel_lib.providers.retry`).

    api = OpenAIApi(base_url="http://127.0.0.1:8000/v1", key=None)
    body = api.call_json("POST", "/chat/completions", {"model": "m", "messages": [...]})   # from sync code
    body = await api.post_json("/chat/completions", {...})                                  # from a coroutine

aiohttp comes with the ``openai`` and ``anthropic`` extras; it is imported at the first call.
"""

from .apis import ANTHROPIC_URL, OPENAI_URL, AnthropicApi, OpenAIApi
from .http import Http, PermanentError, TransientError, error_message, retry_after_from, run_coroutine

__all__ = ["ANTHROPIC_URL", "OPENAI_URL", "AnthropicApi", "Http", "OpenAIApi", "PermanentError", "TransientError",
           "error_message", "retry_after_from", "run_coroutine"]
