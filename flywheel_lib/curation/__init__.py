"""Curation: calibration statistics, the consensus gate, conflict detection, the resolution decision tree,
the human review queue and the training sets built from them.

Modules, one method each: ``split`` (stratified few-shot / hold-out split), ``calibration`` (per-judge and
panel statistics, the kappa gate), ``consensus/`` (``unanimous``, ``k_of_n``, ``majority``, ``dawid_skene``),
``conflicts`` (exact and paraphrase conflicts between sources), ``resolve`` (the seed's decision tree),
``review`` (export / import of the review queue, who answers it), ``reviewers`` (several reviewers per item:
assignment, agreement, resolution), ``audit`` (the gate's precision on production
from a reviewed stratified sample), ``datasets`` (production_only, naive_merge, curated) and
``plots``.
"""

from __future__ import annotations

from ._votes import normalize_reason_key, vote_matrix
from .audit import AuditEstimate, audit_precision, audit_size, draw_audit
from .conflicts import find_conflicts
from .consensus import (
    STRATEGIES,
    ConsensusStrategy,
    DawidSkene,
    KOfN,
    MajorityVote,
    Unanimous,
    make_strategy,
    precision_coverage,
)
from .datasets import build_train_sets
from .resolve import check_outputs, resolve
from .review import (
    ReviewError,
    ReviewSource,
    decide_review_source,
    export_review,
    import_review,
    review_queue,
    with_audit,
)
from .reviewers import (
    Agreement,
    ReviewAggregator,
    agreement,
    assign_reviewers,
    export_assigned,
    read_answers,
    requeue_file,
    review_files,
)
from .split import check_disjoint, stratified_split

__all__ = [
    "Agreement",
    "AuditEstimate",
    "ReviewAggregator",
    "agreement",
    "assign_reviewers",
    "export_assigned",
    "read_answers",
    "requeue_file",
    "review_files",
    "ReviewSource",
    "audit_precision",
    "audit_size",
    "decide_review_source",
    "draw_audit",
    "with_audit",
    "STRATEGIES",
    "ConsensusStrategy",
    "DawidSkene",
    "KOfN",
    "MajorityVote",
    "Unanimous",
    "ReviewError",
    "build_train_sets",
    "check_disjoint",
    "check_outputs",
    "export_review",
    "find_conflicts",
    "import_review",
    "make_strategy",
    "resolve",
    "review_queue",
    "stratified_split",
    "normalize_reason_key",
    "precision_coverage",
    "vote_matrix",
]
