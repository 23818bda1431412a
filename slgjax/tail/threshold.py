"""Peaks over threshold on masked, ragged reward samples.

For each state, rank its ``m_valid`` valid rewards from the largest down,
``r_(1) >= r_(2) >= ...``, request ``k`` exceedances and set the threshold to
the next reward, ``u = r_(k+1)``. The exceedances are ``y = r - u`` for the
rewards strictly above ``u``.

Tie rule: when rewards tied with ``u`` sit among the top ``k``, they are not
exceedances (their ``y`` would be zero), so the count drops to the number of
rewards strictly above ``u`` and the state is flagged
``Status.TIES_AT_THRESHOLD``. The threshold never moves down to admit more
rewards than requested. With 0/1 rewards this keeps the spliced model of
:mod:`slgjax.tail.gpd_predict` equal to the empirical distribution whenever at
least ``k`` rewards are one. The count can reach zero, for example with
constant rewards.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.tail._validate import as_rewards_and_mask, is_traced
from slgjax.tail.status import Status

__all__ = ["Exceedances", "select_exceedances", "DEFAULT_TAIL_FRACTION"]

DEFAULT_TAIL_FRACTION = 0.2


class Exceedances(NamedTuple):
    """Exceedances over a per-state threshold; batch shape ``S = rewards.shape[:-1]``.

    Attributes:
      y: float[S + (W,)] exceedances sorted from the largest down, zero where
        ``mask`` is False. ``W <= m`` is a static width set by the request (see
        :func:`select_exceedances`).
      mask: bool[S + (W,)], True for the first ``num_exceedances`` entries.
      threshold: float[S], the threshold ``u``; ``-inf`` for a state with no
        valid rewards.
      num_exceedances: int32[S], the number of rewards strictly above ``u``.
      exceedance_fraction: float[S], ``p_u = num_exceedances / m_valid`` (zero
        for a state with no valid rewards).
      status: int32[S] :class:`~slgjax.tail.status.Status` flags: ``EMPTY``
        without valid rewards, ``TIES_AT_THRESHOLD`` when ties lowered the count.
    """

    y: jax.Array
    mask: jax.Array
    threshold: jax.Array
    num_exceedances: jax.Array
    exceedance_fraction: jax.Array
    status: jax.Array


def _static_width(m, tail_fraction, num_exceedances):
    """Return the static width of the exceedance arrays, an upper bound on the count."""
    if num_exceedances is None:
        # One extra slot absorbs a float rounding of ceil(tail_fraction * m_valid).
        width = math.ceil(tail_fraction * m) + 1
    elif isinstance(num_exceedances, int | np.integer):
        width = int(num_exceedances)
    else:
        width = m
    return max(1, min(width, m - 1))


def _check_request(tail_fraction, num_exceedances):
    if tail_fraction is not None and num_exceedances is not None:
        raise ValueError(
            f"got tail_fraction={tail_fraction} and num_exceedances={num_exceedances}; "
            "pass one of them."
        )
    if tail_fraction is not None and not 0.0 < float(tail_fraction) <= 1.0:
        raise ValueError(
            f"tail_fraction={tail_fraction} is outside (0, 1]; it is the share of the valid "
            "rewards kept as exceedances, for example 0.2."
        )
    if num_exceedances is not None and not is_traced(num_exceedances):
        if np.any(np.asarray(num_exceedances) < 1):
            raise ValueError(
                f"num_exceedances={num_exceedances} must be >= 1 (the requested number of "
                "rewards above the threshold)."
            )


def select_exceedances(
    rewards, mask=None, *, tail_fraction=None, num_exceedances=None
) -> Exceedances:
    """Select a threshold and the exceedances over it for each state.

    The requested count is ``k = ceil(tail_fraction * m_valid)``, or
    ``num_exceedances``, clipped to ``[1, m_valid - 1]`` so that the threshold
    ``u = r_(k+1)`` exists. The module docstring gives the tie rule.

    Args:
      rewards: float[..., m] rewards; leading axes are states (``[m]``,
        ``[K, m]``, ``[B, K, m]``).
      mask: optional bool[..., m]; False marks a missing sample.
      tail_fraction: share of each state's valid rewards to keep; the default
        is 0.2 when ``num_exceedances`` is not given either.
      num_exceedances: requested count, a Python int or an int array that
        broadcasts against the batch shape.

    Returns:
      :class:`Exceedances`. The width ``W`` of ``y`` is ``ceil(tail_fraction * m) + 1``
      for a tail fraction, ``num_exceedances`` for a Python int, ``m - 1`` for an
      array (each clipped to ``[1, m - 1]``, and 1 when ``m = 1``). It is static,
      so each new ``tail_fraction`` or integer count compiles once more.
    """
    _check_request(tail_fraction, num_exceedances)
    rewards, mask = as_rewards_and_mask(rewards, mask)
    if tail_fraction is None and num_exceedances is None:
        tail_fraction = DEFAULT_TAIL_FRACTION

    m = rewards.shape[-1]
    width = _static_width(m, tail_fraction, num_exceedances)
    if num_exceedances is None:
        request = jnp.asarray(tail_fraction, rewards.dtype)
    else:
        request = jnp.asarray(num_exceedances, jnp.int32)
    return _select_jit(rewards, mask, request, width=width, by_count=num_exceedances is not None)


def _select_impl(rewards, mask, request, width, by_count):
    num_valid = jnp.sum(mask, axis=-1, dtype=jnp.int32)
    ranked = -jnp.sort(jnp.where(mask, -rewards, jnp.inf), axis=-1)
    rank = jnp.arange(rewards.shape[-1])

    if by_count:
        requested = jnp.broadcast_to(request, num_valid.shape)
    else:
        fraction_count = jnp.ceil(request * num_valid.astype(rewards.dtype))
        requested = fraction_count.astype(jnp.int32)
    requested = jnp.minimum(jnp.maximum(requested, 1), jnp.minimum(num_valid - 1, width))
    requested = jnp.maximum(requested, 0)

    # The (k+1)-th largest valid reward; -inf when no reward is valid.
    threshold = jnp.take_along_axis(ranked, requested[..., None], axis=-1)[..., 0]
    empty = num_valid == 0
    safe_threshold = jnp.where(empty, 0.0, threshold)

    above = (rank < requested[..., None]) & (ranked > safe_threshold[..., None])
    count = jnp.sum(above, axis=-1, dtype=jnp.int32)
    in_tail = (rank < count[..., None])[..., :width]
    y = jnp.where(in_tail, ranked[..., :width] - safe_threshold[..., None], 0.0)

    fraction = count.astype(rewards.dtype) / jnp.maximum(num_valid, 1).astype(rewards.dtype)
    status = jnp.where(empty, int(Status.EMPTY), 0)
    status |= jnp.where(count < requested, int(Status.TIES_AT_THRESHOLD), 0)
    return Exceedances(y, in_tail, threshold, count, fraction, status.astype(jnp.int32))


_select_jit = jax.jit(_select_impl, static_argnames=("width", "by_count"))
