"""The judge Protocol, the two judge families and the backend registry.

A judge turns items into :class:`~flywheel_lib.records.Verdict` records. Two families share the Protocol:

* **offline** judges (``knn``, ``linear``, ``rules``) fit on the seed's few-shot pool and judge a whole batch in
  one vectorised call (:meth:`OfflineJudge.predict`);
* **LLM** judges (``openai``, ``anthropic``, ``openai-compatible``, ``local``, ``fake``) render one prompt per item
  (:meth:`LLMJudge.request`) and answer it with one async call (:meth:`LLMJudge.complete`); the runner adds
  concurrency, rate limits, retries, the cache and cost accounting.

Backends are registered by name as ``"module:Class"`` strings, so a backend's client library (aiohttp for the API
backends, torch for ``local``) is imported only when a panel uses it (``import flywheel_lib.judges`` works without
the extras installed).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from ..io import text_hash
from ..providers.errors import PermanentError, TransientError
from ..records import Verdict
from ..registry import Registry
from .config import JudgeConfig, PanelError

__all__ = [
    "Judge", "OfflineContract", "LLMContract", "OfflineJudge", "LLMJudge", "APIJudge", "Request", "Completion", "TransientError", "PermanentError",
    "BACKENDS", "register_backend", "make_judge", "NoParams",
]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Request:
    """One rendered prompt for one item."""

    item_id: str
    """The item it asks about."""
    key: str
    """Cache key: hash of backend, model, options and the exact prompt."""
    messages: list[dict]
    """Chat messages (system first)."""
    est_tokens: int = 0
    """Rough prompt + completion tokens, for the tokens-per-minute limit."""
    item: dict = field(default_factory=dict)
    """The item's fields (text, context) for backends that need more than the prompt."""


@dataclass
class Completion:
    """What a backend returned for a request."""

    text: str
    """The raw answer text (JSON expected)."""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str = "stop"
    """``length`` means the answer was cut off by max_tokens (an abstention)."""
    parsed: dict | None = None
    """A verdict dict when the backend already parsed structured output (tool call)."""


@runtime_checkable
class Judge(Protocol):
    """What the panel needs from every judge. ``kind`` says which of the two contracts below it also keeps:
    ``"offline"`` (:class:`OfflineContract`: the panel calls ``keys`` and ``predict`` on a batch) or ``"llm"``
    (:class:`LLMContract`: the panel renders ``requests``, sends them through the judge's backend and parses the
    answers). The panel dispatches on ``kind`` alone."""

    name: str
    config: JudgeConfig
    kind: Literal["offline", "llm"]

    def fit(self, fewshot: pd.DataFrame) -> Judge:
        """Calibrate on the annotated seed set's few-shot pool (items with ``label`` and ``reason_key``); return
        self."""

    def check_installed(self) -> None:
        """Fail when the panel is loaded if what the judge needs is not installed (the message names the extra)."""

    def check_ready(self) -> None:
        """Fail before any call when the judge cannot run (an LLM judge's API key variable unset: the message
        names it)."""


@runtime_checkable
class OfflineContract(Judge, Protocol):
    """A judge of kind ``"offline"``: one batch call, no network."""

    def keys(self, items: pd.DataFrame) -> list[str]:
        """One cache key per item (config, fitted state, text and context)."""

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        """One verdict per item, in order."""


@runtime_checkable
class LLMContract(Judge, Protocol):
    """A judge of kind ``"llm"``: one prompt per item through a backend."""

    def requests(self, items: list[dict]) -> list[Request]:
        """One rendered prompt per item, with its cache key."""

    def api_key(self) -> str | None:
        """The key from the environment variable the panel file names (None when the backend needs none)."""


