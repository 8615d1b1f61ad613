"""Whether a run is tracked in MLflow, and where: decided at the door, before any stage runs.

Tracking is off unless asked for. The first of these that says something decides:

* ``tracking: mlflow`` (or ``off``) in a recipe's ``params``, or ``--set tracking=mlflow``;
* ``FLYWHEEL_TRACKING=mlflow`` (or ``off``) in the environment;
* ``MLFLOW_TRACKING_URI`` set in the environment (on).

The store is ``$MLFLOW_TRACKING_URI``, else a local SQLite store beside the runs folder
(``outputs/mlruns/mlflow.db``, artifacts under ``outputs/mlruns/artifacts/``). The experiment is
``$MLFLOW_EXPERIMENT_NAME``, else the recipe's name.

``tracking`` is a runner setting, not a stage parameter: no notebook declares it, so the runner checks the recipe
against the notebooks without it (:meth:`Tracking.strip`).

>>> Tracking.from_value("mlflow", "params.tracking").on
True
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = ["TRACKING_KEY", "Tracking", "tracking_for", "store_uri", "artifact_root", "experiment_name", "redact_uri"]

TRACKING_KEY = "tracking"
"""The recipe parameter (``params.tracking``) that turns tracking on or off."""
BACKENDS = ("mlflow",)
_OFF = ("off", "none", "no", "false", "")


@dataclass(frozen=True)
class Tracking:
    """Where a run's tracking stands, as read at the door."""

    backend: str | None
    """``"mlflow"``, or None when tracking is off."""
    source: str
    """What decided it: ``params.tracking``, ``FLYWHEEL_TRACKING``, ``MLFLOW_TRACKING_URI`` or ``default`` (off)."""

    @property
    def on(self) -> bool:
        return self.backend is not None

    @classmethod
    def from_value(cls, value: Any, source: str) -> Tracking:
        """``"mlflow"``/``True`` turn it on; ``"off"``, ``"none"``, ``False``, ``None`` off; anything else is an error."""
        from ..runner.recipe import RecipeError

        if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
            return cls(None, source)
        if value is True:
            return cls("mlflow", source)
        if isinstance(value, str) and value.strip().lower() in BACKENDS:
            return cls(value.strip().lower(), source)
        raise RecipeError(f"{source} = {value!r}: expected one of {', '.join(BACKENDS)} or off")

    def strip(self, recipe):
        """``recipe`` without ``params.tracking``: what the notebooks are checked against."""
        if TRACKING_KEY not in recipe.params:
            return recipe
        r = recipe.model_copy(deep=True)
        r.params.pop(TRACKING_KEY)
        return r

    def check_installed(self, where: str = "") -> None:
        """A missing MLflow is an error naming the extra, raised before any stage runs."""
        from ..runner.recipe import RecipeError

        if self.on and find_spec("mlflow") is None:
            raise RecipeError(
                f"{where + ': ' if where else ''}{self.source} asks for MLflow tracking, but mlflow is not installed; "
                "install the extra (pip install -e '.[tracking]') or set tracking: off")


def tracking_for(recipe) -> Tracking:
    """The run's tracking setting (see the module docstring), checked: an unknown value or a missing MLflow fails here."""
    where = recipe.path or recipe.name
    if TRACKING_KEY in recipe.params:
        t = Tracking.from_value(recipe.params[TRACKING_KEY], f"{where}: params.{TRACKING_KEY}")
    elif os.environ.get("FLYWHEEL_TRACKING") is not None:
        t = Tracking.from_value(os.environ["FLYWHEEL_TRACKING"], "FLYWHEEL_TRACKING")
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        t = Tracking("mlflow", "MLFLOW_TRACKING_URI")
    else:
        t = Tracking(None, "default")
    t.check_installed()
    return t


def _mlruns() -> Path:
    from ..paths import runs_dir

    return runs_dir().parent / "mlruns"


def store_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the local SQLite store ``outputs/mlruns/mlflow.db`` (made on first use)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    _mlruns().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{_mlruns() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside the local store, else wherever the server says (None)."""
    return str(_mlruns() / "artifacts") if uri.startswith("sqlite:///") and uri.endswith(
        str(_mlruns() / "mlflow.db")) else None


def experiment_name(manifest: dict) -> str:
    """``$MLFLOW_EXPERIMENT_NAME``, else the recipe's name (a lineage's cycles share their recipe's experiment)."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or str(manifest.get("recipe") or "flywheel")


def redact_uri(text: str) -> str:
    """``http://user:pass@host`` -> ``http://***@host``, wherever it appears in ``text``."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@", r"\1***@", str(text))
