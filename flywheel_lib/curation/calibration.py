"""How far can each judge be trusted? Judges against the seed's human labels on the calibration hold-out.

Per judge: accuracy, Cohen's kappa with its confidence interval (Cohen 1960; the asymptotic variance of
statsmodels' ``cohens_kappa``), per-category precision and recall, a confusion matrix. An abstention or a
missing verdict is kept as its own column ``<abstain>`` so a judge cannot look better by abstaining on the hard
items. For the panel: Fleiss' kappa (Fleiss 1971, on the items every judge answered), pairwise agreement, and the
correlation of the judges' errors, with the effective number of independent votes the panel is worth:
``n_eff = n / (1 + (n - 1) * mean_rho)`` (the design effect of equicorrelated votes; Kish 1965), beside the
eigenvalue count of Li & Ji (2005, Heredity 95:221-227). Four judges whose errors correlate at 0.5 are worth
1.6 independent votes, which is why unanimity of a correlated panel is weaker evidence than it looks.
:func:`apply_gate` flags judges below a kappa threshold and, if asked, excludes them; a judge below the kappa
floor (``min_kappa``) is excluded in any case. :func:`compare_with_baseline` sets the panel beside a TF-IDF
logistic regression fitted on the same folds (:mod:`flywheel_lib.judges.baseline`): the gate's precision at its
coverage against the baseline's precision on its most confident answers at the same coverage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ._votes import vote_matrix

__all__ = [
    "ABSTAIN",
    "confusion_table",
    "judge_report",
    "per_category",
    "panel_agreement",
    "error_correlation",
    "effective_votes",
    "confused_pairs",
    "apply_gate",
    "panel_record",
    "BaselineComparison",
    "precision_at_coverage",
    "compare_with_baseline",
]

ABSTAIN = "<abstain>"


def _votes_on_gold(verdicts: pd.DataFrame, gold: pd.Series, judges: Iterable[str] | None = None) -> pd.DataFrame:
    gold = gold.dropna()
    return vote_matrix(verdicts, judges=judges, items=gold.index)


def confusion_table(verdicts: pd.DataFrame, gold: pd.Series, judge: str, *, labels: list[str]) -> pd.DataFrame:
    """``gold x predicted`` counts for one judge over the gold items; columns end with ``<abstain>``."""
    v = _votes_on_gold(verdicts, gold, [judge])[judge].map(lambda x: ABSTAIN if x is None else x)
    g = gold.dropna()
    cols = list(labels) + [ABSTAIN]
    tab = pd.crosstab(pd.Categorical(g.to_numpy(), categories=labels), pd.Categorical(v.to_numpy(), categories=cols),
                      dropna=False)
    tab.index.name, tab.columns.name = "gold", "predicted"
    return tab.reindex(index=labels, columns=cols, fill_value=0).astype(int)


def judge_report(verdicts: pd.DataFrame, gold: pd.Series, *, labels: list[str]) -> pd.DataFrame:
    """One row per judge: ``judge, n, answered, abstain_rate, accuracy, kappa, kappa_lo, kappa_hi`` (95% interval)."""
    from statsmodels.stats.inter_rater import cohens_kappa

    rows = []
    for judge in sorted(verdicts["judge"].unique()):
        tab = confusion_table(verdicts, gold, judge, labels=labels)
        sq = np.zeros((len(labels) + 1, len(labels) + 1))
        sq[: len(labels), :] = tab.to_numpy()
        n = int(sq.sum())
        answered = int(sq[:, : len(labels)].sum())
        correct = int(np.trace(sq[: len(labels), : len(labels)]))
        try:
            res = cohens_kappa(sq)  # 95% interval from the asymptotic standard error
            kappa, lo, hi = float(res.kappa), float(res.kappa_low), float(res.kappa_upp)
            lo, hi = float(np.clip(lo, -1.0, 1.0)), float(np.clip(hi, -1.0, 1.0))  # kappa lies in [-1, 1]
        except Exception:  # noqa: BLE001 - degenerate table (one class only)
            kappa = lo = hi = float("nan")
        rows.append({"judge": judge, "n": n, "answered": answered,
                     "abstain_rate": 1 - answered / n if n else float("nan"),
                     "accuracy": correct / n if n else float("nan"), "kappa": kappa, "kappa_lo": lo, "kappa_hi": hi})
    return pd.DataFrame(rows)


def per_category(verdicts: pd.DataFrame, gold: pd.Series, *, labels: list[str]) -> pd.DataFrame:
    """Long table ``judge, category, precision, recall, f1, support`` (abstentions count as misses)."""
    from sklearn.metrics import precision_recall_fscore_support

    rows = []
    g = gold.dropna()
    votes = _votes_on_gold(verdicts, gold)
    for judge in votes.columns:
        pred = votes[judge].map(lambda x: ABSTAIN if x is None else x).to_numpy()
        p, r, f, s = precision_recall_fscore_support(g.to_numpy(), pred, labels=labels, zero_division=0)
        rows += [{"judge": judge, "category": c, "precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
                 for i, c in enumerate(labels)]
    return pd.DataFrame(rows)


def panel_agreement(verdicts: pd.DataFrame, *, labels: list[str]) -> dict:
    """``fleiss_kappa`` (items every judge answered), ``n_complete``, ``pairwise`` agreement and ``pairwise_kappa``
    (DataFrames judge x judge, over the items both answered)."""
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa

    votes = vote_matrix(verdicts)
    judges = list(votes.columns)
    complete = votes.dropna()  # None counts as missing: items every judge answered
    fk = float("nan")
    if len(complete) and len(judges) >= 2:
        counts = np.stack([(complete.to_numpy() == c).sum(axis=1) for c in labels], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            fk = float(fleiss_kappa(counts, method="fleiss"))
    agree = pd.DataFrame(np.eye(len(judges)), index=judges, columns=judges)
    kap = agree.copy()
    for a, b in combinations(judges, 2):
        both = votes[[a, b]].dropna()
        both = both[both[a].notna() & both[b].notna()]
        agree.loc[a, b] = agree.loc[b, a] = float((both[a] == both[b]).mean()) if len(both) else float("nan")
        if len(both):
            with np.errstate(invalid="ignore", divide="ignore"):
                k = cohen_kappa_score(both[a], both[b], labels=labels)
        else:
            k = float("nan")
        kap.loc[a, b] = kap.loc[b, a] = float(k)
    return {"fleiss_kappa": fk, "n_complete": int(len(complete)), "pairwise": agree, "pairwise_kappa": kap}


def error_correlation(verdicts: pd.DataFrame, gold: pd.Series) -> pd.DataFrame:
    """Pearson (phi) correlation of the judges' error indicators (wrong or abstained = 1) over the gold items."""
    votes = _votes_on_gold(verdicts, gold)
    g = gold.dropna()
    err = pd.DataFrame({j: (votes[j].to_numpy() != g.to_numpy()).astype(float) for j in votes.columns}, index=votes.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = err.corr()
    return corr


def effective_votes(corr: pd.DataFrame) -> dict:
    """``n``, ``mean_rho`` (mean off-diagonal error correlation, NaN as 0), ``n_eff`` = n / (1 + (n-1) max(rho, 0))
    and ``n_eff_eigen`` (Li & Ji 2005: sum over eigenvalues of I(l >= 1) + (l - floor(l))).

    >>> c = pd.DataFrame([[1, .5, .5, .5], [.5, 1, .5, .5], [.5, .5, 1, .5], [.5, .5, .5, 1]])
    >>> round(effective_votes(c)["n_eff"], 2)
    1.6
    """
    m = corr.fillna(0.0).to_numpy(dtype=float, copy=True)
    n = m.shape[0]
    np.fill_diagonal(m, 1.0)
    off = m[~np.eye(n, dtype=bool)]
    rho = float(off.mean()) if off.size else 0.0
    n_eff = n / (1 + (n - 1) * max(rho, 0.0)) if n else 0.0
    lam = np.clip(np.linalg.eigvalsh(m), 0, None) if n else np.array([])
    n_eig = float(sum((ev >= 1) + (ev - np.floor(ev)) for ev in lam))
    return {"n": n, "mean_rho": rho, "n_eff": float(n_eff), "n_eff_eigen": n_eig}


def confused_pairs(verdicts: pd.DataFrame, gold: pd.Series, texts: pd.Series, *, top: int = 10,
                   examples: int = 3) -> pd.DataFrame:
    """The category pairs confused most: a judge against the human label, and two judges against each other on
    the same item. Columns ``category_a, category_b, judge_vs_gold, judge_vs_judge, total, examples``
    (``examples``: up to ``examples`` item texts, the most-disputed first)."""
    votes = _votes_on_gold(verdicts, gold)
    g = gold.dropna()
    counts: dict[tuple, list] = {}
    for item, row in zip(votes.index, votes.to_numpy(dtype=object)):
        cats = [c for c in row if c is not None]
        for c in cats:
            if c != g[item]:
                counts.setdefault(tuple(sorted((c, g[item]))), [0, 0, {}])
                e = counts[tuple(sorted((c, g[item])))]
                e[0] += 1
                e[2][item] = e[2].get(item, 0) + 1
        for a, b in combinations(cats, 2):
            if a != b:
                e = counts.setdefault(tuple(sorted((a, b))), [0, 0, {}])
                e[1] += 1
                e[2][item] = e[2].get(item, 0) + 1
    rows = []
    for (a, b), (vg, vj, its) in counts.items():
        ex = sorted(its, key=lambda i: (-its[i], str(i)))[:examples]
        rows.append({"category_a": a, "category_b": b, "judge_vs_gold": vg, "judge_vs_judge": vj, "total": vg + vj,
                     "examples": [f"{texts.get(i, i)} [gold: {g[i]}]" for i in ex]})
    cols = ["category_a", "category_b", "judge_vs_gold", "judge_vs_judge", "total", "examples"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["total", "category_a", "category_b"], ascending=[False, True, True]).head(top).reset_index(drop=True)


def apply_gate(report: pd.DataFrame, *, kappa_threshold: float, exclude: bool,
               min_kappa: float | None = None) -> pd.DataFrame:
    """Add ``flagged`` (kappa below the threshold, or undefined), ``below_floor`` (kappa below ``min_kappa``, or
    undefined, when a floor is set) and ``excluded`` (below the floor, or flagged and ``exclude``): a judge that
    agrees with the human labels little more than chance would is dropped whatever ``exclude`` says.
    Never excludes every judge: if all would go, none is excluded and the report says so in ``gate_note``."""
    out = report.copy()
    out["flagged"] = ~(out["kappa"] >= kappa_threshold)
    out["below_floor"] = ~(out["kappa"] >= min_kappa) if min_kappa is not None else False
    out["excluded"] = out["below_floor"] | (out["flagged"] & bool(exclude))
    out["gate_note"] = ""
    if len(out) and out["excluded"].all():
        out["excluded"] = False
        out["gate_note"] = "every judge is below the threshold; none excluded"
    else:
        floor = out["below_floor"].astype(bool)
        out.loc[floor, "gate_note"] = [f"kappa {'undefined' if pd.isna(k) else f'{k:.3f}'} below min_kappa {min_kappa}"
                                       for k in out.loc[floor, "kappa"]]
    return out


def panel_record(report: pd.DataFrame, confusions: dict[str, pd.DataFrame], *, kappa_threshold: float,
                 exclude: bool, panel: str = "", taxonomy: str = "", min_kappa: float | None = None) -> dict:
    """The ``panel.json`` record: judges kept and excluded, the gate, and each judge's confusion matrix
    (``{gold: {predicted: count}}``)."""
    kept = report.loc[~report["excluded"], "judge"].tolist()
    return {
        "panel": panel,
        "taxonomy": taxonomy,
        "kappa_threshold": kappa_threshold,
        "exclude_below_threshold": bool(exclude),
        "judges": kept,
        "excluded": report.loc[report["excluded"], "judge"].tolist(),
        "flagged": report.loc[report["flagged"], "judge"].tolist(),
        "min_kappa": min_kappa,
        "below_min_kappa": (report.loc[report["below_floor"].astype(bool) & report["excluded"], "judge"].tolist()
                            if "below_floor" in report else []),
        "kappa": {r.judge: (None if pd.isna(r.kappa) else float(r.kappa)) for r in report.itertuples()},
        "confusion": {j: {g: {p: int(c) for p, c in row.items()} for g, row in m.iterrows()} for j, m in confusions.items()},
    }


def precision_at_coverage(verdicts: pd.DataFrame, gold: pd.Series, confidence: pd.Series,
                          coverage: float) -> dict:
    """One judge's precision on its ``coverage`` share most confident answers over the gold items.

    ``verdicts``: that judge's rows (``item_id, category``); ``confidence``: ``item_id -> score`` (higher is
    surer). Returns ``{"coverage", "accepted", "correct", "precision"}`` (precision None when nothing is taken).

    >>> v = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "category": ["x", "y", "x", "x"]})
    >>> g = pd.Series({"a": "x", "b": "x", "c": "x", "d": "y"})
    >>> precision_at_coverage(v, g, pd.Series({"a": .9, "b": .8, "c": .7, "d": .6}), 0.5)["precision"]
    0.5
    """
    gold = gold.dropna()
    v = verdicts[verdicts["item_id"].isin(gold.index) & verdicts["category"].notna()].drop_duplicates("item_id")
    conf = confidence.reindex(v["item_id"].astype(str)).to_numpy(dtype=float)
    order = np.argsort(-np.nan_to_num(conf, nan=-np.inf), kind="stable")
    take = min(int(round(float(coverage) * len(gold))), len(v))
    top = v.iloc[order[:take]]
    correct = int((top["category"].to_numpy() == gold.reindex(top["item_id"]).to_numpy()).sum())
    return {"coverage": take / len(gold) if len(gold) else float("nan"), "accepted": take, "correct": correct,
            "precision": correct / take if take else None}


@dataclass
class BaselineComparison:
    """The panel against the baseline judge, on the same out-of-fold seed items."""

    baseline_kappa: float
    """The baseline's Cohen's kappa (NaN when undefined)."""
    baseline_kappa_lo: float
    """Lower end of its 95% interval."""
    baseline_kappa_hi: float
    """Upper end of its 95% interval."""
    best_judge: str | None
    """The panel judge with the highest kappa (None when no judge has one)."""
    best_kappa: float
    """That judge's kappa."""
    gate_precision: float | None
    """The gate's out-of-fold precision (None when it accepts nothing)."""
    gate_coverage: float
    """The share of the seed items the gate labels."""
    baseline_precision: float | None
    """The baseline's precision on its most confident answers at the gate's coverage."""
    panel_beats_baseline: bool
    """The gate is more precise than the baseline at the same coverage."""
    best_judge_beats_baseline: bool
    """The best panel judge's kappa is above the baseline's."""

    def sentence(self) -> str:
        def f(x):
            return "n/a" if x is None or pd.isna(x) else f"{x:.3f}"

        if self.gate_precision is None:
            gate = "the gate accepts none of the out-of-fold seed items, so it adds no label at any precision"
        else:
            gate = (f"the gate's out-of-fold precision is {f(self.gate_precision)} at coverage "
                    f"{self.gate_coverage:.3f}; the baseline (TF-IDF logistic regression, same folds) is "
                    f"{f(self.baseline_precision)} on its most confident answers at the same coverage")
        judge = (f"the best judge ({self.best_judge}) has kappa {f(self.best_kappa)} against the baseline's "
                 f"{f(self.baseline_kappa)} [{f(self.baseline_kappa_lo)}, {f(self.baseline_kappa_hi)}]")
        if self.panel_beats_baseline and self.best_judge_beats_baseline:
            verdict = "The panel beats the baseline"
        elif self.panel_beats_baseline:
            verdict = "The gate beats the baseline, but no single judge does"
        else:
            verdict = "WARNING: the panel does not beat the baseline"
        return f"{verdict}: {gate}; {judge}."

    def as_dict(self) -> dict:
        def clean(x):
            return None if isinstance(x, float) and np.isnan(x) else x

        return {k: clean(v) for k, v in self.__dict__.items()} | {"sentence": self.sentence()}


def compare_with_baseline(report: pd.DataFrame, baseline_verdicts: pd.DataFrame, gold: pd.Series, choice: dict, *,
                          labels: list[str], confidence: pd.Series | None = None) -> BaselineComparison:
    """The panel (``report`` of :func:`judge_report`, and the gate ``choice`` with ``precision`` and ``coverage``)
    against the baseline judge's out-of-fold verdicts on the same ``gold`` items.

    ``confidence``: ``item_id -> score`` ranking the baseline's answers (default: read from its verdicts with
    :func:`flywheel_lib.judges.baseline.confidence`). A gate that accepts nothing does not beat the baseline."""
    if confidence is None:
        from ..judges.baseline import confidence as read_confidence

        confidence = read_confidence(baseline_verdicts)
    names = baseline_verdicts["judge"].unique()
    if len(names) != 1:
        raise ValueError(f"compare_with_baseline: expected one baseline judge's verdicts, got {list(names)}")
    b = judge_report(baseline_verdicts, gold, labels=labels).iloc[0]
    k = report.dropna(subset=["kappa"])
    best = k.loc[k["kappa"].idxmax()] if len(k) else None
    coverage = float(choice.get("coverage") or 0.0)
    gate_p = choice.get("precision")
    gate_p = None if gate_p is None or pd.isna(gate_p) else float(gate_p)
    base_p = precision_at_coverage(baseline_verdicts, gold, confidence, coverage)["precision"]
    beats = gate_p is not None and (base_p is None or gate_p > base_p)
    best_kappa = float(best["kappa"]) if best is not None else float("nan")
    best_beats = best is not None and (pd.isna(b["kappa"]) or best_kappa > float(b["kappa"]))
    return BaselineComparison(float(b["kappa"]), float(b["kappa_lo"]), float(b["kappa_hi"]),
                              None if best is None else str(best["judge"]), best_kappa, gate_p, coverage, base_p,
                              bool(beats), bool(best_beats))
