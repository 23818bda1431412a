"""Best-of-N selection by a scorer: the expected value of the top-scored of N draws.

A pool contains ``m`` items, each with a score (what a reward model sees) and a
value (what the selection is judged by, for example the verifier's 0/1
verdict). Draw ``N`` items without replacement, keep the one with the highest
score, breaking ties uniformly at random, and record its value. With the
items sorted by score ascending, position ``i`` (0-based) is the top of the
draw with probability

.. math::

    w_i = \\binom{i}{N-1} \\Big/ \\binom{m}{N} = F_{i+1} - F_i, \\qquad
    F_k = \\binom{k}{N} \\Big/ \\binom{m}{N},

where ``F_k`` is the probability that all ``N`` draws come from the ``k``
lowest-scored items. A group of tied scores at positions ``a .. e-1`` holds
the top with probability ``F_e - F_a``; by symmetry each member is then
picked with the same chance, so

.. math::

    \\mathbb{E}[\\text{value}] = \\sum_{\\text{groups } g}
        (F_{e_g} - F_{a_g}) \\, \\overline{\\text{value}}_g .

With 0/1 values this is the best-of-N accuracy of the scorer; with
``scores == values`` it is the unbiased best-of-N estimate of
:func:`~slgjax.scaling.empirical.empirical_best_of_n`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.scaling._binomial import log_binomial_ratio
from slgjax.scaling.empirical import check_budgets, check_not_empty
from slgjax.tail._validate import as_rewards_and_mask, is_traced

__all__ = ["selection_at_n"]


def selection_at_n(scores, values, mask=None, *, n, strict: bool = True):
    """Expected value of the top-scored item among ``N`` drawn without replacement.

    Args:
      scores: float[..., m] scores of each pool's items; leading axes are
        pools (prompts or states).
      values: float[..., m] values of the same items, for example 0/1
        correctness.
      mask: optional bool[..., m]; False marks a missing item, so pools may
        hold different numbers of items.
      n: the budgets ``N``, an int or an int array of any shape.
      strict: raise when a budget exceeds a pool. With False the result is
        NaN for that pool and budget instead.

    Returns:
      float array of shape ``scores.shape[:-1] + n.shape``.

    Raises:
      ValueError: for shapes that differ, a non-finite score or value under
        the mask (the message names its position), an empty item axis or a
        budget below one. With ``strict``, also for a budget larger than the
        number of valid items of some pool.

    Under ``jit`` or ``vmap`` these checks cannot run: a budget outside
    ``[1, count]`` gives NaN for that pool, and items with a non-finite score
    or value are dropped from the mask. A new pool shape or budget shape
    traces again; new budget values of the same shape do not.
    """
    scores, mask = as_rewards_and_mask(scores, mask, name="scores")
    values = jnp.asarray(values)
    if values.shape != scores.shape:
        raise ValueError(
            f"values shape {values.shape} does not match scores shape {scores.shape}; pass "
            "one value per scored item."
        )
    values, mask = as_rewards_and_mask(values, mask, name="values")
    check_not_empty(scores)
    n = check_budgets(n)

    if strict and not is_traced(scores, values, mask, n):
        counts = np.asarray(jnp.sum(mask, axis=-1))
        largest = int(np.max(n)) if n.size else 1
        too_small = np.argwhere(counts < largest)
        if too_small.size:
            position = tuple(int(i) for i in too_small[0])
            raise ValueError(
                f"budget N={largest} exceeds the pool at {list(position)}, which contains "
                f"{int(counts[position])} valid items; selection among N draws without "
                "replacement needs N <= pool size. Use a smaller budget."
            )

    dtype = jnp.result_type(scores.dtype, values.dtype)
    return _selection_jit(scores.astype(dtype), values.astype(dtype), mask, n)


@jax.jit
def _selection_jit(scores, values, mask, n):
    dtype = scores.dtype
    size = scores.shape[-1]
    count = jnp.sum(mask, axis=-1)

    # Valid items sorted by score at positions 0..count-1; missing ones sit at the end.
    keys = jnp.where(mask, scores, jnp.inf)
    order = jnp.argsort(keys, axis=-1, stable=True)
    ordered = jnp.take_along_axis(keys, order, axis=-1)
    ordered_values = jnp.take_along_axis(jnp.where(mask, values, 0.0), order, axis=-1)
    valid = jnp.arange(size) < count[..., None]

    # Each position's tie group spans [start, end). A missing item's +inf key
    # never ties with a finite score, so valid groups stop before the missing items.
    position = jnp.arange(size)
    first = jnp.concatenate(
        [jnp.ones_like(ordered[..., :1], bool), ordered[..., 1:] != ordered[..., :-1]], axis=-1
    )
    last = jnp.concatenate(
        [ordered[..., :-1] != ordered[..., 1:], jnp.ones_like(ordered[..., :1], bool)], axis=-1
    )
    start = jax.lax.cummax(jnp.where(first, position, 0), axis=ordered.ndim - 1)
    end = jax.lax.cummin(jnp.where(last, position + 1, size), axis=ordered.ndim - 1, reverse=True)
    group_mean_share = jnp.where(valid, ordered_values / jnp.maximum(end - start, 1), 0.0)

    total = count.astype(dtype)[..., None]

    def expected(budget):
        budget = budget.astype(dtype)

        def below(k):
            # F_k = C(k, N) / C(count, N): all N draws among the k lowest-scored items.
            excluded = jnp.maximum(total - k.astype(dtype), 0.0)
            return jnp.exp(log_binomial_ratio(total, budget, excluded))

        weights = below(end) - below(start)
        value = jnp.sum(weights * group_mean_share, axis=-1)
        defined = (budget >= 1) & (budget <= count.astype(dtype))
        return jnp.where(defined, value, jnp.nan)

    # One budget at a time keeps the working memory at one [..., m] array.
    results = jax.lax.map(expected, n.reshape(-1))
    results = jnp.moveaxis(results, 0, -1)
    return results.reshape(count.shape + n.shape)
