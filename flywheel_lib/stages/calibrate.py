"""01_calibrate: how far each judge can be trusted, which gate the panel gets, and what a baseline would do.

The steps, in the notebook's order: :func:`open_calibration`, :func:`split_seed` (cross-fitting folds),
:func:`judge_out_of_fold`, :func:`score_judges` (the kappa gate), :func:`baseline`, :func:`panel_agreement`,
:func:`confused_pairs`, then in :mod:`flywheel_lib.stages.calibrate_gate` the gate's reasoning check and strategy,
the comparison with the baseline, the panel record, the anchoring probe and this cycle's drift sample.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig


@dataclass(frozen=True)
class CalibrateConfig(StageConfig):
    """01_calibrate's parameters (their help: the notebook's parameters cell)."""

    seed: int
    domain: str
    taxonomy: str
    panel: str
    cache_dir: str
    max_failure_rate: float
    cv_folds: int
    fewshot_fraction: float
    max_holdout: int
    kappa_threshold: float
    exclude_below_threshold: bool
    min_kappa: float
    rationale_similarity: float
    k_of_n: int
    target_precision: float
    gate_min_coverage: float
    anchoring_n: int
    drift_slices: int


@dataclass
class Calibration:
    """What 01's steps share: the stage, the seed and its split, the out-of-fold verdicts, and each step's result."""

    st: Any
    cfg: CalibrateConfig
    tax: Any
    dom: Any
    seed_items: pd.DataFrame = field(default_factory=pd.DataFrame)
    split: pd.DataFrame = field(default_factory=pd.DataFrame)
    fewshot: pd.DataFrame = field(default_factory=pd.DataFrame)
    holdout: pd.DataFrame = field(default_factory=pd.DataFrame)
    panel: Any = None
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline_in_panel: list[str] = field(default_factory=list)
    baseline_verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline_kappa: float = float("nan")
    agreement: dict = field(default_factory=dict)
    effective_votes: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    gate: Any = None

    @property
    def gold(self) -> pd.Series:
        """The human labels of the judged (out-of-fold) seed items, by item id."""
        return self.holdout.set_index("item_id")["label"]

    @property
    def kept(self) -> list[str]:
        """The judges the kappa gate kept."""
        return self.report.loc[~self.report["excluded"], "judge"].tolist()

    def fit_pool(self, train: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
        """What a judge is fitted on: ``train`` and the taxonomy's own examples, never a judged text."""
        from flywheel_lib.taxonomy_lab import fit_pool

        return fit_pool(train, self.tax, exclude=judged["text"])


def say_warnings(lines: list[str]) -> None:
    """Loud: each warning on stdout and stderr (the command's output)."""
    for w in lines:
        print(f"WARNING: {w}")
        print(f"WARNING: {w}", file=sys.stderr)


