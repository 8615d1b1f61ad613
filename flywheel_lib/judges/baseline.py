"""The baseline judge: TF-IDF word and character n-grams with one logistic regression, nothing else.

What any panel must beat to be worth its cost: the plainest supervised text classifier, fitted on the same seed
and cross-fitted the same way as the panel's judges (:func:`~flywheel_lib.judges.crossfit.cross_fit`). It is the
:class:`~flywheel_lib.judges.linear.LinearJudge` with its extras off: no per-item schema view, no embeddings, no
abstention (it answers every item, with its top class probability in the rationale, ``p=0.83``, which
:func:`confidence` reads back to rank its answers by). 01_calibrate scores it beside every panel; ``backend:
baseline`` also puts it in a panel file.

    from flywheel_lib.judges.baseline import baseline_panel
    pan = baseline_panel(taxonomy=tax).fit(seed_rows)
    v = pan.judge(items, cache_dir=None)
    confidence(v)   # item_id -> top class probability
"""

from __future__ import annotations

import re

import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..records import Verdict
from .linear import LinearJudge, LinearParams

__all__ = ["BaselineJudge", "baseline_panel", "confidence", "BASELINE_BACKEND"]

BASELINE_BACKEND = "baseline"
_RATIONALE = "p={p:.4f}"
_P = re.compile(r"^p=([0-9.]+)$")


class BaselineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float = 4.0
    """Inverse regularisation strength of the logistic regression."""
    max_features: int = 50000
    """Vocabulary cap per vectoriser (word 1-2-grams, character 2-5-grams)."""


class BaselineJudge(LinearJudge):
    """TF-IDF (word + char n-grams) logistic regression; never abstains, never reads context."""

    Params = BaselineParams

    def __init__(self, config, *, taxonomy, domain=None):
        super().__init__(config, taxonomy=taxonomy, domain=domain)
        self.params = LinearParams(C=self.params.C, max_features=self.params.max_features, min_proba=0.0,
                                   context=False, embed=0.0, solver="lbfgs", class_weight=None)

    def predict(self, items: pd.DataFrame) -> list[Verdict]:
        if not len(items):
            return []
        out = super().predict(items.drop(columns="context", errors="ignore"))
        X = self._features(items["text"].astype(str).tolist(), [""] * len(items))
        top = self.clf_.predict_proba(X).max(1)
        for v, p in zip(out, top):
            v.rationale = _RATIONALE.format(p=float(p))
        return out


def confidence(verdicts: pd.DataFrame) -> pd.Series:
    """``item_id -> top class probability`` read from a baseline judge's verdicts (NaN where it cannot be read)."""
    p = verdicts["rationale"].astype(str).str.extract(_P)[0].astype(float)
    return pd.Series(p.to_numpy(), index=verdicts["item_id"].astype(str).to_numpy(), name="confidence")


def baseline_panel(*, taxonomy, domain=None, name: str = "baseline", C: float = 4.0):
    """A one-judge panel holding the baseline judge (for cross-fitting beside a panel that lacks one)."""
    from .config import JudgeConfig, PanelConfig
    from .panel import Panel

    jc = JudgeConfig(name=name, backend=BASELINE_BACKEND, model="tfidf-logreg", params={"C": C})
    cfg = PanelConfig(name="baseline", description="TF-IDF word/char n-gram logistic regression", judges=[jc])
    return Panel(cfg, [BaselineJudge(jc, taxonomy=taxonomy, domain=domain)], taxonomy=taxonomy, domain=domain)
