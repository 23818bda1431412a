"""Empirical ground truth for best-of-N curves: unbiased estimators from a pool.

Given a pool of ``n`` observed rewards sorted ascending, ``x_(1) <= ... <= x_(n)``,
the expected maximum of ``N`` rewards drawn from the pool without replacement is

.. math::

    \\hat V_N = \\sum_{i=N}^{n} x_{(i)} \\binom{i-1}{N-1} \\Big/ \\binom{n}{N}
              = x_{(n)} - \\sum_{i=N}^{n-1} F_i \\, (x_{(i+1)} - x_{(i)}),
    \\qquad F_i = \\binom{i}{N} \\Big/ \\binom{n}{N},

where ``F_i`` is the probability that all ``N`` draws come from the ``i`` smallest
rewards. It is an unbiased estimate of ``V_N = E[max of N i.i.d. draws]`` for any
``N <= n``. The second (summation by parts) form is the one computed: each
``F_i`` lies in ``[0, 1]``, ties contribute zero gaps, and ``log F_i`` comes from
:func:`~slgjax.scaling._binomial.log_binomial_ratio`, which stays accurate in
float32 for pools of 10^6 rewards.

With 0/1 rewards and ``c`` successes the same formula gives ``1 - C(n-c, N)/C(n, N)``,
the unbiased pass@k estimator of M. Chen et al., "Evaluating large language
models trained on code", arXiv:2107.03374 (2021), computed by :func:`pass_at_k`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.scaling._binomial import log_binomial_ratio
from slgjax.tail._validate import as_rewards_and_mask, is_traced

__all__ = ["empirical_best_of_n", "pass_at_k"]


def check_not_empty(rewards):
    """Raise when the sample axis of ``rewards`` has length zero."""
    if rewards.shape[-1] == 0:
        raise ValueError(
            f"rewards of shape {rewards.shape} hold no samples (the last axis is empty); "
            "pass at least one reward per pool, and mask out missing ones."
        )


def check_budgets(n, name="n"):
    """Return budgets as an array; concrete budgets that are not whole numbers >= 1 raise."""
    n = jnp.asarray(n)
    if is_traced(n):
        return n
    values = np.asarray(n)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise ValueError(f"{name} must hold whole numbers of draws; got {values}.")
    if np.any(values < 1):
        raise ValueError(f"{name} must be >= 1 (the number of draws in the maximum); got {values}.")
    return n


def empirical_best_of_n(rewards, mask=None, *, n, strict: bool = True):
    """Estimate ``E[max of N]`` from each pool without bias (draws without replacement).

    Args:
      rewards: float[..., n_pool] pools of observed rewards; leading axes are
        pools (states or prompts).
      mask: optional bool[..., n_pool]; False marks a missing entry, so pools
        may hold different numbers of rewards.
      n: the budgets ``N``, an int or an int array of any shape.
      strict: raise when a budget exceeds a pool. With False the estimate is
        NaN for that pool and budget instead, which lets pools of different
        sizes share one list of budgets.

    Returns:
      float array of shape ``rewards.shape[:-1] + n.shape``: the estimate for
      each pool and budget.

    Raises:
      ValueError: for a non-finite reward under the mask (the message names its
        position), an empty sample axis, a budget below one, or, when ``strict``, a budget larger
        than the number of valid rewards of some pool (the estimator is
        undefined there).

    Under ``jit`` or ``vmap`` these checks cannot run: a budget larger than a
    pool, or below one, gives NaN for that pool, and non-finite rewards are
    dropped from the mask. One compilation serves every budget value of a
    given shape; a new pool shape or budget shape traces again.
    """
    rewards, mask = as_rewards_and_mask(rewards, mask)
    check_not_empty(rewards)
    n = check_budgets(n)

    if strict and not is_traced(rewards, mask, n):
        counts = np.asarray(jnp.sum(mask, axis=-1))
        largest = int(np.max(n)) if n.size else 1
        too_small = np.argwhere(counts < largest)
        if too_small.size:
            position = tuple(int(i) for i in too_small[0])
            raise ValueError(
                f"budget N={largest} exceeds the pool at {list(position)}, which contains "
                f"{int(counts[position])} valid rewards; the best-of-N estimate without "
                "replacement needs N <= pool size. Use a smaller budget or a tail model "
                "(predict_best_of_n) to extrapolate."
            )

    return _empirical_jit(rewards, mask, n)


@jax.jit
def _empirical_jit(rewards, mask, n):
    dtype = rewards.dtype
    size = rewards.shape[-1]
    count = jnp.sum(mask, axis=-1)

    # Valid rewards sorted ascending at ranks 1..count; missing ones sit at the end.
    ordered = jnp.sort(jnp.where(mask, rewards, jnp.inf), axis=-1)
    rank = jnp.arange(1, size + 1)
    valid = rank < count[..., None]
    following = jnp.concatenate([ordered[..., 1:], ordered[..., -1:]], axis=-1)
    gaps = jnp.where(valid, following - jnp.where(valid, ordered, 0.0), 0.0)
    top = jnp.take_along_axis(ordered, jnp.maximum(count - 1, 0)[..., None], axis=-1)[..., 0]

    total = count.astype(dtype)[..., None]
    excluded = total - rank.astype(dtype)

    def estimate(budget):
        budget = budget.astype(dtype)
        below = jnp.exp(log_binomial_ratio(total, budget, jnp.maximum(excluded, 0.0)))
        value = top - jnp.sum(jnp.where(valid, below, 0.0) * gaps, axis=-1)
        defined = (budget >= 1) & (budget <= count.astype(dtype))
        return jnp.where(defined, value, jnp.nan)

    # One budget at a time keeps the working memory at one [..., n_pool] array.
    values = jax.lax.map(estimate, n.reshape(-1))
    values = jnp.moveaxis(values, 0, -1)
    return values.reshape(count.shape + n.shape)


def pass_at_k(num_correct, num_samples, k):
    """Unbiased pass@k: the chance that ``k`` of ``n`` samples include a correct one.

    .. math::

        \\text{pass@}k = 1 - \\binom{n - c}{k} \\Big/ \\binom{n}{k},

    computed in log space (Chen et al. 2021, arXiv:2107.03374).

    Args:
      num_correct: ``c``, the number of correct samples; int array.
      num_samples: ``n``, the number of samples drawn; int array.
      k: the number of samples allowed, ``1 <= k <= n``; int or int array.
        The three arguments broadcast together.

    Returns:
      float array of the broadcast shape. It is exactly 1 where ``n - c < k``.

    Raises:
      ValueError: for concrete inputs with ``c < 0``, ``c > n``, ``k < 1`` or
      ``k > n``. Traced inputs outside these ranges give NaN.
    """
    c, n_samples, k = jnp.asarray(num_correct), jnp.asarray(num_samples), jnp.asarray(k)
    if not is_traced(c, n_samples, k):
        if bool(jnp.any((c < 0) | (c > n_samples))):
            raise ValueError(
                f"num_correct must lie in [0, num_samples]; got num_correct={np.asarray(c)}, "
                f"num_samples={np.asarray(n_samples)}."
            )
        if bool(jnp.any((k < 1) | (k > n_samples))):
            raise ValueError(
                f"k must lie in [1, num_samples]; got k={np.asarray(k)}, "
                f"num_samples={np.asarray(n_samples)}. pass@k is undefined for k > n."
            )
    return _pass_at_k_jit(c, n_samples, k)


@jax.jit
def _pass_at_k_jit(c, n_samples, k):
    dtype = jnp.result_type(float)
    c, n_samples, k = (v.astype(dtype) for v in (c, n_samples, k))
    value = -jnp.expm1(log_binomial_ratio(n_samples, k, c))
    defined = (c >= 0) & (c <= n_samples) & (k >= 1) & (k <= n_samples)
    return jnp.where(defined, value, jnp.nan)
