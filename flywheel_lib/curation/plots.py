"""Plots for 01_calibrate and 03_resolve (matplotlib; each function returns a Figure).

A plot with nothing to show (no judge with a kappa, no strategy, no resolution) is a small figure that says so in a
sentence (:func:`nothing_to_show`), never empty axes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

__all__ = ["nothing_to_show", "plot_confusions", "plot_kappa", "plot_matrix", "plot_precision_coverage", "plot_actions",
           "plot_selection_bias", "plot_train_sets", "plot_anchoring"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def nothing_to_show(sentence: str):
    """A small figure holding only ``sentence``: what a plot with no data shows instead of empty axes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, sentence, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def _error_bars(value, lo, hi) -> np.ndarray:
    """``[[below], [above]]`` error bar lengths, never negative (an interval end a hair inside its value, e.g. a
    precision of 1.0 whose upper bound rounds below it, draws no bar instead of failing) and 0 where undefined."""
    value, lo, hi = (np.asarray(x, dtype=float) for x in (value, lo, hi))
    return np.clip(np.nan_to_num(np.vstack([value - lo, hi - value])), 0, None)


def plot_confusions(confusions: dict[str, pd.DataFrame], *, normalize: bool = True):
    """One confusion-matrix panel per judge (rows gold, columns predicted; row-normalised by default)."""
    plt = _plt()
    if not confusions:
        return nothing_to_show("no judge to show a confusion matrix for")
    n = len(confusions)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, (judge, m) in zip(axes[0], confusions.items()):
        vals = m.to_numpy(dtype=float)
        shown = vals / np.maximum(vals.sum(axis=1, keepdims=True), 1) if normalize else vals
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        ax.set_xticks(range(m.shape[1]), m.columns, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(m.shape[0]), m.index, fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if vals[i, j]:
                    ax.text(j, i, int(vals[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if shown[i, j] > 0.6 else "black")
        ax.set_title(judge)
        ax.set_xlabel("judge says")
        ax.set_ylabel("human label")
    fig.tight_layout()
    return fig


def plot_kappa(report: pd.DataFrame, *, threshold: float | None = None, baseline: float | None = None):
    """Cohen's kappa per judge with its confidence interval; flagged judges in red; the gate as a line; the
    baseline judge's kappa (TF-IDF logistic regression on the same folds) as a grey line."""
    plt = _plt()
    if not len(report) or report["kappa"].isna().all():
        return nothing_to_show("no judge has a defined kappa (too few gold items or classes) to plot")
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(report), 3.4))
    x = np.arange(len(report))
    k = report["kappa"].to_numpy(dtype=float)
    err = _error_bars(k, report["kappa_lo"], report["kappa_hi"])
    colors = ["tab:red" if f else "tab:blue" for f in report.get("flagged", pd.Series(False, index=report.index))]
    ax.bar(x, k, color=colors, alpha=0.8)
    ax.errorbar(x, np.nan_to_num(k), yerr=err, fmt="none", ecolor="black", capsize=4)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"gate {threshold}")
    if baseline is not None and not pd.isna(baseline):
        ax.axhline(baseline, color="grey", ls=":", lw=1.5, label=f"baseline {baseline:.2f}")
    if threshold is not None or (baseline is not None and not pd.isna(baseline)):
        ax.legend(loc="lower right")
    ax.set_xticks(x, report["judge"])
    ax.set_ylabel("Cohen's kappa vs humans")
    ax.set_ylim(min(0, np.nanmin(k) - 0.1) if len(k) else 0, 1)
    fig.tight_layout()
    return fig


