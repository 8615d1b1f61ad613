"""06_flywheel's figures: metrics per cycle, arena ratings, accuracy three ways, feedback by latency, judge drift.

Each function takes the table a step of :mod:`flywheel_lib.stages.flywheel` returned and gives a matplotlib figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def _yerr(value: pd.Series, lo: pd.Series, hi: pd.Series) -> list[pd.Series]:
    return [(value - lo).fillna(0), (hi - value).fillna(0)]


def plot_cycles(metrics: pd.DataFrame, keep: tuple[str, ...] = ("pass_rate", "refusal_accuracy",
                                                                 "false_refusal_rate")):
    """One panel per metric: every variant's value per cycle with its 95% Wilson interval."""
    fig, axes = plt.subplots(1, len(keep), figsize=(12, 3.4), sharey=True)
    for ax, m in zip(axes, keep):
        for variant, g in metrics[metrics["metric"] == m].groupby("variant"):
            g = g.sort_values("cycle")
            ax.errorbar(g["cycle"], g["value"], yerr=[g["value"] - g["lo"], g["hi"] - g["value"]], marker="o",
                        capsize=3, label=variant)
        ax.set_title(m)
        ax.set_xlabel("cycle")
        ax.set_xticks(sorted(metrics["cycle"].unique()))
    axes[0].legend(fontsize=8)
    fig.suptitle("Evaluation per cycle (95% Wilson intervals)")
    return fig


def plot_arena(arena: pd.DataFrame):
    """Each model's Elo per cycle with its bootstrap interval."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for ident, g in arena.groupby("identity"):
        g = g.sort_values("cycle")
        ax.errorbar(g["cycle"], g["elo"], yerr=[g["elo"] - g["elo_lo"], g["elo_hi"] - g["elo"]], marker="o",
                    capsize=3, label=ident)
    ax.set_xlabel("cycle")
    ax.set_ylabel("Elo (Bradley-Terry)")
    ax.set_xticks(sorted(arena["cycle"].unique()))
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title("Arena ratings across the lineage")
    return fig


def plot_accuracy_estimates(est: pd.DataFrame):
    """Explicit, implicit and true accuracy with intervals; the survivorship gap in the title."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    e = est.set_index("estimate").loc[["explicit", "implicit", "true"]]
    ax.errorbar(range(3), e["value"], yerr=_yerr(e["value"], e["lo"], e["hi"]), fmt="o", capsize=5)
    ax.set_xticks(range(3), [f"{k}\n(n={int(n)})" for k, n in zip(e.index, e["n"])])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    g = est.set_index("estimate").loc["survivorship_gap"]
    gap = "no ratings this cycle" if pd.isna(g.value) else f"{g.value:+.3f} [{g.lo:+.3f}, {g.hi:+.3f}]"
    ax.set_title(f"Deployed model accuracy, three ways (survivorship gap explicit - true: {gap})", fontsize=9)
    return fig


def plot_latency(lat: pd.DataFrame):
    """Thumbs-up rate (rated requests) and true accuracy (all requests) per latency bucket."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(lat))
    ax.errorbar(x, lat["thumbs_up"], yerr=_yerr(lat["thumbs_up"], lat["lo"], lat["hi"]), fmt="o", capsize=4,
                label="thumbs up (rated requests)")
    ax.plot(x, lat["true_accuracy"], "s--", label="true accuracy (all requests)")
    ax.set_xticks(list(x), [f"{b}\n{n} / {k} rated" for b, n, k in zip(lat["latency"], lat["n"], lat["n_rated"])],
                  fontsize=8)
    ax.set_xlabel("answer latency (s)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Feedback by latency bucket")
    return fig


def plot_judge_drift(drift: pd.DataFrame):
    """Kappa per judge per cycle; the band is the judge's first-cycle 95% interval, a red ring an alarm."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, (judge, g) in enumerate(drift.groupby("judge")):
        g = g.sort_values("cycle")
        x = g["cycle"] + (i - 1) * 0.06
        line = ax.errorbar(x, g["kappa"], yerr=_yerr(g["kappa"], g["kappa_lo"], g["kappa_hi"]), marker="o",
                           capsize=3, label=judge)
        first = g.iloc[0]
        ax.axhspan(first["kappa_lo"], first["kappa_hi"], color=line[0].get_color(), alpha=0.08)
        ax.scatter(x[g["alarm"]], g.loc[g["alarm"], "kappa"], s=160, facecolors="none", edgecolors="red")
    ax.set_xticks(sorted(drift["cycle"].unique()))
    ax.set_xlabel("cycle")
    ax.set_ylabel("Cohen's kappa vs human labels")
    ax.set_title("Kappa per judge per cycle (band: first cycle's 95% interval; red: alarm)", fontsize=9)
    ax.legend(fontsize=8)
    return fig