class _JudgeBase:
    kind: ClassVar[Literal["offline", "llm"]]
    Params: ClassVar[type[BaseModel]] = NoParams
    """Backend-specific typed settings read from the judge's ``params`` (unknown keys are errors)."""

    def __init__(self, config: JudgeConfig, *, taxonomy, domain=None):
        self.config = config
        self.name = config.name
        self.taxonomy = taxonomy
        self.domain = domain
        try:
            self.params = self.Params(**config.params)
        except ValidationError as e:
            errs = "; ".join(f"params.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
            raise PanelError(f"judge {config.name!r} ({config.backend}): {errs}") from None

    @property
    def model(self) -> str:
        return self.config.model or self.config.backend

    def check_installed(self) -> None:
        """Nothing to import beyond the core."""

    def check_ready(self) -> None:
        """Nothing to check for a judge that calls no service."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, model={self.model!r})"


class OfflineJudge(_JudgeBase):
    """A judge that needs no LLM: fit on the few-shot pool, then judge a batch at once."""

    kind = "offline"
    state_hash_: str | None = None
    """Hash of the fitted state (set by :meth:`fit`); part of every cache key."""

    def _set_state(self, *parts: Any) -> None:
        self.state_hash_ = text_hash(self.config.model_dump(exclude={"limits", "prices", "mode", "batch"}), *parts)

    def keys(self, items: pd.DataFrame) -> list[str]:
        """Cache keys: judge config + fitted-state hash + item text and context."""
        if self.state_hash_ is None:
            raise RuntimeError(f"judge {self.name!r} is not fitted: call panel.fit(fewshot_items) first")
        ctx = items["context"] if "context" in items else [""] * len(items)
        return [text_hash(self.state_hash_, str(t), str(c or ""), n=24) for t, c in zip(items["text"], ctx)]

    def predict(self, items: pd.DataFrame) -> list[Verdict]:  # pragma: no cover - interface
        raise NotImplementedError


class LLMJudge(_JudgeBase):
    """A judge that asks a language model one prompt per item."""

    kind = "llm"
    needs_key: ClassVar[bool] = False

    def fit(self, fewshot: pd.DataFrame) -> LLMJudge:
        from .fewshot import FewShotPicker

        self.picker_ = FewShotPicker(self.config.fewshot, self.taxonomy).fit(fewshot)
        return self

    SDK_EXTRA: ClassVar[str | None] = None
    """The project extra that installs this backend's client libraries (``pip install -e ".[extra]"``)."""

    def sdk_modules(self) -> list[str]:
        """The modules this judge needs to make calls (checked when the panel is loaded, before any call)."""
        return []

    def check_sdk(self) -> None:
        """Fail naming the extra to install when a module this judge needs cannot be imported."""
        missing = []
        for mod in self.sdk_modules():
            try:
                importlib.import_module(mod)
            except ImportError:
                missing.append(mod)
        if missing:
            extra = self.SDK_EXTRA or self.config.backend
            raise PanelError(f"judge {self.name!r} ({self.config.backend}) needs {', '.join(missing)}, which is not "
                             f"installed: pip install -e \".[{extra}]\"")

    def check_installed(self) -> None:
        self.check_sdk()

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker) without its HTTP client, which the worker makes again at its first call."""
        state = self.__dict__.copy()
        state.pop("_api", None)
        return state

    def check_ready(self) -> None:
        """The API key must be set before any call."""
        self.api_key()

    def api_key(self) -> str | None:
        """The key from the environment variable the panel file names; a missing one fails naming the variable."""
        var = self.config.api_key_env
        if not var:
            if self.needs_key:
                raise PanelError(f"judge {self.name!r} ({self.config.backend}) needs api_key_env in the panel file")
            return None
        val = os.environ.get(var)
        if not val:
            raise PanelError(f"judge {self.name!r} needs an API key: set the environment variable {var}")
        return val

    def key_parts(self) -> dict:
        """What, besides the prompt, decides the answer (never the key)."""
        opts = self.config.options.model_dump(exclude={"timeout_s"})
        return {"backend": self.config.backend, "model": self.config.model, "options": opts,
                "params": dict(self.config.params)}

    def requests(self, items: list[dict]) -> list[Request]:
        """One rendered prompt per item, with its cache key (a hash of backend, model, options and prompt)."""
        import hashlib

        from .prompt import render_examples, render_messages, render_system

        picker = getattr(self, "picker_", None)
        if picker is None and self.config.fewshot.strategy != "none":
            raise RuntimeError(f"judge {self.name!r} takes few-shot examples: call panel.fit(fewshot_items) first")
        examples = picker.pick_many(items) if picker is not None else [[] for _ in items]
        system = render_system(self.taxonomy, domain=self.domain)
        shared = render_examples(examples[0]) if self.config.fewshot.strategy != "nearest" and examples else None
        # The key hashes key_parts, then each message's role and content in order. The hash state after the
        # shared system message (and shared examples) is computed once and copied per item: the same digest
        # as hashing each prompt whole, without re-hashing kilobytes of identical prefix per item.
        base = hashlib.sha256(text_hash(self.key_parts(), n=64).encode())
        base.update(b"\0system\0" + system.encode())
        shared_b = shared.encode() if shared else b""
        base_user = base.copy()
        base_user.update(b"\0user\0" + shared_b)
        max_tokens = self.config.options.max_tokens
        out = []
        for item, ex in zip(items, examples):
            messages = render_messages(self.taxonomy, item, examples=ex, domain=self.domain, system=system,
                                       examples_text=shared)
            sys_c, user_c = messages[0]["content"], messages[1]["content"]
            if sys_c is system and shared and user_c.startswith(shared):
                h = base_user.copy()
                h.update(user_c[len(shared):].encode())
            else:
                h = base.copy() if sys_c is system else _fresh(self.key_parts(), sys_c)
                h.update(b"\0user\0" + user_c.encode())
            est = (len(sys_c) + len(user_c)) // 4 + max_tokens
            out.append(Request(item_id=str(item["item_id"]), key=h.hexdigest()[:32], messages=messages,
                               est_tokens=est, item={"text": item.get("text", ""), "context": item.get("context", "") or ""}))
        return out

    async def complete(self, req: Request) -> Completion:  # pragma: no cover - interface
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release clients; called once after a run."""


