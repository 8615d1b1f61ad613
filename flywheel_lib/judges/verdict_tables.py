"""Tables and plots about a verdicts table, for 02_judge: label distributions and abstention reasons."""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["label_distribution", "abstention_reasons", "plot_label_distribution", "ABSTAIN"]

ABSTAIN = "<abstain>"


def label_distribution(verdicts: pd.DataFrame, labels: list[str] | None = None) -> pd.DataFrame:
    """Share of each category per judge (rows: judges; columns: categories then ``<abstain>``)."""
    cat = verdicts["category"].astype(object).where(verdicts["category"].notna(), ABSTAIN)
    tab = pd.crosstab(verdicts["judge"], cat, normalize="index")
    cols = list(labels or [c for c in tab.columns if c != ABSTAIN]) + [ABSTAIN]
    return tab.reindex(columns=cols, fill_value=0.0)


def abstention_reasons(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Abstentions per judge and reason (the reason with quoted model output and numbers folded away)."""
    ab = verdicts[verdicts["category"].isna()]
    if ab.empty:
        return pd.DataFrame(columns=["judge", "reason", "n"])
    reason = ab["error"].fillna("").map(lambda s: re.sub(r"\d+(\.\d+)?", "N", s.split(":  ")[0].split(": '")[0]
                                                        .split(': "')[0])[:120])
    return (ab.assign(reason=reason).groupby(["judge", "reason"]).size().rename("n").reset_index()
            .sort_values("n", ascending=False, ignore_index=True))


def plot_label_distribution(dist: pd.DataFrame):
    """Stacked horizontal bars: one bar per judge, one segment per category."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(dist) + 1.5))
    dist.plot.barh(stacked=True, ax=ax, width=0.7, colormap="tab10")
    ax.set_xlabel("share of items")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    ax.set_title("label distribution per judge")
    fig.tight_layout()
    return fig
