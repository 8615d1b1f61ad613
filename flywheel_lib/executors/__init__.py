"""Executors: where a stage's bulk work runs. ``local`` (the default: this process) or ``ray`` (Ray Data over
Parquet blocks, on a local Ray instance or the cluster at ``ray_address``).

A notebook picks one with a single call after its parameters, and the library code that does bulk work asks
:func:`current` (``Panel.judge`` for offline and OpenAI-compatible judges, ``find_conflicts`` for its embeddings)::

    from flywheel_lib.executors import use_executor
    use_executor(executor, ray_address=ray_address)   # "local" | "ray"

The same cache semantics and the same verdicts either way (``tests/test_executors_ray.py`` compares the tables).
``ray`` is an optional extra (``pip install 'flywheel-workbench[ray]'``); nothing here imports it until the
``ray`` executor is chosen, so the core imports without it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["EXECUTORS", "Executor", "use_executor", "current", "run_offline_with", "run_llm_with", "embedder"]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Executor:
    name: str = "local"
    """``local`` or ``ray``."""
    address: str = ""
    """Ray cluster address (``ray://host:10001`` or ``auto``); empty starts or joins a local instance."""
    block_rows: int = 4096
    """Rows per Parquet block and per ``map_batches`` call."""


_CURRENT = Executor()


def use_executor(name: str = "local", *, ray_address: str = "", block_rows: int = 4096) -> Executor:
    """Choose the executor for this process; ``ray`` fails at once, naming the extra, when Ray is not installed."""
    global _CURRENT
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {name!r}")
    if name == "ray" and not _installed("ray"):
        raise ImportError("executor 'ray' needs Ray: pip install 'flywheel-workbench[ray]' (ray[data])")
    if name == "local" and ray_address:
        raise ValueError("ray_address is set but executor is 'local': set executor to 'ray' or clear ray_address")
    _CURRENT = Executor(name, ray_address or "", block_rows)
    return _CURRENT


def _installed(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ImportError:
        return False


def current() -> Executor:
    return _CURRENT


def run_offline_with(judge, items, cache, **kw):
    """``run_offline`` on the current executor."""
    if _CURRENT.name == "ray":
        from .ray_exec import run_offline_ray

        return run_offline_ray(judge, items, cache, executor=_CURRENT, **kw)
    from ..judges.runner import run_offline

    return run_offline(judge, items, cache, **kw)


def run_llm_with(judges, items, cache, **kw):
    """``run_llm`` on the current executor: under ``ray``, online OpenAI-compatible judges (a vLLM or other
    self-hosted server) run in Ray tasks; API judges and batch-mode judges stay in this process."""
    from ..judges.runner import run_llm

    if _CURRENT.name != "ray":
        return run_llm(judges, items, cache, **kw)
    from .ray_exec import ray_capable, run_llm_ray

    far = [j for j in judges if ray_capable(j)]
    near = [j for j in judges if not ray_capable(j)]
    verdicts, stats = {}, {}
    if near:
        v, s = run_llm(near, items, cache, **kw)
        verdicts.update(v)
        stats.update(s)
    for j in far:
        v, s = run_llm_ray(j, items, cache, executor=_CURRENT, progress=kw.get("progress", True))
        verdicts[j.name], stats[j.name] = v, s
    return verdicts, stats


def embedder():
    """The text embedder for the current executor (``flywheel_lib.embeddings.embed`` locally)."""
    if _CURRENT.name == "ray":
        from .ray_exec import RayEmbedder

        return RayEmbedder(_CURRENT)
    from ..embeddings import embed

    return embed
