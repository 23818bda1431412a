"""Metrics of a scorer against 0/1 labels: AUROC and calibration.

Both functions take ``jax.numpy`` arrays and run under ``jit`` and ``vmap``.
Concrete inputs are checked eagerly; traced inputs cannot be, so the
documented guards (NaN for an undefined AUROC) take the place of errors.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.tail._validate import is_traced

__all__ = ["Calibration", "auroc", "calibration"]


def _check_pair(values, labels, *, name: str):
    """Return float values and bool labels of one shape; concrete bad inputs raise."""
    values = jnp.asarray(values)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.result_type(float))
    if values.ndim != 1 or labels.shape != values.shape:
        raise ValueError(
            f"{name} of shape {values.shape} and labels of shape {labels.shape} must be "
            "matching 1-D arrays; vmap over leading axes."
        )
    if is_traced(values, labels):
        return values, labels.astype(bool)

    host_values, host_labels = np.asarray(values), np.asarray(labels)
    bad = np.flatnonzero(~np.isfinite(host_values))
    if bad.size:
        raise ValueError(
            f"{name}[{bad[0]}] is {host_values[bad[0]]}; every value must be finite "
            f"({bad.size} non-finite in total)."
        )
    outside = np.flatnonzero(~np.isin(host_labels.astype(np.float64), (0.0, 1.0)))
    if outside.size:
        raise ValueError(
            f"labels[{outside[0]}] is {host_labels[outside[0]].item()!r}; labels must be 0 or 1 "
            "(or bool)."
        )
    return values, labels.astype(bool)


def auroc(scores, labels) -> jax.Array:
    """Area under the ROC curve: the chance that a positive outscores a negative.

    .. math::

        \\mathrm{AUROC} = \\frac{1}{n_1 n_0} \\sum_{i: y_i = 1} \\sum_{j: y_j = 0}
            \\Big( [s_i > s_j] + \\tfrac12 [s_i = s_j] \\Big),

    the Mann-Whitney ``U`` statistic of the positives divided by ``n_1 n_0``
    (Hanley and McNeil 1982, Radiology 143(1)), so ties count one half. It is
    computed in ``O(n log n)``: the negatives are sorted once and each
    positive's count of lower and equal negatives comes from two binary
    searches.

    Args:
      scores: float[n] scores, higher meaning more likely positive.
      labels: bool or 0/1 [n] labels.

    Returns:
      A float scalar in [0, 1]. Under ``jit`` a set with one class only gives
      NaN.

    Raises:
      ValueError: for concrete inputs of different shapes or not 1-D, a
        non-finite score, a label outside {0, 1}, or labels of one class only.
    """
    scores, labels = _check_pair(scores, labels, name="scores")
    if not is_traced(scores, labels):
        positives = int(jnp.sum(labels))
        if positives in (0, labels.size):
            raise ValueError(
                f"labels hold {positives} positives among {labels.size}; AUROC needs at least "
                "one positive and one negative."
            )
    return _auroc(scores, labels)


@jax.jit
def _auroc(scores, labels):
    dtype = scores.dtype
    num_positive = jnp.sum(labels)
    num_negative = labels.size - num_positive

    # Positives move to +inf, after every finite negative score.
    negatives = jnp.sort(jnp.where(labels, jnp.inf, scores))
    below = jnp.searchsorted(negatives, scores, side="left")
    up_to = jnp.searchsorted(negatives, scores, side="right")
    credit = (below + 0.5 * (up_to - below)).astype(dtype)

    # Each positive's share lies in [0, 1], which keeps a float32 sum accurate for large n.
    defined = (num_positive > 0) & (num_negative > 0)
    share = credit / jnp.maximum(num_negative, 1).astype(dtype)
    value = jnp.sum(jnp.where(labels, share, 0.0)) / jnp.maximum(num_positive, 1).astype(dtype)
    return jnp.where(defined, value, jnp.nan)


class Calibration(NamedTuple):
    """Calibration of predicted probabilities against 0/1 outcomes.

    Attributes:
      ece: expected calibration error,
        ``sum_b (n_b / n) |accuracy_b - confidence_b|``.
      brier: Brier score, ``mean((p - y)^2)``.
      bin_edges: float[num_bins + 1] edges of the equal-width bins on [0, 1].
      bin_counts: int[num_bins] predictions in each bin.
      bin_confidence: float[num_bins] mean predicted probability in each bin,
        NaN for an empty bin.
      bin_accuracy: float[num_bins] fraction of positives in each bin, NaN
        for an empty bin.
    """

    ece: jax.Array
    brier: jax.Array
    bin_edges: jax.Array
    bin_counts: jax.Array
    bin_confidence: jax.Array
    bin_accuracy: jax.Array


def calibration(probabilities, labels, *, num_bins: int = 10) -> Calibration:
    """Expected calibration error over equal-width bins, the Brier score and the bin table.

    Bin ``b`` contains the predictions ``p`` with ``b / B <= p < (b + 1) / B``,
    the last bin including ``p = 1``. With ``n_b`` predictions in bin ``b``,
    ``confidence_b`` their mean and ``accuracy_b`` their fraction of positives,

    .. math::

        \\mathrm{ECE} = \\sum_b \\frac{n_b}{n} |\\mathrm{accuracy}_b -
            \\mathrm{confidence}_b|, \\qquad
        \\mathrm{Brier} = \\frac1n \\sum_i (p_i - y_i)^2

    (ECE as in Guo et al. 2017, "On calibration of modern neural networks",
    arXiv:1706.04599, with the probability of the positive class in place of
    the top-class confidence; Brier 1950, Monthly Weather Review 78(1)).
    Empty bins add nothing to the ECE. A set with one class only is allowed.
    A probability on a bin edge may land in the neighbouring bin through
    float rounding of ``p B``.

    Args:
      probabilities: float[n] predicted probabilities of the positive class.
      labels: bool or 0/1 [n] outcomes.
      num_bins: number of bins ``B``; static, so a new value recompiles.

    Returns:
      A :class:`Calibration`.

    Raises:
      ValueError: for concrete inputs of different shapes or not 1-D, a
        probability outside [0, 1] or not finite, a label outside {0, 1}, an
        empty set, or ``num_bins < 1``.
    """
    if not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}.")
    probabilities, labels = _check_pair(probabilities, labels, name="probabilities")
    if probabilities.size == 0:
        raise ValueError("probabilities is empty; pass at least one prediction.")
    if not is_traced(probabilities):
        host = np.asarray(probabilities)
        outside = np.flatnonzero((host < 0) | (host > 1))
        if outside.size:
            raise ValueError(
                f"probabilities[{outside[0]}] is {host[outside[0]]}; probabilities must lie in "
                "[0, 1]. Apply a sigmoid to logits first."
            )
    return _calibration(probabilities, labels, num_bins=int(num_bins))


@functools.partial(jax.jit, static_argnames=("num_bins",))
def _calibration(probabilities, labels, *, num_bins: int):
    dtype = probabilities.dtype
    outcomes = labels.astype(dtype)
    bins = jnp.clip(jnp.floor(probabilities * num_bins).astype(jnp.int32), 0, num_bins - 1)

    counts = jnp.zeros(num_bins, jnp.int32).at[bins].add(1)
    confidence_sums = jnp.zeros(num_bins, dtype).at[bins].add(probabilities)
    positive_sums = jnp.zeros(num_bins, dtype).at[bins].add(outcomes)

    occupied = counts > 0
    safe_counts = jnp.where(occupied, counts, 1).astype(dtype)
    confidence = confidence_sums / safe_counts
    accuracy = positive_sums / safe_counts
    weights = counts.astype(dtype) / probabilities.size
    ece = jnp.sum(jnp.where(occupied, weights * jnp.abs(accuracy - confidence), 0.0))
    brier = jnp.mean(jnp.square(probabilities - outcomes))

    return Calibration(
        ece=ece,
        brier=brier,
        bin_edges=jnp.linspace(0.0, 1.0, num_bins + 1, dtype=dtype),
        bin_counts=counts,
        bin_confidence=jnp.where(occupied, confidence, jnp.nan),
        bin_accuracy=jnp.where(occupied, accuracy, jnp.nan),
    )
