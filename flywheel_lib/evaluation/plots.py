"""Plots for the evaluation report: metric bars with intervals, a confusion matrix, training loss curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_metric_bars", "plot_confusion", "plot_training_loss", "plot_category_recall"]


def plot_metric_bars(metrics: pd.DataFrame, metrics_to_show: tuple[str, ...] = (
        "pass_rate", "refusal_accuracy", "false_refusal_rate", "zero_result_rate")):
    """Grouped bars: one group per metric, one bar per variant, Wilson intervals as error bars."""
    import matplotlib.pyplot as plt

    m = metrics[metrics["metric"].isin(metrics_to_show)]
    variants = list(dict.fromkeys(m["variant"]))
    fig, ax = plt.subplots(figsize=(1.6 + 2.2 * len(metrics_to_show), 3.6))
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(metrics_to_show))
    for i, v in enumerate(variants):
        g = m[m["variant"] == v].set_index("metric").reindex(list(metrics_to_show))
        val = g["value"].to_numpy(dtype=float)
        err = np.clip(np.vstack([val - g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float) - val]), 0, None)
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, np.nan_to_num(val), width, yerr=np.nan_to_num(err),
               capsize=3, label=v)
    ax.set_xticks(x, [s.replace("_", " ") for s in metrics_to_show])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate (95% Wilson interval)")
    ax.legend(fontsize=8, ncol=min(len(variants), 4))
    fig.tight_layout()
    return fig


def plot_confusion(conf: pd.DataFrame, title: str = ""):
    """A gold-by-predicted count matrix as a heat map with the counts written in."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * conf.shape[1], 1.2 + 0.7 * conf.shape[0]))
    ax.imshow(conf.to_numpy(), cmap="Blues")
    ax.set_xticks(range(conf.shape[1]), [str(c) for c in conf.columns], rotation=35, ha="right")
    ax.set_yticks(range(conf.shape[0]), [str(r) for r in conf.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    vmax = conf.to_numpy().max() if conf.size else 0
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            v = conf.iat[i, j]
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > vmax / 2 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_training_loss(log: pd.DataFrame, window: int = 5):
    """Training loss per step for every variant (thin raw line, thick rolling mean)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for i, (v, g) in enumerate(log.groupby("variant", sort=False)):
        color = f"C{i}"
        ax.plot(g["step"], g["loss"], color=color, alpha=0.25, lw=0.8)
        ax.plot(g["step"], g["loss"].rolling(window, min_periods=1).mean(), color=color, lw=2, label=v)
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_category_recall(recall: pd.DataFrame, title: str = "Recall per gold category (95% Wilson interval)"):
    """Horizontal bars: one group per category, one bar per variant (:func:`~.metrics.category_recall` output)."""
    import matplotlib.pyplot as plt

    cats = list(dict.fromkeys(recall["category"]))
    variants = list(dict.fromkeys(recall["variant"]))
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.5 * len(cats) * max(1, len(variants)) ** 0.5))
    h = 0.8 / max(len(variants), 1)
    y = np.arange(len(cats))
    for i, v in enumerate(variants):
        g = recall[recall["variant"] == v].set_index("category").reindex(cats)
        val = g["recall"].to_numpy(dtype=float)
        err = np.clip(np.vstack([val - g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float) - val]), 0, None)
        ax.barh(y + (i - (len(variants) - 1) / 2) * h, np.nan_to_num(val), h, xerr=np.nan_to_num(err), capsize=2,
                label=v)
    ax.set_yticks(y, cats)
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
