"""Test support that is real, not mocked: hand-made toy items, a fault-injecting HTTP server speaking the OpenAI
and Anthropic wire formats, and a small chat-completions server on a real model. Used by tests and benchmarks."""

from .toy import toy_items, toy_seed

__all__ = ["toy_items", "toy_seed"]
