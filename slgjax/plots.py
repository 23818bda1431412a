"""Figures of best-of-N curves: predicted values with their band against the empirical curve.

Figures are built with matplotlib's object interface and the Agg canvas, so
nothing here touches pyplot's global state or the process-wide backend. The
caller saves the returned figure.
"""

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["best_of_n_figure"]


def best_of_n_figure(
    budgets,
    predicted,
    *,
    lower=None,
    upper=None,
    empirical=None,
    titles=None,
    fit_size=None,
    model_name="predicted",
    max_panels=16,
) -> Figure:
    """Draw one panel per state: predicted ``V_N`` against ``N`` with the empirical curve.

    Args:
      budgets: int[G] budgets ``N``, ascending.
      predicted: float[S, G] predicted values for ``S`` states.
      lower: optional float[S, G] lower end of the band.
      upper: optional float[S, G] upper end of the band.
      empirical: optional float[S, G] empirical values, NaN where the pool is
        smaller than the budget (those points are not drawn).
      titles: optional list of ``S`` panel titles.
      fit_size: optional int[S], the number of rewards each fit used; drawn
        as a dotted vertical line, so extrapolation is what lies to its right.
      model_name: legend label of the predicted curve.
      max_panels: draw at most this many states (the first ones).

    Returns:
      A matplotlib ``Figure`` attached to an Agg canvas.
    """
    budgets = np.asarray(budgets)
    predicted = np.atleast_2d(np.asarray(predicted, float))
    num_panels = min(predicted.shape[0], max_panels)
    columns = min(4, num_panels)
    rows = math.ceil(num_panels / columns)

    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)

    for panel, ax in enumerate(axes.flat):
        if panel >= num_panels:
            ax.set_visible(False)
            continue

        ax.plot(budgets, predicted[panel], color="C0", label=model_name)
        if lower is not None and upper is not None:
            ax.fill_between(
                budgets,
                np.asarray(lower, float)[panel],
                np.asarray(upper, float)[panel],
                color="C0",
                alpha=0.2,
                linewidth=0,
                label="band",
            )
        if empirical is not None:
            values = np.asarray(empirical, float)[panel]
            defined = np.isfinite(values)
            ax.plot(
                budgets[defined], values[defined], "o-", color="C1", markersize=3, label="empirical"
            )
        if fit_size is not None:
            ax.axvline(int(np.asarray(fit_size)[panel]), color="0.5", linestyle=":", linewidth=1)

        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget N")
        ax.set_ylabel("best-of-N reward")
        if titles is not None:
            ax.set_title(str(titles[panel]), fontsize=9)
        if panel == 0:
            ax.legend(fontsize=7)
    return figure
