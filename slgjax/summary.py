"""Summaries of experiment records: means with 95% bootstrap intervals per algorithm and budget.

Intervals are percentile bootstrap intervals over problems: resample the
``n`` per-problem values with replacement ``num_resamples`` times and take
the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles of the resampled means.
The bootstrap makes no normality assumption, which suits 0/1 metrics such as
pass@N. With few problems it is narrower than a t interval, because the
bootstrap spread of the mean is ``sqrt((n - 1) / n)`` times the usual
standard error and its quantiles are close to normal ones, not t ones. It
has zero width when all values agree. Fewer than two values give no interval.

:func:`compare_to_baseline` resamples problems jointly for an algorithm and a
baseline (a paired bootstrap), so the interval of the mean difference
accounts for problems that are hard for both.
"""

import zlib
from collections.abc import Iterable, Mapping, Sequence

import jax
import numpy as np

from slgjax.envs.replay import numpy_rng

__all__ = ["METRICS", "bootstrap_interval", "compare_to_baseline", "format_table", "summarize"]

METRICS = (
    "best_reward",
    "rm_at_1",
    "pass_at_n",
    "majority_at_n",
    "rollouts",
    "tokens",
    "wall_time_s",
)


def _check_sizes(confidence, num_resamples):
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must lie strictly between 0 and 1.")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int) or num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples!r} must be a positive integer.")


def bootstrap_interval(
    values, *, key, confidence: float = 0.95, num_resamples: int = 2000
) -> tuple[float, float | None, float | None]:
    """Return the mean of ``values`` and its percentile bootstrap interval.

    Args:
      values: float[n] per-problem values.
      key: PRNG key of the resampling.
      confidence: coverage of the interval.
      num_resamples: bootstrap resamples.

    Returns:
      ``(mean, low, high)``; ``low`` and ``high`` are None when ``n < 2``,
      and the mean is NaN when ``n = 0``.
    """
    _check_sizes(confidence, num_resamples)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) == 0:
        return float("nan"), None, None
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    rng = numpy_rng(key)
    draws = rng.integers(0, len(values), size=(num_resamples, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return mean, float(low), float(high)


def _group_key(key, *parts):
    text = "\0".join(str(part) for part in parts)
    return jax.random.fold_in(key, zlib.crc32(text.encode()) & 0x7FFFFFFF)


def _groups(records: Iterable[Mapping]) -> dict[tuple, list[Mapping]]:
    groups: dict[tuple, list[Mapping]] = {}
    for record in records:
        groups.setdefault((record["algorithm"], int(record["budget"])), []).append(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])))


def summarize(
    records: Iterable[Mapping],
    *,
    key,
    metrics: Sequence[str] = METRICS,
    confidence: float = 0.95,
    num_resamples: int = 2000,
) -> list[dict]:
    """Return one row per (algorithm, budget) with the mean and interval of each metric.

    A record whose metric is None (unknown) is left out of that metric only.
    Each group resamples with its own key, ``fold_in(key, crc32(algorithm,
    budget, metric))``, so a row does not depend on the other groups.

    Returns:
      Rows sorted by budget, then algorithm, with ``algorithm``, ``budget``,
      ``num_problems`` and, per metric, ``<metric>``, ``<metric>_low``,
      ``<metric>_high`` and ``<metric>_n``.
    """
    rows = []
    for (algorithm, budget), group in _groups(records).items():
        row = {"algorithm": algorithm, "budget": budget, "num_problems": len(group)}
        for metric in metrics:
            values = [r[metric] for r in group if r.get(metric) is not None]
            mean, low, high = bootstrap_interval(
                values,
                key=_group_key(key, algorithm, budget, metric),
                confidence=confidence,
                num_resamples=num_resamples,
            )
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return rows


def compare_to_baseline(
    records: Iterable[Mapping],
    *,
    baseline: str,
    key,
    metric: str = "best_reward",
    confidence: float = 0.95,
    num_resamples: int = 2000,
) -> list[dict]:
    """Return the mean paired difference ``algorithm - baseline`` per algorithm and budget.

    Only problems that both the algorithm and the baseline have, with a known
    metric, enter a comparison.

    Returns:
      Rows with ``algorithm``, ``budget``, ``num_problems``, ``difference``,
      ``difference_low``, ``difference_high`` and ``wins`` (the fraction of
      problems where the algorithm is strictly better).

    Raises:
      ValueError: when no record has the baseline label.
    """
    records = list(records)
    base = {
        (r["problem_id"], int(r["budget"])): r[metric]
        for r in records
        if r["algorithm"] == baseline and r.get(metric) is not None
    }
    if not base:
        labels = sorted({r["algorithm"] for r in records})
        raise ValueError(f"no record of baseline {baseline!r} with {metric}; labels: {labels}.")

    rows = []
    for (algorithm, budget), group in _groups(records).items():
        if algorithm == baseline:
            continue
        pairs = [
            (r[metric], base[(r["problem_id"], budget)])
            for r in group
            if r.get(metric) is not None and (r["problem_id"], budget) in base
        ]
        differences = np.asarray([a - b for a, b in pairs], dtype=np.float64)
        mean, low, high = bootstrap_interval(
            differences,
            key=_group_key(key, algorithm, budget, metric, baseline),
            confidence=confidence,
            num_resamples=num_resamples,
        )
        rows.append(
            {
                "algorithm": algorithm,
                "budget": budget,
                "num_problems": len(pairs),
                "difference": mean,
                "difference_low": low,
                "difference_high": high,
                "wins": float(np.mean(differences > 0)) if len(pairs) else float("nan"),
            }
        )
    return rows


def _cell(row, metric):
    mean, low, high = row[metric], row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if mean != mean:
        return "-"
    if low is None:
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def format_table(
    rows: Sequence[Mapping],
    *,
    metrics: Sequence[str] = ("best_reward", "rm_at_1", "pass_at_n", "majority_at_n"),
) -> str:
    """Return the rows of :func:`summarize` as a Markdown table, ``mean [low, high]`` per cell."""
    header = ["algorithm", "N", "problems", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["algorithm"]), str(row["budget"]), str(row["num_problems"])]
        cells += [_cell(row, metric) for metric in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
