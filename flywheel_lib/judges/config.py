"""Panel files as typed records: ``params/judges/*.yaml`` read into :class:`PanelConfig`.

A panel file::

    name: offline
    judges:
      - name: knn
        backend: knn
        model: all-MiniLM-L6-v2
        params: {k: 7}
      - name: gpt
        backend: openai
        model: gpt-4o-mini
        api_key_env: OPENAI_API_KEY          # the *name* of the variable, never the key
        options: {temperature: 0, max_tokens: 200, timeout_s: 30}
        fewshot: {strategy: stratified, per_category: 3}
        limits: {concurrency: 16, rpm: 500, tpm: 200000, max_retries: 5}
        prices: {input_per_mtok: 0.15, output_per_mtok: 0.60}

Every model forbids unknown keys, so a typo fails at load time naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["JudgeConfig", "PanelConfig", "Options", "FewShot", "Limits", "Prices", "BatchPrices", "BatchSettings", "PanelError", "read_panel_config"]


class PanelError(ValueError):
    """A panel file or a judge in it is wrong; the message names the file, judge and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Options(_Strict):
    temperature: float = 0.0
    """Sampling temperature (0 = greedy; offline judges ignore it)."""
    max_tokens: int = 256
    """Completion token cap; a verdict cut off by it is an abstention ('truncated')."""
    timeout_s: float = 60.0
    """Per-request timeout; a timeout is retried like a 5xx."""
    top_p: float | None = None
    """Nucleus sampling, when the backend takes it."""
    seed: int | None = None
    """Sampling seed, when the backend takes it."""


class FewShot(_Strict):
    strategy: Literal["stratified", "nearest", "none"] = "stratified"
    """How examples are chosen from the seed's few-shot pool: per category, or nearest neighbours to the item."""
    per_category: int = 2
    """Stratified: examples per category."""
    k: int = 8
    """Nearest: examples per item."""
    seed: int = 0
    """Stratified: which examples are drawn."""


class Limits(_Strict):
    concurrency: int = 8
    """Requests in flight at once."""
    rpm: float | None = None
    """Requests per minute (None = no cap)."""
    tpm: float | None = None
    """Tokens per minute, prompt + completion estimate (None = no cap)."""
    max_retries: int = 4
    """Retries after the first try on 429, 5xx, timeouts and dropped connections."""
    backoff_base_s: float = 0.5
    """First backoff; doubles per retry, with full jitter."""
    backoff_max_s: float = 30.0
    """Cap of one exponential backoff."""
    retry_after_max_s: float = 120.0
    """A server's Retry-After is honoured up to this many seconds."""


class BatchPrices(_Strict):
    input_per_mtok: float = 0.0
    """USD per million prompt tokens in a provider batch."""
    output_per_mtok: float = 0.0
    """USD per million completion tokens in a provider batch."""

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


class Prices(_Strict):
    input_per_mtok: float = 0.0
    """USD per million prompt tokens."""
    output_per_mtok: float = 0.0
    """USD per million completion tokens."""
    batch: BatchPrices | None = None
    """Prices in batch mode (``mode: batch``); None means half the online prices (OpenAI's and Anthropic's rate)."""

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6

    def batch_prices(self) -> BatchPrices:
        return self.batch or BatchPrices(input_per_mtok=self.input_per_mtok / 2, output_per_mtok=self.output_per_mtok / 2)


class BatchSettings(_Strict):
    poll_s: float = 10.0
    """First wait between two status polls; it grows by ``poll_growth`` up to ``poll_max_s``."""
    poll_growth: float = 1.5
    poll_max_s: float = 300.0
    max_wait_s: float | None = None
    """Stop polling after this long (None: until every batch ends); what is still in flight is collected next run."""
    completion_window: str = "24h"
    """OpenAI's completion window."""
    max_requests: int | None = None
    """Requests per batch (None: the provider's limit, 50,000 OpenAI / 100,000 Anthropic)."""
    max_bytes: int | None = None
    """Bytes per batch file (None: the provider's limit, 200 MB OpenAI / 256 MB Anthropic)."""
    max_resubmits: int = 2
    """Resubmissions of a request that expired, was cancelled or failed, before it is an abstention."""


class JudgeConfig(_Strict):
    name: str
    """The judge's name in tables and plots (unique in the panel)."""
    backend: str
    """A registered backend: openai, anthropic, openai-compatible, local, knn, linear, rules, fake."""
    model: str = ""
    """The model id the backend calls (or the method of an offline judge)."""
    base_url: str | None = None
    """Server URL for openai-compatible backends (vLLM, Ollama, llama.cpp, LM Studio)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    options: Options = Field(default_factory=Options)
    fewshot: FewShot = Field(default_factory=FewShot)
    limits: Limits = Field(default_factory=Limits)
    prices: Prices = Field(default_factory=Prices)
    params: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific settings, checked by the backend's own typed class."""
    mode: Literal["online", "batch"] = "online"
    """``batch``: the provider's Batch API (openai, openai-compatible, anthropic), half price, journaled and resumable."""
    batch: BatchSettings = Field(default_factory=BatchSettings)
    """Polling and splitting in batch mode."""

    @model_validator(mode="after")
    def _no_inline_keys(self) -> JudgeConfig:
        for k in self.params:
            if "key" in k.lower() and k.lower() not in {"reason_key"}:
                raise ValueError(f"params.{k}: put secrets in an environment variable and name it in api_key_env")
        if self.mode == "batch" and self.backend not in ("openai", "openai-compatible", "anthropic"):
            raise ValueError(f"mode: batch needs backend openai, openai-compatible or anthropic, not {self.backend!r}")
        return self


class PanelConfig(_Strict):
    name: str
    description: str = ""
    judges: list[JudgeConfig]
    source: str = ""
    """The file it was read from."""

    @model_validator(mode="after")
    def _unique(self) -> PanelConfig:
        names = [j.name for j in self.judges]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"judge names must be unique; repeated: {', '.join(dup)}")
        if not names:
            raise ValueError("a panel needs at least one judge")
        return self


def read_panel_config(path: str | Path) -> PanelConfig:
    """Read and validate a panel YAML file; errors name the file and the offending key."""
    from ..io import load_yaml_model

    cfg = load_yaml_model(path, PanelConfig, PanelError, "panel file")
    cfg.source = str(path)
    return cfg