class APIJudge(LLMJudge):
    """An LLM judge behind a provider's HTTP API (:mod:`flywheel_lib.providers`): ``API`` is the provider's client
    class, made at the first call (the key is read then) and shared by the live calls and the Batch API."""

    API: ClassVar[Callable[..., Any]]
    """The provider's client class (:class:`~flywheel_lib.providers.OpenAIApi` or ``AnthropicApi``)."""
    needs_key = True
    _api: Any = None

    def sdk_modules(self) -> list[str]:
        return ["aiohttp"]

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self.API(self.config.base_url, self.api_key(), timeout_s=self.config.options.timeout_s,
                                 connections=self.config.limits.concurrency + 2, limits=self.config.limits)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()


def _fresh(parts: dict, system: str):
    import hashlib

    h = hashlib.sha256(text_hash(parts, n=64).encode())
    h.update(b"\0system\0" + system.encode())
    return h


# --- registry --------------------------------------------------------------------------------------

BACKENDS = Registry("judge backend", {
    "openai": "flywheel_lib.judges.openai_backend:OpenAIJudge",
    "openai-compatible": "flywheel_lib.judges.openai_backend:OpenAICompatibleJudge",
    "anthropic": "flywheel_lib.judges.anthropic_backend:AnthropicJudge",
    "local": "flywheel_lib.judges.local:LocalJudge",
    "knn": "flywheel_lib.judges.knn:KNNJudge",
    "linear": "flywheel_lib.judges.linear:LinearJudge",
    "baseline": "flywheel_lib.judges.baseline:BaselineJudge",
    "rules": "flywheel_lib.judges.rules:RulesJudge",
    "encoder": "flywheel_lib.judges.encoder:EncoderJudge",
    "fake": "flywheel_lib.judges.fake:FakeJudge",
})


def register_backend(name: str, target: str | Callable[..., Judge]) -> None:
    """Register a backend by ``"module:Class"`` path or a factory ``f(config, taxonomy=, domain=) -> Judge``."""
    BACKENDS.register(name, target)


def make_judge(config: JudgeConfig, *, taxonomy, domain=None) -> Judge:
    if config.backend not in BACKENDS:
        raise PanelError(
            f"judge {config.name!r}: unknown backend {config.backend!r}; registered: {', '.join(sorted(BACKENDS))}"
        )
    judge = BACKENDS.create(config.backend, config, taxonomy=taxonomy, domain=domain)
    judge.check_installed()
    return judge
