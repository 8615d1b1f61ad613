"""The two providers: where their APIs live and how they authenticate. Everything else is :class:`Http`'s.

* :class:`OpenAIApi`: ``Authorization: Bearer <key>`` (no header without a key: a local server), paths under
  ``base_url`` (``.../v1``): ``/chat/completions``, ``/files``, ``/batches``, ``/fine_tuning/jobs``.
* :class:`AnthropicApi`: ``x-api-key`` and ``anthropic-version``, paths under the host: ``/v1/messages``,
  ``/v1/messages/batches``.
"""

from __future__ import annotations

import os

from .http import Http

__all__ = ["OpenAIApi", "AnthropicApi", "OPENAI_URL", "ANTHROPIC_URL", "ANTHROPIC_VERSION"]

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"


class OpenAIApi(Http):
    """OpenAI's API, or any server speaking it, at ``base_url`` (default ``$OPENAI_BASE_URL``, else OpenAI's)."""

    def __init__(self, base_url: str | None = None, key: str | None = None, **kw):
        headers = {"Accept": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        super().__init__(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL, headers, **kw)

    def upload_file(self, data: bytes, *, filename: str, purpose: str) -> str:
        """Upload a JSONL file (``purpose`` ``batch`` or ``fine-tune``); its file id."""
        return self.upload("/files", {"purpose": purpose}, filename=filename, data=data)["id"]


class AnthropicApi(Http):
    """Anthropic's API at ``base_url`` (default ``$ANTHROPIC_BASE_URL``, else Anthropic's own host)."""

    def __init__(self, base_url: str | None = None, key: str | None = None, **kw):
        headers = {"Accept": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        super().__init__(base_url or os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_URL,
                         headers | ({"x-api-key": key} if key else {}), **kw)
