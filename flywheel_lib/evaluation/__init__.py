"""Evaluation: batched generation per variant, metrics with Wilson intervals, McNemar comparisons, promotion, plots.

    from flywheel_lib.evaluation import VariantGenerator, score_predictions, item_outcomes, compute_metrics
    preds = score_predictions(eval_items, gen.generate(texts, variant="curated"), variant="curated", domain=dom)
    metrics = compute_metrics(preds); outcomes = item_outcomes(preds)
    decision = decide_promotion(outcomes, candidate="curated", baseline="production_only")

torch/transformers load only when :class:`VariantGenerator` is built.
"""

from .compare import SEED_TABLES, compare_variants, mcnemar_pair, seed_tables
from .generate import BASE_VARIANT, VariantGenerator, openai_generate, score_predictions, select_eval_items
from .metrics import (
    METRICS,
    category_recall,
    compute_metrics,
    confusion,
    item_outcomes,
    manifest_metrics,
    predicted_label,
    wilson,
)
from .plots import plot_category_recall, plot_confusion, plot_metric_bars, plot_training_loss
from .promote import decide_promotion

__all__ = [
    "SEED_TABLES", "compare_variants", "mcnemar_pair", "seed_tables",
    "BASE_VARIANT", "VariantGenerator", "openai_generate", "score_predictions", "select_eval_items",
    "METRICS", "category_recall", "compute_metrics", "manifest_metrics", "confusion", "item_outcomes",
    "predicted_label", "wilson",
    "plot_category_recall", "plot_confusion", "plot_metric_bars", "plot_training_loss",
    "decide_promotion",
]
