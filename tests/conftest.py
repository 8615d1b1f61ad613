"""Shared fixtures: every test that runs the runner writes into its own temporary runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
