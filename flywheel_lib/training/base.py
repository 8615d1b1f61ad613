"""The fine-tune backend Protocol and its registry.

A backend takes one variant's :class:`~flywheel_lib.training.datasets.BuiltDataset` and returns a
:class:`TrainResult`: where the trained model lives (an adapter folder, or a provider's model id) and its training
log. Backends are registered by ``"module:Class"`` so their libraries load only when used::

    backend = get_backend("local-lora", base_model="smollm2-135m", max_steps=60, seed=7)
    result = backend.train(ds, out_dir="outputs/runs/r1/models/curated")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ..registry import Registry

__all__ = ["BACKENDS", "FineTuneBackend", "TrainResult", "get_backend", "register_backend"]


@dataclass
class TrainResult:
    """What one fine-tuning run produced."""

    variant: str
    """The train-set variant trained."""
    backend: str
    """The backend's registry name."""
    model_ref: str
    """Where the model is: an adapter folder (local-lora) or a fine-tuned model id (openai)."""
    base_model: str
    """The base model fine-tuned."""
    log: pd.DataFrame
    """Training curve, one row per logged step: variant, step, loss, lr, tokens, seconds (backend-specific extras)."""
    metrics: dict = field(default_factory=dict)
    """Summary numbers: steps, seconds, tokens_per_s, loss_first, loss_last, val_loss_before, val_loss_after, ..."""

    def summary(self) -> dict:
        return {"variant": self.variant, "backend": self.backend, "model_ref": self.model_ref,
                "base_model": self.base_model, **self.metrics}


@runtime_checkable
class FineTuneBackend(Protocol):
    name: str

    def train(self, dataset: Any, *, out_dir: str | Path) -> TrainResult:
        """Fine-tune on ``dataset`` (a BuiltDataset) and write what it can into ``out_dir``."""


BACKENDS = Registry("fine-tune backend", {
    "local-lora": "flywheel_lib.training.lora:LocalLoRABackend",
    "openai": "flywheel_lib.training.openai_ft:OpenAIBackend",
})


def register_backend(name: str, target: str | Callable[..., FineTuneBackend]) -> None:
    """Register a backend by ``"module:Class"`` path or factory."""
    BACKENDS.register(name, target)


def get_backend(name: str, **options) -> FineTuneBackend:
    """Instantiate a registered backend with its options (unknown options are an error)."""
    return BACKENDS.create(name, **options)
