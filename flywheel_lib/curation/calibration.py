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
floor (``min_kappa``) is excluded in any case.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable

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
        except Exception:  # degenerate table (one class only)
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
    n_eig = float(sum((l >= 1) + (l - np.floor(l)) for l in lam))
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
