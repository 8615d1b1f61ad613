"""00_data's figures: class balance per source, request lengths, implicit signals, PII and conflicts, validators."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def _say(ax, sentence: str) -> None:
    ax.text(0.5, 0.5, sentence, ha="center", va="center")
    ax.set_axis_off()


def plot_class_shares(shares: pd.DataFrame):
    """Each source's items by class (hidden truth where a source has one, else its label), as shares."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    shares.plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("share of the source's items (counts in the table above)")
    ax.set_title("Class balance per source (hidden truth where a source has one, else its label)", fontsize=9)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def plot_lengths(items: pd.DataFrame):
    """Words per request, one step histogram per source."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for source, g in items.groupby("source"):
        ax.hist(g["text"].str.split().str.len(), bins=range(0, 45), density=True, histtype="step", label=source)
    ax.set_xlabel("words per request")
    ax.set_ylabel("share")
    ax.set_title("Request length")
    ax.legend()
    return fig


def plot_signals(signals: pd.DataFrame):
    """Implicit feedback signal rates by true class (production)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    signals.T.plot.bar(ax=ax)
    ax.set_ylabel("rate")
    ax.set_title("Implicit feedback signals by true class (production)")
    ax.legend(fontsize=8)
    return fig


def plot_pii_conflicts(pii_report: pd.DataFrame, conflicts: pd.DataFrame):
    """PII spans found per type, and exact conflicts by the seed's label."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    spans = pii_report.set_index("type")["spans"] if len(pii_report) else pd.Series(dtype=float)
    if spans.sum() > 0:
        spans.plot.bar(ax=axes[0], title="PII spans found")
    else:
        _say(axes[0], "no personal data found")
    if len(conflicts):
        conflicts["seed_label"].value_counts().plot.bar(ax=axes[1], title="Conflicts by seed label")
    else:
        _say(axes[1], "no production request equals\na seed refusal or clarification")
    fig.tight_layout()
    return fig


def plot_validators(scores: pd.DataFrame, n_production: int):
    """Production requests flagged per validator, and precision/recall against the planted truth where known."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    vs = scores.set_index("validator")
    vs["flagged"].plot.bar(ax=axes[0], color="tab:orange")
    axes[0].set_ylabel("production requests flagged")
    axes[0].set_title(f"Flags per validator (of {n_production:,} requests)")
    scored = vs[["precision", "recall"]].dropna(how="all")
    if len(scored):
        scored.plot.bar(ax=axes[1], ylim=(0, 1.05))
        axes[1].set_title("Against the planted truth")
    else:
        _say(axes[1], "no planted truth (user data)")
    fig.tight_layout()
    return fig
