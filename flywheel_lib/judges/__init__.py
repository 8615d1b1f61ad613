"""Judge panels: a small Protocol, a registry of backends, a verdict cache and an async runner.

    from flywheel_lib.judges import load_panel
    panel = load_panel("params/judges/offline.yaml", taxonomy=tax, domain=dom)
    panel.fit(fewshot_items)
    verdicts = panel.judge(items, cache_dir="outputs/cache", progress=True)
    panel.names; panel.without(["rules"]); panel.stats_

Backends (``backend:`` in a panel file): ``openai``, ``anthropic``, ``openai-compatible``, ``local`` (a small
LLM in-process), ``knn``, ``linear``, ``rules`` (offline, no LLM) and ``fake`` (scripted, for tests and smoke
runs). Each backend module imports its client library (aiohttp, torch) inside itself.
"""

from .base import (
    BACKENDS,
    Completion,
    Judge,
    LLMJudge,
    OfflineJudge,
    PermanentError,
    Request,
    TransientError,
    make_judge,
    register_backend,
)
from .cache import VerdictCache
from .config import JudgeConfig, PanelConfig, PanelError, read_panel_config
from .failfast import JudgeFailureError
from .panel import Panel, load_panel
from .prompt import ParseError, canonical_reason, parse_verdict, render_messages, verdict_schema

__all__ = [
    "BACKENDS", "Completion", "Judge", "JudgeConfig", "JudgeFailureError", "LLMJudge", "OfflineJudge", "Panel", "PanelConfig",
    "PanelError", "ParseError", "PermanentError", "Request", "TransientError", "VerdictCache", "canonical_reason",
    "load_panel", "make_judge", "parse_verdict", "read_panel_config", "register_backend", "render_messages",
    "verdict_schema",
]
