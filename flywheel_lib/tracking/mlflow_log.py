"""Write one run folder into MLflow: parameters, metrics, tags and the run's own report files.

A run is found again by its ``flywheel.run_id`` tag, so logging a run twice updates the same MLflow run: parameters
already there are kept (MLflow never changes one), metrics are logged again only where the value differs, tags and
files are overwritten. A run of a lineage (``flywheel cycles``) is the child of one MLflow run per lineage, found by
its ``flywheel.lineage`` tag or created by the first cycle logged; that parent carries each cycle's headline
metrics at step = cycle.

MLflow is imported here only, when a run is logged.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from .flatten import TAG, clean_key, metrics_of, params_of, tags_of
from .settings import artifact_root, experiment_name

__all__ = ["log_run", "find_run_by_tag", "MLFLOW_STATUS"]

MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "dead": "KILLED"}
"""A run's status as MLflow names it."""
_BATCH = 100
"""MLflow takes at most 100 parameters and tags, 1000 entities, per batch."""


def _ms(stamp: str | None) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None
    except (TypeError, ValueError):
        return None


def _experiment(client, name: str, location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # made meanwhile by another process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage != "active":
        raise RuntimeError(f"MLflow experiment {name!r} is deleted in this store; restore it "
                           "(mlflow experiments restore) or set MLFLOW_EXPERIMENT_NAME")
    return exp.experiment_id


def find_run_by_tag(client, experiment_id: str, **tags: str):
    """The newest active MLflow run whose ``flywheel.<key>`` tags equal ``tags``, or None."""
    where = " and ".join(f"tags.`{TAG}{k}` = '{str(v).replace(chr(39), '')}'" for k, v in tags.items())
    found = client.search_runs([experiment_id], filter_string=where, max_results=1, order_by=["attributes.start_time DESC"])
    return found[0] if found else None


def _same(a: float | None, b: float) -> bool:
    return a is not None and (a == b or (math.isnan(a) and math.isnan(b)))


def _log_batch(client, run_id: str, params: dict[str, str], metrics: list, tags: dict[str, str]) -> None:
    from mlflow.entities import Param, RunTag

    ps = [Param(k, v) for k, v in params.items()]
    ts = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, max(len(ps), len(ts), len(metrics)), _BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + _BATCH], params=ps[i:i + _BATCH], tags=ts[i:i + _BATCH])


def _lineage_parent(client, experiment_id: str, manifest: dict, start: int | None, end: int) -> str:
    """The lineage's parent MLflow run (found or made), with this cycle's headline metrics at step = cycle."""
    from mlflow.entities import Metric

    link = manifest["parent"]
    lineage, cycle = str(link["lineage"]), int(link.get("cycle") or 1)
    run = find_run_by_tag(client, experiment_id, lineage=lineage, kind="lineage")
    if run is None:
        run = client.create_run(experiment_id, start_time=start, run_name=lineage, tags={
            f"{TAG}kind": "lineage", f"{TAG}lineage": lineage, f"{TAG}recipe": str(manifest.get("recipe")),
            "mlflow.note.content": f"flywheel lineage {lineage}: one child run per cycle"})
    pid = run.info.run_id
    metrics = []
    for k, v in (manifest.get("headline") or {}).items():
        if isinstance(v, (int, float)):
            key = clean_key(k)
            if not any(m.step == cycle for m in client.get_metric_history(pid, key)):
                metrics.append(Metric(key, float(v), end, cycle))
    if metrics:
        client.log_batch(pid, metrics=metrics)
    ended = client.get_run(pid).info.end_time or 0
    client.set_terminated(pid, "FINISHED", end_time=max(ended, end))
    return pid


def _artifacts(client, run_id: str, run_dir: Path, manifest: dict) -> list[str]:
    """manifest.json (without its tracking note), index.html, recipe.yaml and each notebook's HTML."""
    logged = []
    with tempfile.TemporaryDirectory(prefix="flywheel-track-") as tmp:
        copy = {**manifest, "notes": {k: v for k, v in (manifest.get("notes") or {}).items() if k != "tracking"}}
        (Path(tmp) / "manifest.json").write_text(json.dumps(copy, indent=2, default=str) + "\n")
        files = [(Path(tmp) / "manifest.json", None)]
        files += [(run_dir / n, None) for n in ("index.html", "recipe.yaml") if (run_dir / n).is_file()]
        files += [(p, "notebooks") for p in sorted((run_dir / "notebooks").glob("*.html"))]
        for path, where in files:
            client.log_artifact(run_id, str(path), artifact_path=where)
            logged.append(f"{where}/{path.name}" if where else path.name)
    return logged


def log_run(run_dir: Path, manifest: dict, *, uri: str, status: str | None = None) -> dict[str, Any]:
    """Log (or update) the MLflow run of ``run_dir`` in store ``uri``; returns what was logged. Raises on failure.

    ``status`` is the run's state as it stands (``dead`` for a run whose runner is gone); default the manifest's.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    name = experiment_name(manifest)
    exp_id = _experiment(client, name, artifact_root(uri))
    rid = str(manifest["run_id"])
    start, end = _ms(manifest.get("created_at")), _ms(manifest.get("finished_at"))
    end = end or int(datetime.now().timestamp() * 1000)
    tags = tags_of(manifest)
    parent_id = None
    if (manifest.get("parent") or {}).get("lineage"):
        parent_id = _lineage_parent(client, exp_id, manifest, start, end)
        tags["mlflow.parentRunId"] = parent_id
    run = find_run_by_tag(client, exp_id, run_id=rid, kind="run")
    created = run is None
    if created:
        run = client.create_run(exp_id, start_time=start, run_name=rid,
                                tags={f"{TAG}run_id": rid, f"{TAG}kind": "run"})
        run = client.get_run(run.info.run_id)
    mid = run.info.run_id
    have_p, have_m = run.data.params, run.data.metrics
    params = params_of(manifest)
    kept = sorted(k for k, v in params.items() if k in have_p and have_p[k] != v)
    new_p = {k: v for k, v in params.items() if k not in have_p}
    metrics = [Metric(k, v, end, 0) for k, v in metrics_of(manifest).items() if not _same(have_m.get(k), v)]
    _log_batch(client, mid, new_p, metrics, tags)
    files = _artifacts(client, mid, Path(run_dir), manifest)
    client.set_terminated(mid, MLFLOW_STATUS.get(status or manifest.get("status"), "FAILED"), end_time=end)
    out = {"experiment": name, "experiment_id": exp_id, "mlflow_run_id": mid, "created": created,
           "params": len(params), "metrics": len(metrics_of(manifest)), "artifacts": files}
    if parent_id:
        out["parent_mlflow_run_id"] = parent_id
    if kept:
        out["params_kept"] = kept  # MLflow never changes a logged parameter: these keep their first value
    return out
