"""Closing the loop: multi-cycle runs, budgeted sampling of the promoted model's traffic, lineage reports."""

from .report import lineage_runs, write_multi_report
from .sampling import budget_sample

__all__ = ["budget_sample", "lineage_runs", "write_multi_report"]
