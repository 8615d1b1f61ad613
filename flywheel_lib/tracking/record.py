"""Log a finished run to MLflow without ever failing it: the run folder is the record.

:func:`track_run` is what the runner calls once a run's manifest is final, and what ``flywheel track RUN`` calls
to log (or log again) a run later. Whatever happens, its outcome goes into the manifest's notes as ``tracking``:
``{status: logged, uri, experiment, mlflow_run_id, ...}`` or ``{status: failed, error, replay: "flywheel track
RUN"}``. A tracking server that is down or refuses a write costs a few seconds (bounded retries), never the run.
Nothing from the environment is logged, and a tracking URI's user and password never reach the manifest.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .settings import Tracking, redact_uri, store_uri

__all__ = ["track_run", "HTTP_DEFAULTS"]

HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
"""How long a tracking server may keep a run waiting, unless these variables are set: MLflow's own defaults retry
for minutes."""


@contextlib.contextmanager
def _bounded_http() -> Iterator[None]:
    unset = [k for k in HTTP_DEFAULTS if k not in os.environ]
    os.environ.update({k: HTTP_DEFAULTS[k] for k in unset})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's and SQLAlchemy's deprecation notes are not the run's news
            yield
    finally:
        for k in unset:
            os.environ.pop(k, None)


def track_run(run_dir: str | Path, tracking: Tracking | None = None, *,
              echo: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Log ``run_dir`` to MLflow and note the outcome in its manifest; returns the note (None when tracking is off).

    ``tracking`` is the run's setting from :func:`~flywheel_lib.tracking.tracking_for` (off: nothing happens);
    None logs regardless (``flywheel track``). Never raises an ``Exception``.
    """
    if tracking is not None and not tracking.on:
        return None
    from ..runner.manifest import Manifest, now, run_state

    echo = echo or (lambda s: None)
    run_dir = Path(run_dir)
    uri = None
    try:
        manifest = Manifest.load(run_dir)
    except Exception as exc:  # noqa: BLE001 - tracking never fails a run
        echo(f"tracking: cannot read {run_dir / 'manifest.json'}: {exc}")
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    rid = manifest.data.get("run_id", run_dir.name)
    try:
        state = run_state(manifest.data, run_dir)
        if state == "running":
            raise RuntimeError(f"run {rid} is still running; log it once it has ended")
        uri = store_uri()
        from .mlflow_log import log_run

        with _bounded_http():
            summary = log_run(run_dir, manifest.data, uri=uri, status=state)
        note = {"status": "logged", "backend": "mlflow", "uri": redact_uri(uri), **summary, "at": now()}
        echo(f"tracking: logged to MLflow run {summary['mlflow_run_id']} "
             f"(experiment {summary['experiment']}, {redact_uri(uri)})")
    except Exception as exc:  # noqa: BLE001 - the run folder is the record; the failure is noted in it
        error = redact_uri(f"{type(exc).__name__}: {exc}")
        note = {"status": "failed", "backend": "mlflow", "uri": redact_uri(uri) if uri else None,
                "error": error if len(error) <= 1000 else error[:1000] + " ...", "at": now(),
                "replay": f"flywheel track {rid}"}
        echo(f"tracking: MLflow logging failed ({note['error'].splitlines()[0][:200]}); the run folder keeps "
             f"everything: log it later with `flywheel track {rid}`")
    try:
        manifest.data.setdefault("notes", {})["tracking"] = note
        manifest.save()
    except Exception as exc:  # noqa: BLE001
        echo(f"tracking: could not note the outcome in the manifest: {exc}")
    return note
