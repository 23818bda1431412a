"""Figures of search experiments: a metric against the budget, one line per algorithm.

Built like :mod:`slgjax.plots`: matplotlib's object interface on an Agg
canvas, no pyplot state; the caller saves the returned figure.
"""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["metric_vs_budget_figure"]

_LABELS = {
    "best_reward": "best reward",
    "rm_at_1": "RM@1",
    "pass_at_n": "pass@N",
    "majority_at_n": "majority@N",
    "tokens": "tokens",
    "wall_time_s": "wall time (s)",
}


def metric_vs_budget_figure(
    rows: Sequence[Mapping],
    *,
    metrics: Sequence[str] = ("best_reward",),
    title: str | None = None,
) -> Figure:
    """Draw each metric against the budget ``N``, one line per algorithm, with interval bars.

    Args:
      rows: rows of :func:`slgjax.summary.summarize`.
      metrics: metrics to draw, one panel each.
      title: optional figure title.

    Returns:
      A matplotlib ``Figure`` attached to an Agg canvas.

    Raises:
      ValueError: when ``rows`` is empty or lacks a requested metric.
    """
    if not rows:
        raise ValueError("rows is empty; summarize some records first.")
    for metric in metrics:
        if metric not in rows[0]:
            raise ValueError(f"rows have no metric {metric!r}; summarize it first.")
    algorithms = list(dict.fromkeys(row["algorithm"] for row in rows))

    figure = Figure(figsize=(4.2 * len(metrics), 3.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for color, algorithm in enumerate(algorithms):
            mine = sorted(
                (r for r in rows if r["algorithm"] == algorithm), key=lambda r: r["budget"]
            )
            budgets = np.asarray([r["budget"] for r in mine], float)
            means = np.asarray([r[metric] for r in mine], float)
            low = np.asarray(
                [np.nan if r[f"{metric}_low"] is None else r[f"{metric}_low"] for r in mine], float
            )
            high = np.asarray(
                [np.nan if r[f"{metric}_high"] is None else r[f"{metric}_high"] for r in mine],
                float,
            )
            # A row without an interval (fewer than two problems) gets a zero-length bar.
            error = np.stack([np.nan_to_num(means - low), np.nan_to_num(high - means)])
            ax.errorbar(
                budgets,
                means,
                yerr=error,
                marker="o",
                markersize=3,
                capsize=2,
                color=f"C{color % 10}",
                label=algorithm,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget N (rollouts)")
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.legend(fontsize=7)
    if title is not None:
        figure.suptitle(title)
    return figure
