"""TriageSQL: user data for text-to-SQL question triage, with a schema per item and no executor.

The public TriageSQL test rows (Zhang et al., 2020, "Did You Ask a Good Question? A Cross-Domain Question
Intention Classification Benchmark for Text-to-SQL"; CC BY-SA 4.0) pair each question with the tables it is asked
against and a human class. The domain has no global catalog (each item's schema travels in its ``context`` as
JSON), no SQL executor (the data set has no gold SQL) and no generator: its data is loaded by 00_data with
``source_kind: files``.

>>> dom = TriageSQLDomain()
>>> dom.check_output("SELECT 1").valid
False
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .base import DomainError, OutputCheck

__all__ = ["TriageSQLDomain"]


class TriageSQLDomain:
    """Text-to-SQL triage over per-item schemas; outputs are not checked or executed."""

    name = "triagesql"

    def __init__(self, **options: Any):
        self.options = dict(options)
        """Unused options, kept so recipes can pass domain options uniformly."""
        self.catalog: dict[str, Any] = {}
        """No global schema: each item carries its own in ``context`` (JSON ``{table: [columns]}``)."""

    def check_output(self, output: str) -> OutputCheck:
        """Always invalid: there is no SQL executor or gold SQL for this domain."""
        return OutputCheck(False, "no executor: the triagesql domain cannot check or run SQL", ())

    def execute(self, output: str) -> frozenset:
        raise DomainError("no executor: the triagesql domain cannot run SQL (the data set has no gold queries)")

    def generate(self, seed: int = 0, **sizes: int) -> dict[str, pd.DataFrame]:
        raise NotImplementedError(
            "the triagesql domain has no generator: it is user data. Run 00_data with source_kind: files and "
            "data_path: /work/shared/data/triagesql/triagesql_visible.jsonl (see params/triagesql.params.yaml)"
        )