def open_calibration(st, cfg: CalibrateConfig) -> Calibration:
    """The taxonomy, the domain (a domain without a plug-in still calibrates), the panel file checked."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain

    tax = load_taxonomy(cfg.taxonomy)
    try:
        dom = get_domain(cfg.domain)
    except Exception as e:  # noqa: BLE001 - a domain without a plug-in still calibrates (judges that need it say so)
        print(f"domain {cfg.domain!r} unavailable: {e}")
        dom = None
    st.input_file(cfg.panel)
    st.note("taxonomy", tax.version_id)
    return Calibration(st, cfg, tax, dom)


def split_seed(c: Calibration) -> pd.DataFrame:
    """Cross-fitting folds over the seed, stratified by category and seeded (or one few-shot / hold-out split):
    writes ``calibration_split``; warns of what the seed cannot support (a class with no rows). Returns the
    labels by fold."""
    from flywheel_lib.curation.split import calibration_split, check_disjoint
    from flywheel_lib.curation.warnings import recipe_warnings

    st, cfg = c.st, c.cfg
    items = st.read("items", contract="items")
    seed_items = items[items["source"] == "seed"].reset_index(drop=True)
    if "reason_key" not in seed_items.columns:  # user data without gold reasons: judges calibrate on labels alone
        print("items have no reason_key column: the seed carries no gold reasons")
        seed_items["reason_key"] = None
    c.tax.check_labels(seed_items["label"], where="seed rows of items", ids=seed_items["item_id"],
                       allow_missing=False)
    split = calibration_split(seed_items, cv_folds=cfg.cv_folds, fraction=cfg.fewshot_fraction,
                              max_holdout=cfg.max_holdout, seed=cfg.seed)
    c.seed_items, c.split = seed_items, split
    c.fewshot = seed_items[seed_items["item_id"].isin(split.loc[split["split"] == "fewshot", "item_id"])]
    c.holdout = seed_items[seed_items["item_id"].isin(split.loc[split["split"] == "holdout", "item_id"])]
    if not cfg.cv_folds:
        check_disjoint(c.fewshot["item_id"], c.holdout["item_id"])
    st.write("calibration_split", split)
    st.note("calibration_design", f"{cfg.cv_folds}-fold cross-fitting over the seed" if cfg.cv_folds else
            f"one split: {cfg.fewshot_fraction:.0%} few-shot pool")
    st.metric("cv_folds", cfg.cv_folds)
    st.metric("n_fewshot", len(c.fewshot) if not cfg.cv_folds
              else int(len(seed_items) * (cfg.cv_folds - 1) / cfg.cv_folds))
    st.metric("n_holdout", len(c.holdout), headline=True)
    c.warnings = recipe_warnings(c.tax, seed_items=seed_items)  # e.g. a taxonomy class with no seed rows
    say_warnings(c.warnings)
    st.note("warnings", c.warnings)
    return pd.crosstab(split["label"], split["fold"] if cfg.cv_folds else split["split"], margins=True)


def judge_out_of_fold(c: Calibration) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Each fold's items judged by a panel fitted on the other folds (with ``cv_folds: 0``, by a panel fitted on
    the few-shot pool); verdicts cached. Writes ``calibration_verdicts``. Returns the per-fold log (None without
    folds) and the panel's call statistics."""
    from flywheel_lib.judges import load_panel
    from flywheel_lib.judges.crossfit import cross_fit

    st, cfg, tax, dom = c.st, c.cfg, c.tax, c.dom
    log = None
    if cfg.cv_folds:
        cf = cross_fit(lambda: load_panel(cfg.panel, taxonomy=tax, domain=dom), c.seed_items, c.split,
                       judge_ids=c.holdout["item_id"], pool=c.fit_pool, cache_dir=cfg.cache_dir, progress=True,
                       max_failure_rate=cfg.max_failure_rate)
        c.verdicts, stats, log = cf.verdicts, cf.stats, cf.log
        c.panel = cf.panel  # the fold panels as one: a seed item is re-judged by the panel fitted without it
    else:  # judges fit on the few-shot pool plus the taxonomy's own examples (never a hold-out text)
        c.panel = load_panel(cfg.panel, taxonomy=tax, domain=dom).fit(c.fit_pool(c.fewshot, c.holdout))
        c.verdicts = c.panel.judge(c.holdout, cache_dir=cfg.cache_dir, progress=True,
                                   max_failure_rate=cfg.max_failure_rate)
        stats = c.panel.stats_
    st.write("calibration_verdicts", c.verdicts, contract="verdicts")
    st.metric("calibration_cost_usd", float(c.verdicts["cost_usd"].fillna(0).sum()))
    print(c.panel)
    return log, stats


def score_judges(c: Calibration) -> pd.DataFrame:
    """Each judge against the human labels (accuracy, kappa with its interval), the kappa gate (flagged below
    ``kappa_threshold``, dropped below ``min_kappa`` unless that drops every judge): writes ``calibration``. Returns
    precision and recall per category and judge."""
    from flywheel_lib.curation import calibration as cal

    st, cfg, gold = c.st, c.cfg, c.gold
    c.report = report = cal.apply_gate(cal.judge_report(c.verdicts, gold, labels=c.tax.ids),
                                       kappa_threshold=cfg.kappa_threshold, exclude=cfg.exclude_below_threshold,
                                       min_kappa=cfg.min_kappa)
    st.write("calibration", report)
    for r in report.itertuples():
        st.metric(f"kappa_{r.judge}", None if pd.isna(r.kappa) else round(float(r.kappa), 4), headline=True)
        st.metric(f"accuracy_{r.judge}", round(float(r.accuracy), 4))
    st.note("gate", {"kappa_threshold": cfg.kappa_threshold, "exclude": cfg.exclude_below_threshold,
                     "flagged": report.loc[report.flagged, "judge"].tolist(),
                     "excluded": report.loc[report.excluded, "judge"].tolist(), "min_kappa": cfg.min_kappa,
                     "below_min_kappa": report.loc[report.below_floor & report.excluded, "judge"].tolist()})
    floored = report[report.below_floor & report.excluded]
    if len(floored):
        print("dropped from the gate: "
              + "; ".join(f"{r.judge} (kappa {'undefined' if pd.isna(r.kappa) else f'{r.kappa:.3f}'} < min_kappa "
                          f"{cfg.min_kappa})" for r in floored.itertuples())
              + ". Their verdicts stay in the tables above; the gate and 02_judge do without them.")
    elif report.below_floor.any():
        print(f"every judge is below min_kappa {cfg.min_kappa}: none dropped (a gate needs judges); treat the labels "
              "with care")
    else:
        print(f"every judge is at or above min_kappa {cfg.min_kappa}")
    return cal.per_category(c.verdicts, gold, labels=c.tax.ids).pivot(index="category", columns="judge",
                                                                       values=["precision", "recall"])


