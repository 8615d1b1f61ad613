"""The contracts between stages: long-format tables, one row per fact.

Every stage reads and writes pandas DataFrames whose columns are named here. Each entry point
checks its input with :func:`check_table`, which names the table, the missing columns and where
the table came from, so a broken artifact fails at the door rather than three cells later.

Tables
------
items
    ``item_id, text, source, workload_id, timestamp, label, output, context, split`` plus any number of
    ``signal_*`` columns (implicit feedback: ``signal_retry``, ``signal_correction``, ...).
    ``source`` is one of ``production | seed | eval | traffic``; ``label`` is a taxonomy category id (a production
    success carries the taxonomy's solvable id); ``output`` is the logged or gold query (None for a refusal);
    ``context`` is extra per-item material a judge needs (e.g. a database schema as JSON), or ``""``;
    ``split`` is ``fewshot | holdout | train | eval | ""``.
verdicts
    ``item_id, judge, category, reason_key, rationale, model, prompt_hash, tokens_in, tokens_out, cost_usd,
    latency_s, cached, error``. An abstention has ``category = None`` and says why in ``error``.
consensus
    ``item_id, category, status, votes, reason_key``; ``status`` is ``accepted | disagreement | abstained``;
    ``votes`` is a JSON object ``{judge: category}``.
resolutions
    ``item_id, label_before, label_after, action, evidence``; ``action`` is
    ``keep | replace | clarify | refusal | opt_out``; ``evidence`` is a JSON object (rule, verdicts, sources).
predictions
    ``item_id, variant, output, valid, executed, passed, refused, refusal_category``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = [
    "ITEMS",
    "VERDICTS",
    "CONSENSUS",
    "RESOLUTIONS",
    "PREDICTIONS",
    "CONTRACTS",
    "SOURCES",
    "SPLITS",
    "CONSENSUS_STATUSES",
    "ACTIONS",
    "ContractError",
    "Verdict",
    "check_table",
    "empty_table",
]

ITEMS = ("item_id", "text", "source", "workload_id", "timestamp", "label", "output", "context", "split")
VERDICTS = (
    "item_id",
    "judge",
    "category",
    "reason_key",
    "rationale",
    "model",
    "prompt_hash",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_s",
    "cached",
    "error",
)
CONSENSUS = ("item_id", "category", "status", "votes", "reason_key")
RESOLUTIONS = ("item_id", "label_before", "label_after", "action", "evidence")
PREDICTIONS = ("item_id", "variant", "output", "valid", "executed", "passed", "refused", "refusal_category")

CONTRACTS: dict[str, tuple[str, ...]] = {
    "items": ITEMS,
    "verdicts": VERDICTS,
    "consensus": CONSENSUS,
    "resolutions": RESOLUTIONS,
    "predictions": PREDICTIONS,
}

SOURCES = ("production", "seed", "eval", "traffic")
SPLITS = ("fewshot", "holdout", "train", "eval", "")
CONSENSUS_STATUSES = ("accepted", "disagreement", "abstained")
ACTIONS = ("keep", "replace", "clarify", "refusal", "opt_out")


class ContractError(ValueError):
    """A table does not have the shape its contract promises."""


def check_table(df: pd.DataFrame, contract: str, where: str = "") -> pd.DataFrame:
    """Check that ``df`` has every column of ``contract`` and unique ids where ids must be unique.

    Returns ``df`` unchanged so the call can wrap a read: ``items = check_table(read(...), "items", path)``.

    >>> check_table(pd.DataFrame({"item_id": ["a"]}), "consensus", "toy.parquet")
    Traceback (most recent call last):
    ...
    flywheel_lib.records.ContractError: consensus table from toy.parquet lacks columns: category, status, votes, reason_key
    """
    if contract not in CONTRACTS:
        raise KeyError(f"unknown contract {contract!r}; known: {', '.join(CONTRACTS)}")
    origin = f" from {where}" if where else ""
    if not isinstance(df, pd.DataFrame):
        raise ContractError(f"{contract} table{origin} is a {type(df).__name__}, not a DataFrame")
    missing = [c for c in CONTRACTS[contract] if c not in df.columns]
    if missing:
        raise ContractError(f"{contract} table{origin} lacks columns: {', '.join(missing)}")
    key = {"items": ["item_id"], "consensus": ["item_id"], "resolutions": ["item_id"],
           "verdicts": ["item_id", "judge"], "predictions": ["item_id", "variant"]}[contract]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        first = df.loc[dup, key].iloc[0].tolist()
        raise ContractError(
            f"{contract} table{origin} has {int(dup.sum())} rows with a repeated key {key}; first: {first}"
        )
    return df


def empty_table(contract: str) -> pd.DataFrame:
    """An empty DataFrame with the contract's columns (object dtype)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CONTRACTS[contract]})


@dataclass
class Verdict:
    """One judge's answer about one item: a row of the verdicts table."""

    item_id: str
    """The item judged."""
    judge: str
    """The judge's name in the panel file."""
    category: str | None
    """A taxonomy category id, or None for an abstention."""
    reason_key: str | None = None
    """A short canonical reason (missing attribute, target skill, ambiguous phrase, attributes used)."""
    rationale: str = ""
    """Free-text reasoning as the judge gave it."""
    model: str = ""
    """The model or method behind the judge."""
    prompt_hash: str = ""
    """Hash of the exact prompt (and options) that produced the verdict: the cache key."""
    tokens_in: int = 0
    """Prompt tokens billed."""
    tokens_out: int = 0
    """Completion tokens billed."""
    cost_usd: float = 0.0
    """Cost of the call at the panel file's prices; 0 when cached or offline."""
    latency_s: float = 0.0
    """Wall time of the call, retries included."""
    cached: bool = False
    """True when the verdict came from the response cache."""
    error: str | None = None
    """Why the judge abstained (parse failure, retries exhausted, ...); None for a real verdict."""
    extra: dict = field(default_factory=dict)
    """Backend-specific details kept out of the table (not persisted as a column)."""

    @property
    def abstained(self) -> bool:
        return self.category is None

    def row(self) -> dict:
        return {c: getattr(self, c) for c in VERDICTS}

    @classmethod
    def abstain(cls, item_id: str, judge: str, why: str, **kw) -> Verdict:
        """An explicit abstention: never a guessed label."""
        return cls(item_id=item_id, judge=judge, category=None, error=why, **kw)

