"""Where things are: the project root, the runs folder, and the layout of one run folder.

This is the only module that knows the run-folder layout (``artifacts/``, ``metrics/``, ``figures/``,
``notebooks/``, ``manifest.json``); :mod:`flywheel_lib.stage` (what a notebook opens) and
:mod:`flywheel_lib.runner` (what executes the stages) build on it, and nothing else builds a path into a run.
It imports nothing of the package, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["project_root", "runs_dir", "resolve_path", "latest_run", "find_run", "artifact_path", "record_path",
           "manifest_path", "progress_path", "heartbeat_path", "partial_path", "is_partial", "atomic_dir",
           "ARTIFACTS", "FIGURES", "METRICS"]

ARTIFACTS = "artifacts"
"""Stage tables (Parquet), JSON records and model folders."""
FIGURES = "figures"
"""PNG figures the stages saved."""
METRICS = "metrics"
"""One JSON record per stage (metrics, notes, input hashes), folded into ``manifest.json`` by the runner."""


def project_root() -> Path:
    """The workbench checkout: ``$FLYWHEEL_ROOT``, else the nearest parent of the cwd holding ``flywheel_lib/``."""
    env = os.environ.get("FLYWHEEL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "flywheel_lib").is_dir() and (p / "params").is_dir():
            return p
    return Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """Where run folders live: ``$FLYWHEEL_RUNS_DIR``, else ``<root>/outputs/runs``."""
    env = os.environ.get("FLYWHEEL_RUNS_DIR")
    return Path(env).resolve() if env else project_root() / "outputs" / "runs"


def resolve_path(p: str | os.PathLike) -> Path:
    """Resolve a path from a params file: absolute as is, else relative to the project root."""
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else project_root() / p


def manifest_path(run: str | os.PathLike) -> Path:
    return Path(run) / "manifest.json"


def artifact_path(run: str | os.PathLike, name: str, ext: str = "parquet") -> Path:
    """An artifact of a run (``name`` may carry a suffix or a subfolder; ``ext=""`` for a folder)."""
    p = Path(run) / ARTIFACTS / name
    return p if p.suffix or not ext else p.with_name(f"{p.name}.{ext}")


def record_path(run: str | os.PathLike, stage: str) -> Path:
    """The JSON record one stage of a run keeps (metrics, notes, inputs)."""
    return Path(run) / METRICS / f"{stage}.json"


def progress_path(run: str | os.PathLike, stage: str) -> Path:
    """The progress lines a stage's long loops write while the runner executes it (see :mod:`flywheel_lib.progress`)."""
    return Path(run) / "progress" / f"{stage}.jsonl"


def heartbeat_path(run: str | os.PathLike) -> Path:
    """The file whose modification time the runner refreshes while the run executes (removed when it ends)."""
    return Path(run) / "heartbeat"


PARTIAL = ".partial-"
"""Marks a folder being written (``.<name>.partial-<pid>``); see :func:`atomic_dir`."""


def partial_path(target: str | os.PathLike) -> Path:
    """The hidden sibling a folder is written into before it is renamed to ``target``."""
    target = Path(target)
    return target.with_name(f".{target.name}{PARTIAL}{os.getpid()}")


def is_partial(name: str) -> bool:
    """Whether a file or folder name is a write in progress: :func:`atomic_dir`'s folders and the temporary files
    of atomic file writes (``.<name>.<random>.tmp``, ``<name>.tmp``, ``<name>.tmp.npz``). Such names are never
    carried into another run nor counted as a stage's output."""
    hidden_write = name.startswith(".") and (PARTIAL in name or ".old-" in name)
    return hidden_write or name.endswith(".tmp") or ".tmp." in name


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to write into; on success it replaces ``target`` (a folder already
    there is moved aside, then removed), on an error or interrupt it is removed. Readers, and a run that is killed
    part-way, see no folder or the complete one::

        with atomic_dir(run / "artifacts" / "models" / "curated") as tmp:
            model.save_pretrained(tmp)

    Files already in ``target`` are never written in place, so a folder hard-linked from an earlier run (see
    ``flywheel run --from``) keeps that run's files unchanged.
    """
    target = Path(target)
    tmp = partial_path(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _runs() -> list[Path]:
    d = runs_dir()
    return sorted(x for x in d.iterdir() if x.is_dir() and manifest_path(x).exists()) if d.exists() else []


def latest_run() -> Path | None:
    """The newest run folder (by id, which starts with its start time), or None."""
    runs = _runs()
    return runs[-1] if runs else None


def find_run(ref: str | os.PathLike) -> Path:
    """A run folder from an id, a unique prefix or substring of one, ``latest``, or a path.

    The one run lookup of the workbench: the command line, the stages (a parent run) and the lineage all use it.
    """
    p = Path(ref)
    if p.is_dir() and manifest_path(p).exists():
        return p.resolve()
    ref = str(ref)
    runs = _runs()
    if ref in ("latest", "last"):
        if not runs:
            raise FileNotFoundError(f"no runs under {runs_dir()}")
        return runs[-1]
    exact = [r for r in runs if r.name == ref]
    if exact:
        return exact[0]
    hits = [r for r in runs if r.name.startswith(ref)] or [r for r in runs if ref in r.name]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FileNotFoundError(f"no run matches {ref!r} under {runs_dir()}")
    raise FileNotFoundError(f"{ref!r} matches {len(hits)} runs: {', '.join(h.name for h in hits[:5])} ...")
