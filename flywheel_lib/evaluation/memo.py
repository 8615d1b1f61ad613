"""Greedy decodes kept per adapter and prompt, so 05_evaluate does not decode again what its lineage decoded.

A later cycle scores the model it deployed last cycle on the same original eval that the previous cycle scored it
on as the candidate, and the store-consulting head sends the decoder the same prompts as the plain head wherever
the two decide alike. Greedy decoding of one prompt by one adapter under one grammar gives one answer, so
:class:`GenerationMemo` keeps each answer under the adapter's content digest, the decoding mode (grammar and token
budget) and the prompt's digest. 05_evaluate writes the entries a run used as its ``generations`` artifact and a
later cycle loads its lineage's, so what a run reuses is fixed by its lineage, not by a machine's cache.

Answers decoded in a batch of other prompts can differ in the last bits of their logits from the same prompt in
another batch (left padding); a reused answer is the one decoded first. ``reuse_generations: false`` decodes
everything anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..io import file_sha256

__all__ = ["GenerationMemo", "adapter_digest", "MEMO_COLUMNS"]

MEMO_COLUMNS = ["adapter", "mode", "prompt", "answer"]
"""The ``generations`` artifact: adapter digest, decoding mode, prompt digest (sha256 hex), the decoded answer."""

_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def adapter_digest(base_model: str, adapter: str | Path | None) -> str:
    """What names one model's weights: the base model's name and the sha256 of the adapter's config and weights
    (``None``: the bare base). Two folders holding the same adapter get the same digest."""
    h = hashlib.sha256(f"base:{base_model}".encode())
    if adapter is not None:
        folder = Path(adapter)
        found = [f for f in _ADAPTER_FILES if (folder / f).is_file()]
        if not any(f.startswith("adapter_model") for f in found):
            raise FileNotFoundError(f"{folder}: no adapter_model.safetensors or adapter_model.bin to digest")
        for f in found:
            h.update(f"{f}:{file_sha256(folder / f)}".encode())
    return h.hexdigest()


class GenerationMemo:
    """Decoded answers by (adapter digest, decoding mode, prompt digest), with the counts of reuses and decodes."""

    def __init__(self, frame: pd.DataFrame | None = None):
        self._answers: dict[tuple[str, str, str], str] = {}
        self._used: set[tuple[str, str, str]] = set()
        self.reused = 0
        """Prompts answered from the memo since it was built."""
        self.decoded = 0
        """Prompts decoded and added since it was built."""
        if frame is not None:
            self.add_frame(frame)

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def mode(grammar: str | None, max_new_tokens: int) -> str:
        """The decoding mode: the grammar's digest (``free`` without one) and the token budget."""
        g = _sha(grammar.encode())[:16] if grammar else "free"
        return f"{g}:{int(max_new_tokens)}"

    @staticmethod
    def prompt_key(prompt: str) -> str:
        return _sha(prompt.encode())

    def add_frame(self, frame: pd.DataFrame, *, source: str = "frame") -> None:
        """Entries from a ``generations`` frame (``MEMO_COLUMNS``); a missing column is an error naming ``source``."""
        missing = [c for c in MEMO_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{source}: not a generations frame, missing columns {missing} (has {list(frame.columns)})")
        for a, m, p, ans in frame[MEMO_COLUMNS].itertuples(index=False):
            self._answers.setdefault((str(a), str(m), str(p)), str(ans))

    def lookup(self, adapter: str, mode: str, prompts: list[str]) -> tuple[dict[int, str], list[int]]:
        """``({index: kept answer}, [indices to decode])`` for ``prompts``; counts the reuses."""
        found, todo = {}, []
        for i, p in enumerate(prompts):
            key = (adapter, mode, self.prompt_key(p))
            if key in self._answers:
                found[i] = self._answers[key]
                self._used.add(key)
            else:
                todo.append(i)
        self.reused += len(found)
        return found, todo

    def keep(self, adapter: str, mode: str, prompts: Iterable[str], answers: Iterable[str]) -> None:
        """Keeps freshly decoded answers (counted as decodes)."""
        for p, a in zip(prompts, answers, strict=True):
            key = (adapter, mode, self.prompt_key(p))
            self._answers[key] = a
            self._used.add(key)
            self.decoded += 1

    def frame(self, *, used_only: bool = True) -> pd.DataFrame:
        """The entries as a ``generations`` frame: those reused or decoded since the memo was built (``used_only``),
        or all of them."""
        keys = [k for k in self._answers if k in self._used] if used_only else list(self._answers)
        return pd.DataFrame([(*k, self._answers[k]) for k in keys], columns=MEMO_COLUMNS)
