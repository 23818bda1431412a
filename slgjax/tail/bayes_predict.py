"""Posterior predictive best-of-N values ``V_N`` of Bayesian GPD tails.

Every posterior draw ``(xi_d, sigma_d)`` defines a spliced model (empirical
below the threshold, ``GPD(xi_d, sigma_d)`` above) and hence a value
``V_N^(d)`` from :func:`slgjax.tail.gpd_predict.gpd_tail_value`. The draws
``V_N^(1..D)`` are a sample of the posterior of ``V_N`` given the exceedances.
The threshold, the exceedance fraction and the empirical part are treated as
known, so the band reflects the uncertainty of the tail parameters only.

A draw with ``xi_d >= 1`` has ``V_N^(d) = inf`` (the expected maximum does not
exist). Means, quantiles and draws then contain ``inf`` and the status carries
``INFINITE_MEAN``; nothing here returns NaN.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.tail._validate import as_rewards_and_mask, is_traced
from slgjax.tail.bayes_fit import BayesGPDFit
from slgjax.tail.gpd_fit import GPDFit

# _value_impl is the traceable core of gpd_tail_value. The public function
# checks its budgets with a JAX operation, which fails inside jit or lax.map.
from slgjax.tail.gpd_predict import GPD_VALUE_METHODS, _value_impl
from slgjax.tail.status import Status

__all__ = [
    "BayesTailValue",
    "bayes_tail_draws",
    "bayes_tail_posterior",
    "bayes_tail_value",
    "BAYES_STATISTICS",
]

BAYES_STATISTICS = ("mean", "quantile", "thompson")

# Upper bound on the elements of one chunk of draws in the quadrature of
# gpd_tail_value (batch x budgets x draws x ~155 nodes), to bound memory.
_CHUNK_ELEMENTS = 2**24
_QUADRATURE_NODES = 160


class BayesTailValue(NamedTuple):
    """Posterior summary of ``V_N``; ``S`` is the fit's batch shape.

    Attributes:
      mean: float[S + n.shape] posterior mean (``inf`` if any draw is ``inf``).
      median: float[S + n.shape].
      lower: float[S + n.shape], lower end of the central credible interval.
      upper: float[S + n.shape], upper end of the central credible interval.
      draws: float[S + n.shape + (D,)], ``V_N`` of every posterior draw, for
        Thompson sampling or custom summaries.
      infinite_fraction: float[S], share of draws with ``xi >= 1``; their
        ``V_N`` is ``inf`` for states that have a GPD tail.
      status: int32[S], the fit's status with ``INFINITE_MEAN`` where any draw
        is infinite.
    """

    mean: jax.Array
    median: jax.Array
    lower: jax.Array
    upper: jax.Array
    draws: jax.Array
    infinite_fraction: jax.Array
    status: jax.Array


def _draw_fit(fit, xi, sigma):
    return GPDFit(
        xi=xi,
        sigma=sigma,
        threshold=fit.threshold,
        exceedance_fraction=fit.exceedance_fraction,
        num_exceedances=fit.num_exceedances,
        status=fit.status,
    )


def _check_inputs(fit, rewards, mask, n, method):
    if method not in GPD_VALUE_METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {GPD_VALUE_METHODS}.")
    rewards, mask = as_rewards_and_mask(rewards, mask)
    batch_shape = fit.xi_samples.shape[:-1]
    if rewards.shape[:-1] != batch_shape:
        raise ValueError(
            f"fit batch shape {batch_shape} does not match rewards batch shape "
            f"{rewards.shape[:-1]}; pass the rewards the fit was made from."
        )
    n = jnp.asarray(n)
    if not is_traced(n) and bool(np.any(np.asarray(n) < 1)):
        raise ValueError(f"budgets must be >= 1 (the number of draws in the maximum); got {n}.")
    return rewards, mask, n


@functools.partial(jax.jit, static_argnames=("method", "chunk"))
def _draw_values(fit, rewards, mask, n, *, method, chunk):
    def one_draw(parameters):
        xi, sigma = parameters
        return _value_impl(_draw_fit(fit, xi, sigma), rewards, mask, n, method)

    leading = (jnp.moveaxis(fit.xi, -1, 0), jnp.moveaxis(fit.sigma, -1, 0))
    values = jax.lax.map(one_draw, leading, batch_size=chunk)
    return jnp.moveaxis(values, 0, -1)


_one_draw_value = jax.jit(_value_impl, static_argnames=("method",))


def bayes_tail_draws(fit: BayesGPDFit, rewards, mask=None, n=1, *, method="expected_max"):
    """Return ``V_N`` for every posterior draw, float[S + n.shape + (D,)].

    Args:
      fit: a :class:`~slgjax.tail.bayes_fit.BayesGPDFit` with batch shape ``S``.
      rewards: float[S + (m,)], the rewards the fit was made from.
      mask: optional bool[S + (m,)], the same mask as for the fit.
      n: budgets ``N >= 1``, a scalar or an array.
      method: ``"expected_max"`` or ``"return_level"``, as in
        :func:`~slgjax.tail.gpd_predict.gpd_tail_value`.

    Draws are processed in chunks so that memory stays bounded for large
    batches. Compiles once per shape of the fit, the rewards and ``n``.
    """
    rewards, mask, n = _check_inputs(fit, rewards, mask, n, method)
    num_draws = fit.xi_samples.shape[-1]
    num_states = max(1, math.prod(fit.xi_samples.shape[:-1]))
    per_draw = num_states * max(1, n.size) * _QUADRATURE_NODES
    chunk = max(1, min(num_draws, _CHUNK_ELEMENTS // per_draw))
    draws_fit = _draw_fit(fit, fit.xi_samples, fit.sigma_samples)
    return _draw_values(draws_fit, rewards, mask, n, method=method, chunk=chunk)


def _quantile(draws, level):
    """Linear-interpolation quantile along the last axis that never returns NaN.

    ``jnp.quantile`` computes ``a + t (b - a)``, which is NaN when ``b = inf``
    and ``t = 0``. This version returns the lower order statistic whenever the
    interpolation weight is zero or both neighbours are equal.
    """
    ordered = jnp.sort(draws, axis=-1)
    position = level * (draws.shape[-1] - 1)
    below = math.floor(position)
    above = min(below + 1, draws.shape[-1] - 1)
    weight = position - below
    low, high = ordered[..., below], ordered[..., above]
    if weight == 0.0:
        return low
    same = low == high
    safe_high = jnp.where(same, 0.0, high)
    safe_low = jnp.where(same, 0.0, low)
    return jnp.where(same, low, safe_low + weight * (safe_high - safe_low))


def _check_level(name, value):
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}={value} is outside (0, 1); pass a probability such as 0.9.")


def _infinite_status(fit):
    infinite_fraction = jnp.mean(fit.xi_samples >= 1, axis=-1)
    status = fit.status | jnp.where(infinite_fraction > 0, int(Status.INFINITE_MEAN), 0)
    return infinite_fraction, status.astype(jnp.int32)


def bayes_tail_posterior(
    fit: BayesGPDFit,
    rewards,
    mask=None,
    n=1,
    *,
    credible_mass: float = 0.9,
    method: str = "expected_max",
) -> BayesTailValue:
    """Summarise the posterior predictive ``V_N`` of each state.

    Args:
      fit: a :class:`~slgjax.tail.bayes_fit.BayesGPDFit` with batch shape ``S``.
      rewards: float[S + (m,)], the rewards the fit was made from.
      mask: optional bool[S + (m,)], the same mask as for the fit.
      n: budgets ``N >= 1``, a scalar or an array.
      credible_mass: mass of the central credible interval ``[lower, upper]``,
        between the ``(1 - c)/2`` and ``(1 + c)/2`` posterior quantiles.
      method: ``"expected_max"`` or ``"return_level"``.

    Returns:
      A :class:`BayesTailValue`.
    """
    _check_level("credible_mass", credible_mass)
    draws = bayes_tail_draws(fit, rewards, mask, n, method=method)
    tail_share = 0.5 * (1.0 - credible_mass)
    infinite_fraction, status = _infinite_status(fit)
    return BayesTailValue(
        mean=jnp.mean(draws, axis=-1),
        median=_quantile(draws, 0.5),
        lower=_quantile(draws, tail_share),
        upper=_quantile(draws, 1.0 - tail_share),
        draws=draws,
        infinite_fraction=infinite_fraction,
        status=status,
    )


def bayes_tail_value(
    fit: BayesGPDFit,
    rewards,
    mask=None,
    n=1,
    *,
    statistic: str = "mean",
    q: float = 0.9,
    key=None,
    method: str = "expected_max",
):
    """Return one number per state and budget for ranking states in a search.

    Args:
      fit: a :class:`~slgjax.tail.bayes_fit.BayesGPDFit` with batch shape ``S``.
      rewards: float[S + (m,)], the rewards the fit was made from.
      mask: optional bool[S + (m,)], the same mask as for the fit.
      n: budgets ``N >= 1``, a scalar or an array.
      statistic: ``"mean"`` (posterior mean of ``V_N``), ``"quantile"`` (its
        posterior ``q`` quantile, an optimistic value for large ``q``) or
        ``"thompson"`` (``V_N`` of one posterior draw picked with ``key``).
      q: quantile level for ``statistic="quantile"``.
      key: JAX random key, required for ``statistic="thompson"``.
      method: ``"expected_max"`` or ``"return_level"``.

    Returns:
      float[S + n.shape]; ``inf`` where the statistic reaches draws with
      ``xi >= 1``.

    Thompson sampling picks one draw index for the whole batch. Draws of
    different states come from independent chains (independent model) or are
    one joint draw of the prompt's posterior (hierarchical model), so the
    picked values are a single draw from the joint posterior of all states.
    Only that draw's ``V_N`` is computed.
    """
    if statistic not in BAYES_STATISTICS:
        raise ValueError(f"statistic={statistic!r} is unknown; use one of {BAYES_STATISTICS}.")
    if statistic == "thompson":
        if key is None:
            raise ValueError(
                "statistic='thompson' needs a random key; pass key=jax.random.key(...)."
            )
        rewards, mask, n = _check_inputs(fit, rewards, mask, n, method)
        index = jax.random.randint(key, (), 0, fit.xi_samples.shape[-1])
        draw = _draw_fit(fit, fit.xi_samples[..., index], fit.sigma_samples[..., index])
        return _one_draw_value(draw, rewards, mask, n, method=method)

    if statistic == "quantile":
        _check_level("q", q)
    draws = bayes_tail_draws(fit, rewards, mask, n, method=method)
    if statistic == "mean":
        return jnp.mean(draws, axis=-1)
    return _quantile(draws, q)
