"""A panel: the judges of one panel file, fitted together and run together.

>>> from flywheel_lib.judges import load_panel                                    # doctest: +SKIP
>>> panel = load_panel("params/judges/offline.yaml", taxonomy=tax, domain=None)  # doctest: +SKIP
>>> verdicts = panel.fit(fewshot).judge(items, cache_dir="outputs/cache")        # doctest: +SKIP

``judge`` returns the verdicts table (:data:`~flywheel_lib.records.VERDICTS`), one row per item and judge in
item order, abstentions with ``category = None`` and the reason in ``error``; ``stats_`` holds one row per
judge (items, called, cached, abstained, errors, retries, tokens, cost, wall time) for the run's metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..executors import current as current_executor
from ..executors import run_llm_with, run_offline_with  # local, or Ray Data (executor: ray)
from ..records import VERDICTS, check_table, empty_table
from .base import Judge, make_judge
from .cache import VerdictCache
from .config import PanelConfig, PanelError, read_panel_config
from .failfast import MAX_FAILURE_RATE, check_stats

__all__ = ["Panel", "load_panel"]


class Panel:
    """The judges of a panel file (constructor: no logic; :meth:`fit`, then :meth:`judge`)."""

    def __init__(self, config: PanelConfig, judges: Iterable[Judge], *, taxonomy, domain=None):
        self.config = config
        self.judges = list(judges)
        self.taxonomy = taxonomy
        self.domain = domain

    def __repr__(self) -> str:
        return f"Panel({self.config.name!r}, judges={self.names})"

    def __len__(self) -> int:
        return len(self.judges)

    def __getitem__(self, name: str):
        for j in self.judges:
            if j.name == name:
                return j
        raise KeyError(f"no judge {name!r} in panel {self.config.name!r} (judges: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.judges]

    def without(self, names: Iterable[str] | str) -> Panel:
        """A new panel without the named judges (the fitted judges are shared, not refitted)."""
        drop = {names} if isinstance(names, str) else set(names)
        unknown = drop - set(self.names)
        if unknown:
            raise KeyError(f"panel {self.config.name!r} has no judges {sorted(unknown)} (judges: {', '.join(self.names)})")
        keep = [j for j in self.judges if j.name not in drop]
        if not keep:
            raise PanelError(f"dropping {sorted(drop)} leaves panel {self.config.name!r} without judges")
        cfg = self.config.model_copy(update={"judges": [j.config for j in keep]})
        return Panel(cfg, keep, taxonomy=self.taxonomy, domain=self.domain)

    def fit(self, fewshot: pd.DataFrame) -> Panel:
        """Calibrate every judge on the seed's few-shot pool (rows with ``text``, ``label``, ``reason_key``)."""
        missing = [c for c in ("text", "label", "reason_key") if c not in fewshot.columns]
        if missing:
            raise PanelError(f"few-shot pool lacks columns: {', '.join(missing)}")
        for j in self.judges:
            j.fit(fewshot)
        return self

    def check_keys(self) -> None:
        """Fail before any call when a judge's API key variable is unset (the message names it)."""
        for j in self.judges:
            j.check_ready()

    def judge(self, items: pd.DataFrame, *, cache_dir: str | Path | None = "outputs/cache",
              progress: bool = True, max_failure_rate: float | None = MAX_FAILURE_RATE) -> pd.DataFrame:
        """Run every judge on every item; returns the verdicts table, one row per (item, judge).

        An LLM judge whose calls give no verdict (failed calls, unparseable answers) more often than
        ``max_failure_rate`` stops the run with :class:`~flywheel_lib.judges.failfast.JudgeFailureError`, naming
        the judge, its last error and what is already cached: as soon as ``min(50, calls planned)`` calls tell, or
        (Batch API, Ray) when its results are in. ``None`` lets every failure become an abstention."""
        for c in ("item_id", "text"):
            if c not in items.columns:
                raise PanelError(f"items lack column {c!r}")
        if items["item_id"].duplicated().any():
            raise PanelError(f"items have repeated item_id, e.g. {items.loc[items['item_id'].duplicated(), 'item_id'].iloc[0]!r}")
        self.check_keys()
        items = items.reset_index(drop=True)
        if "context" in items:
            items = items.assign(context=items["context"].fillna("").astype(str))
        cache = VerdictCache(cache_dir) if cache_dir is not None else None
        per_judge, stats = {}, {}
        try:
            for pos, j in enumerate(self.judges):
                if j.kind == "offline":
                    per_judge[j.name], stats[j.name] = run_offline_with(j, items, cache, progress=progress, position=pos)
            llm = [j for j in self.judges if j.kind == "llm"]
            if llm:
                vs, st = run_llm_with(llm, items, cache, progress=progress, position=len(self.judges) - len(llm),
                                      max_failure_rate=max_failure_rate)
                per_judge.update(vs)
                stats.update(st)
                for j in llm:  # judges that could not stop early are held to the same bound now
                    if j.config.mode == "batch" or current_executor().name == "ray":
                        errs = [v.error for v in vs[j.name] if v.error and not v.cached]
                        check_stats(st[j.name], max_failure_rate, last_error=errs[-1] if errs else None)
        finally:
            if cache is not None:
                cache.close()
        self.stats_ = pd.DataFrame([stats[n].row() for n in self.names])
        if not len(items):
            return empty_table("verdicts")
        rows = [per_judge[n][i] for i in range(len(items)) for n in self.names]
        types = {"tokens_in": "int64", "tokens_out": "int64", "cost_usd": "float64", "latency_s": "float64",
                 "cached": "bool"}
        df = pd.DataFrame({c: pd.Series([getattr(v, c) for v in rows], dtype=types.get(c, object))
                           for c in VERDICTS})
        return check_table(df, "verdicts", f"panel {self.config.name}")


def load_panel(path: str | Path, *, taxonomy, domain=None) -> Panel:
    """Read a panel file and build its judges (backends are imported only now, and only those used)."""
    cfg = read_panel_config(path)
    judges = [make_judge(jc, taxonomy=taxonomy, domain=domain) for jc in cfg.judges]
    return Panel(cfg, judges, taxonomy=taxonomy, domain=domain)
