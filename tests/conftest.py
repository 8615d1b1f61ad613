"""Shared fixtures: every test that runs the runner writes into its own temporary runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRIAGESQL = ROOT.parent / "shared" / "data" / "triagesql" / "triagesql_visible.jsonl"
"""The visible TriageSQL rows: ``../shared/data/`` beside the checkout (CI lays a copy of shared/ there too)."""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """A fresh runs folder for this test (FLYWHEEL_RUNS_DIR), with the project root pinned."""
    d = tmp_path / "runs"
    monkeypatch.setenv("FLYWHEEL_RUNS_DIR", str(d))
    monkeypatch.setenv("FLYWHEEL_ROOT", str(ROOT))
    return d


@pytest.fixture
def triagesql_path() -> Path:
    """The TriageSQL file beside the checkout; in CI (``CI=true``) its absence fails instead of skipping."""
    if not TRIAGESQL.exists():
        msg = f"TriageSQL data not found at {TRIAGESQL} (expected ../shared/data beside the checkout)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return TRIAGESQL


@pytest.fixture(scope="session")
def dom():
    """The bundled segments domain over a small store (300 customers); modules that need another size define
    their own ``dom``."""
    from flywheel_lib.domains.segments import SegmentsDomain

    return SegmentsDomain(n_customers=300)
