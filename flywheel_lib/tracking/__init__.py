"""MLflow tracking for runs (the ``tracking`` extra; off unless asked for).

``tracking: mlflow`` in a recipe's ``params`` (or ``MLFLOW_TRACKING_URI`` in the environment) logs every run as an
MLflow run once its manifest is final: parameters in effect, metrics, tags (run id, recipe, git commit, lineage,
cycle) and the run's manifest, index and executed notebooks' HTML. The cycles of a lineage are children of one
parent run. Logging never fails a run; its outcome is noted in the manifest (``notes.tracking``), and ``flywheel
track RUN`` logs a run (again) later, updating the same MLflow run.

    from flywheel_lib.tracking import tracking_for, track_run
    t = tracking_for(recipe)          # at the door: the setting, checked
    track_run(run_dir, t)             # at the end: log, note the outcome
"""

from .flatten import metrics_of, params_of, tags_of
from .record import track_run
from .settings import TRACKING_KEY, Tracking, store_uri, tracking_for

__all__ = ["TRACKING_KEY", "Tracking", "tracking_for", "track_run", "store_uri", "params_of", "metrics_of", "tags_of"]