def baseline(c: Calibration) -> pd.DataFrame:
    """The TF-IDF logistic-regression baseline judge on the same folds (the panel's own ``backend: baseline`` judge
    where it holds one): ``kappa_baseline`` with its interval. Returns the judges and the baseline side by side."""
    from flywheel_lib.curation import calibration as cal
    from flywheel_lib.judges.baseline import BASELINE_BACKEND, baseline_panel
    from flywheel_lib.judges.crossfit import cross_fit

    st, cfg = c.st, c.cfg
    c.baseline_in_panel = in_panel = [j.name for j in c.panel.judges if j.config.backend == BASELINE_BACKEND]
    if in_panel:  # the panel holds one: its out-of-fold verdicts are the baseline's
        c.baseline_verdicts = c.verdicts[c.verdicts["judge"] == in_panel[0]]
    else:
        name = "tfidf_baseline" if "baseline" in c.panel.names else "baseline"

        def make_base():
            return baseline_panel(taxonomy=c.tax, domain=c.dom, name=name)

        if cfg.cv_folds:
            c.baseline_verdicts = cross_fit(make_base, c.seed_items, c.split, judge_ids=c.holdout["item_id"],
                                            pool=c.fit_pool, cache_dir=cfg.cache_dir).verdicts
        else:
            c.baseline_verdicts = make_base().fit(c.fit_pool(c.fewshot, c.holdout)).judge(
                c.holdout, cache_dir=cfg.cache_dir, progress=False)
    base_report = cal.judge_report(c.baseline_verdicts, c.gold, labels=c.tax.ids)
    base = base_report.iloc[0]
    c.baseline_kappa = base.kappa
    for suffix, val in (("", base.kappa), ("_lo", base.kappa_lo), ("_hi", base.kappa_hi)):
        st.metric(f"kappa_baseline{suffix}", None if pd.isna(val) else round(float(val), 4), headline=suffix == "")
    st.metric("accuracy_baseline", round(float(base.accuracy), 4))
    shown = pd.concat([c.report[~c.report["judge"].isin(in_panel)],
                       base_report.assign(judge=base_report["judge"] + " (baseline)")], ignore_index=True)
    return shown[["judge", "n", "abstain_rate", "accuracy", "kappa", "kappa_lo", "kappa_hi"]]


def confusions(c: Calibration) -> dict[str, pd.DataFrame]:
    """Each judge's confusion matrix against the human labels (an abstention is its own column)."""
    from flywheel_lib.curation import calibration as cal

    return {j: cal.confusion_table(c.verdicts, c.gold, j, labels=c.tax.ids) for j in c.panel.names}


@dataclass
class Agreement:
    """Pairwise agreement, the correlation of the judges' errors, and the effective number of independent votes."""

    pairwise: pd.DataFrame
    error_correlation: pd.DataFrame
    effective_votes: dict


def panel_agreement(c: Calibration) -> Agreement:
    """Fleiss' kappa, pairwise agreement, error correlation and ``panel_n_eff`` (how many independent votes the
    panel is worth: ``n / (1 + (n-1) * mean error correlation)``)."""
    from flywheel_lib.curation import calibration as cal

    st = c.st
    c.agreement = agreement = cal.panel_agreement(c.verdicts, labels=c.tax.ids)
    corr = cal.error_correlation(c.verdicts, c.gold)
    c.effective_votes = eff = cal.effective_votes(corr)
    st.metric("fleiss_kappa", None if pd.isna(agreement["fleiss_kappa"]) else round(agreement["fleiss_kappa"], 4),
              headline=True)
    st.metric("panel_n_eff", round(eff["n_eff"], 3), headline=True)
    st.metric("panel_mean_error_corr", round(eff["mean_rho"], 4))
    st.note("effective_votes", eff)
    return Agreement(agreement["pairwise"], corr, eff)


def confused_pairs(c: Calibration) -> pd.DataFrame:
    """The category pairs the judges confuse most, with example requests: written as ``confused_pairs``."""
    from flywheel_lib.curation import calibration as cal

    texts = c.holdout.set_index("item_id")["text"]
    pairs = cal.confused_pairs(c.verdicts, c.gold, texts, top=10)
    c.st.write("confused_pairs", pairs.assign(examples=pairs["examples"].map(lambda x: " || ".join(x))))
    if len(pairs):
        c.st.note("most_confused_pair", f"{pairs.iloc[0].category_a} / {pairs.iloc[0].category_b}")
    return pairs
