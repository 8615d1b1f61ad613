"""A run's manifest as MLflow sees it: flat parameters, numeric metrics and tags, within MLflow's limits.

* parameters: every stage's parameters in effect as ``<stage>.<key>`` (a nested mapping adds ``.<subkey>``), values
  as text (strings as they are, everything else as JSON), cut to :data:`MAX_PARAM_VALUE` characters with a marker;
* metrics: every number a stage recorded as ``<stage>.<metric>`` (booleans as 0/1; text is left to the manifest),
  each stage's ``<stage>.duration_s`` and the run's ``duration_s``;
* tags: run id, recipe, status, git commit, lineage, cycle and parent run under ``flywheel.*``.

Names keep to the characters MLflow accepts on every platform (letters, digits, ``_ - . / space``); a name longer
than :data:`MAX_KEY` keeps its start and a hash of the whole. A value that looks like a secret (the recipe loader's
own test) is never sent: it becomes :data:`WITHHELD`.

>>> params_of({"params_in_effect": {"make": {"n_rows": 4, "run_dir": "/x", "opts": {"k": [1, 2]}}}})
{'make.n_rows': '4', 'make.opts.k': '[1, 2]'}
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from typing import Any

__all__ = ["params_of", "metrics_of", "tags_of", "clean_key", "clip", "MAX_KEY", "MAX_PARAM_VALUE", "MAX_TAG_VALUE",
           "WITHHELD", "TAG"]

MAX_KEY = 250
"""MLflow's limit on a parameter, metric or tag name."""
MAX_PARAM_VALUE = 6000
"""MLflow's limit on a parameter value (MLflow >= 2.x)."""
MAX_TAG_VALUE = 8000
"""MLflow's limit on a tag value."""
WITHHELD = "<withheld: looks like a secret>"
TAG = "flywheel."
"""The prefix of every tag the workbench sets."""
_SKIP_PARAMS = ("run_dir",)
"""Parameters set by the runner per run folder: a path, not a choice."""
_BAD = re.compile(r"[^\w./\- ]")


def clean_key(key: str) -> str:
    """A name MLflow accepts: other characters become ``_``, no ``..`` or leading ``/``, at most :data:`MAX_KEY`."""
    k = _BAD.sub("_", str(key)).strip() or "_"
    k = re.sub(r"/+", "/", k).lstrip("/") or "_"
    while ".." in k:
        k = k.replace("..", "._")
    if posixpath.normpath(k) != k:  # e.g. a trailing "/" or "/." part
        k = k.replace("/", "_")
    if len(k) > MAX_KEY:
        k = f"{k[:MAX_KEY - 9]}~{hashlib.sha256(str(key).encode()).hexdigest()[:8]}"
    return k


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    mark = f"... [cut: {len(text)} chars]"
    return text[: limit - len(mark)] + mark


def _secret(key: str, value: Any) -> bool:
    from ..runner.recipe import find_secret

    return find_secret({key.rsplit(".", 1)[-1]: value}) is not None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def params_of(manifest: dict) -> dict[str, str]:
    """Every stage's parameters in effect, flat and as text (see the module docstring)."""
    flat: dict[str, Any] = {}
    for stage, params in (manifest.get("params_in_effect") or {}).items():
        for k, v in (params or {}).items():
            if k not in _SKIP_PARAMS:
                _flat(f"{stage}.{k}", v, flat)
    return {clean_key(k): WITHHELD if _secret(k, v) else clip(_text(v), MAX_PARAM_VALUE) for k, v in flat.items()}


def _number(v: Any) -> float | None:
    """A metric value as MLflow takes it (booleans as 0/1), or None for text, lists and None."""
    return float(v) if isinstance(v, (int, float)) else None


def metrics_of(manifest: dict) -> dict[str, float]:
    """Every numeric metric by ``<stage>.<name>``, stage durations and the run's duration (NaN kept as NaN)."""
    flat: dict[str, Any] = {}
    for stage, metrics in (manifest.get("metrics") or {}).items():
        _flat(stage, metrics or {}, flat)
    for s in manifest.get("stages") or []:
        if isinstance(s.get("duration_s"), (int, float)):
            flat.setdefault(f"{s['name']}.duration_s", s["duration_s"])
    if isinstance(manifest.get("duration_s"), (int, float)):
        flat.setdefault("duration_s", manifest["duration_s"])
    out = {}
    for k, v in flat.items():
        x = _number(v)
        if x is not None:
            out[clean_key(k)] = x if math.isfinite(x) or math.isnan(x) else math.copysign(1.7976931348623157e308, x)
    return out


def tags_of(manifest: dict) -> dict[str, str]:
    """The run's ``flywheel.*`` tags, MLflow's own run name, git commit and description."""
    git = manifest.get("git") or {}
    parent = manifest.get("parent") or {}
    failed = [s["name"] for s in manifest.get("stages") or [] if s.get("status") in ("failed", "interrupted")]
    tags = {
        f"{TAG}run_id": manifest.get("run_id"),
        f"{TAG}kind": "run",
        f"{TAG}recipe": manifest.get("recipe"),
        f"{TAG}recipe_path": manifest.get("recipe_path"),
        f"{TAG}recipe_sha256": manifest.get("recipe_sha256"),
        f"{TAG}status": manifest.get("status"),
        f"{TAG}failed_stage": failed[0] if failed else None,
        f"{TAG}stages": ",".join(s["name"] for s in manifest.get("stages") or []),
        f"{TAG}git_commit": git.get("commit"),
        f"{TAG}git_branch": git.get("branch"),
        f"{TAG}git_dirty": None if git.get("dirty") is None else str(bool(git["dirty"])).lower(),
        f"{TAG}lineage": parent.get("lineage"),
        f"{TAG}cycle": parent.get("cycle"),
        f"{TAG}parent_run": parent.get("parent_run"),
        f"{TAG}from_run": parent.get("from_run"),
        f"{TAG}overrides": json.dumps(manifest["overrides"]) if manifest.get("overrides") else None,
        "mlflow.runName": manifest.get("run_id"),
        "mlflow.source.git.commit": git.get("commit"),
        "mlflow.note.content": manifest.get("description") or None,
    }
    return {k: WITHHELD if _secret(k, v) else clip(str(v), MAX_TAG_VALUE) for k, v in tags.items() if v is not None}
