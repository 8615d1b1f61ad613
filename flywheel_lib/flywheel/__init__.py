"""Closing the loop: multi-cycle runs, budgeted sampling of the promoted model's traffic, lineage reports."""

from .lineage import cycle_metrics, cycle_summary, cycle_verdict, lineage_chain
from .lineage_report import lineage_runs, write_multi_report
from .sampling import budget_sample
from .traffic import answer_correct, log_traffic

__all__ = ["answer_correct", "budget_sample", "cycle_metrics", "cycle_summary", "cycle_verdict", "lineage_chain",
           "lineage_runs", "log_traffic", "write_multi_report"]