def plot_matrix(m: pd.DataFrame, *, title: str = "", vmin: float = -1, vmax: float = 1, cmap: str = "RdBu_r"):
    """A labelled judge x judge heatmap (pairwise agreement, error correlation)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(m), 1.2 + 0.9 * len(m)))
    im = ax.imshow(m.to_numpy(dtype=float), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(m.index)), m.index)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m.iat[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_precision_coverage(table: pd.DataFrame):
    """Precision of accepted labels (Wilson interval) against coverage, one point per strategy."""
    plt = _plt()
    if not len(table) or table["precision"].isna().all():
        return nothing_to_show("no strategy accepted any item: no precision to plot")
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for r in table.itertuples():
        if pd.isna(r.precision):  # accepted nothing: no point to draw
            continue
        yerr = _error_bars([r.precision], [r.precision_lo], [r.precision_hi])
        single = str(r.strategy).startswith("judge:")  # single judges: the 'confidence' baseline, in grey
        ax.errorbar(r.coverage, r.precision, yerr=yerr, fmt="x" if single else "o", capsize=4,
                    label=r.strategy, color="grey" if single else None, alpha=0.7 if single else 1.0)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("coverage (share of items labelled)")
    ax.set_ylabel("precision vs human labels")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(max(0, float(np.nanmin(table["precision_lo"])) - 0.05) if table["precision_lo"].notna().any() else 0,
                1.01)
    ax.grid(alpha=0.3)
    ax.set_title("consensus vs coverage on the calibration hold-out")
    fig.tight_layout()
    return fig


def plot_actions(resolutions: pd.DataFrame):
    """Actions taken per category (the accepted category, or 'no consensus' for opt-outs), stacked bars."""
    plt = _plt()
    if not len(resolutions):
        return nothing_to_show("no production item to resolve: no actions to plot")

    def cat(r):
        if r.label_after is not None and not (isinstance(r.label_after, float)):
            return r.label_after
        ev = json.loads(r.evidence) if isinstance(r.evidence, str) else {}
        return ((ev.get("consensus") or {}).get("category")) or "(no consensus)"

    df = resolutions.assign(category=[cat(r) for r in resolutions.itertuples()])
    tab = pd.crosstab(df["category"], df["action"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    tab.plot.barh(stacked=True, ax=ax, logx=bool(len(tab) and tab.to_numpy().max() > 50 * max(tab.to_numpy().min(), 1)))
    ax.set_xlabel("items")
    ax.set_title("resolution actions per category")
    fig.tight_layout()
    return fig


def plot_selection_bias(report, *, category: str = "solvable", band: float = 0.1):
    """Left: each region's share of the pool and of the curated rows of ``category`` (regions whose share ratio is
    under the report's warning threshold in red). Right: curated / pool ratio per dimension and category, with the
    ``1 +- band`` band (for ``region`` the smallest share ratio)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    reg = report.regions[report.regions["category"] == category].sort_values("pool_share", ascending=False)
    x = np.arange(len(reg))
    a.bar(x - 0.2, reg["pool_share"], 0.4, label="production pool", color="#999999")
    colors = ["#d62728" if r < report.min_share_ratio else "#1f77b4" for r in reg["share_ratio"]]
    a.bar(x + 0.2, reg["curated_share"], 0.4, label="curated", color=colors)
    a.set_xticks(x, reg["region"], rotation=60, ha="right", fontsize=7)
    a.set_ylabel("share of the category's rows")
    a.set_title(f"{category}: regions ({report.region_source})")
    a.legend(fontsize=8)
    d = report.dimensions.dropna(subset=["ratio"])
    dims = list(dict.fromkeys(d["dimension"]))
    cats = list(dict.fromkeys(d["category"]))
    w = 0.8 / max(len(cats), 1)
    for k, cat in enumerate(cats):
        sub = d[d["category"] == cat].set_index("dimension").reindex(dims)
        b.bar(np.arange(len(dims)) + k * w - 0.4 + w / 2, sub["ratio"].clip(upper=3), w, label=cat)
    b.axhspan(1 - band, 1 + band, color="#2ca02c", alpha=0.15)
    b.axhline(1, color="black", lw=0.8)
    b.set_xticks(range(len(dims)), dims, fontsize=8)
    b.set_ylabel("curated / pool")
    b.set_title("ratio per dimension")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_train_sets(train_sets: pd.DataFrame):
    """Examples per training-set variant, stacked by label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    pd.crosstab(train_sets["variant"], train_sets["label"]).plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("examples")
    ax.set_title("training sets by label")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def plot_anchoring(probe: pd.DataFrame):
    """Each judge's flip rate to a claimed label (95% Wilson interval); judges the probe does not apply to say so."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    x = np.arange(len(probe))
    ok = probe["applies"].to_numpy(dtype=bool)
    ax.bar(x[ok], probe.loc[ok, "flip_rate"], yerr=[probe.loc[ok, "flip_rate"] - probe.loc[ok, "flip_lo"],
           probe.loc[ok, "flip_hi"] - probe.loc[ok, "flip_rate"]], capsize=4, color="tab:red")
    for i in x[~ok]:
        ax.text(i, 0.02, "does not apply\n(offline)", ha="center", fontsize=8)
    ax.set_xticks(x, probe["judge"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("flips to the claimed label")
    ax.set_title("Anchoring probe (95% Wilson intervals)")
    return fig
