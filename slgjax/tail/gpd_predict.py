"""Best-of-N values of a spliced model: empirical below the threshold, GPD above.

For a state with ``m`` valid rewards ``x_(1) <= ... <= x_(m)``, ``k``
exceedances over the threshold ``u = x_(m-k)`` and ``p_u = k / m``, the spliced
distribution puts mass ``1/m`` on each of the ``m - k`` rewards up to ``u`` and
spreads the remaining ``p_u`` as ``u + GPD(xi, sigma)``. Its quantile function
is ``Q(p) = x_(ceil(p m))`` for ``p <= 1 - p_u`` and
``Q(p) = u + y_GPD(s / p_u)`` above, with ``s = 1 - p`` and ``y_GPD(s)`` the
exceedance whose survival is ``s``. The expected maximum of ``N`` draws is

.. math::

    V_N = \\int_0^1 Q(p)\\, d(p^N)
        = \\sum_{i=1}^{m-k} x_{(i)} \\left[(i/m)^N - ((i-1)/m)^N\\right]
          + \\int_{1-p_u}^1 Q(p)\\, d(p^N),

the sum exact and the integral by :func:`slgjax.tail.expected_max.expected_max`.
``V_N`` is infinite when ``xi >= 1``. The quick alternative is the return
level ``Q(1 - 1/N) = u + sigma ((N p_u)^xi - 1) / xi`` (for ``N p_u >= 1``;
below that the level falls in the empirical part).
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from slgjax.tail._validate import as_rewards_and_mask
from slgjax.tail.expected_max import expected_max
from slgjax.tail.gpd import _quantile_from_log_survival, expm1_ratio
from slgjax.tail.gpd_fit import GPDFit
from slgjax.tail.status import Status

__all__ = ["gpd_tail_value", "GPD_VALUE_METHODS"]

GPD_VALUE_METHODS = ("expected_max", "return_level")


def _budgets(n):
    n = jnp.asarray(n)
    if not isinstance(n, jax.core.Tracer) and bool(jnp.any(n < 1)):
        raise ValueError(f"budgets must be >= 1 (the number of draws in the maximum); got {n}.")
    return n


def gpd_tail_value(fit: GPDFit, rewards, mask, n, *, method: str = "expected_max"):
    """Predict the best-of-N value of each state from a spliced GPD model.

    Args:
      fit: a :class:`~slgjax.tail.gpd_fit.GPDFit` with batch shape ``S``, fitted
        to these rewards (its threshold, count and ``p_u`` set the splice).
      rewards: float[S + (m,)], the rewards the fit was made from.
      mask: bool[S + (m,)] or None (all valid), the same mask as for the fit.
      n: budgets ``N >= 1``, a scalar or an array (Python ints or int arrays;
        ``N`` up to about 10^9 keeps float32 precision).
      method: ``"expected_max"`` for the exact ``V_N`` of the spliced model;
        ``"return_level"`` for ``Q(1 - 1/N)``, continuous at ``xi = 0`` and
        equal to the smallest reward at ``N = 1``.

    Returns:
      float array of shape ``S + n.shape``. States whose fit is ``DEGENERATE``
      or has no exceedances get the value of the empirical distribution of
      their rewards (``p_u = 0``). States with ``xi >= 1`` and exceedances get
      ``+inf`` from ``"expected_max"`` (the fit carries ``INFINITE_MEAN``).
      States without valid rewards get ``-inf``. Never NaN.
    """
    if method not in GPD_VALUE_METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {GPD_VALUE_METHODS}.")
    rewards, mask = as_rewards_and_mask(rewards, mask)
    if tuple(jnp.shape(fit.xi)) != rewards.shape[:-1]:
        raise ValueError(
            f"fit batch shape {jnp.shape(fit.xi)} does not match rewards batch shape "
            f"{rewards.shape[:-1]}; pass the rewards the fit was made from."
        )
    n = _budgets(n)
    fit = GPDFit(*(jnp.asarray(field) for field in fit))
    return _value_jit(fit, rewards, mask, n, method=method)


def _value_impl(fit, rewards, mask, n, method):
    dtype = rewards.dtype
    budget_axes = (None,) * n.ndim

    def expand(value):
        """Append one axis per budget dimension to a batch-shaped value."""
        return value[(...,) + budget_axes]

    def expand_ranks(per_rank):
        """Insert the budget axes before the last (rank) axis of an S + (m,) array."""
        return per_rank[(Ellipsis, *budget_axes, slice(None))]

    num_valid = jnp.sum(mask, axis=-1, dtype=jnp.int32)
    ascending = jnp.sort(jnp.where(mask, rewards, jnp.inf), axis=-1)
    rank = jnp.arange(1, rewards.shape[-1] + 1)
    ascending = jnp.where(rank <= num_valid[..., None], ascending, 0.0)

    # Degenerate fits and fits without exceedances use the empirical model.
    empirical_only = ((fit.status & int(Status.DEGENERATE)) != 0) | (fit.num_exceedances <= 0)
    count = jnp.where(empirical_only, 0, fit.num_exceedances)
    p_u = jnp.where(empirical_only, 0.0, fit.exceedance_fraction).astype(dtype)
    num_below = num_valid - count
    valid_float = jnp.maximum(num_valid, 1).astype(dtype)
    budgets = n.astype(dtype)

    xi = expand(fit.xi.astype(dtype))
    sigma = expand(fit.sigma.astype(dtype))
    threshold = expand(jnp.where(num_valid > 0, fit.threshold, 0.0).astype(dtype))
    tail_mass = expand(p_u)

    if method == "expected_max":
        # Empirical part: x_(i) weighted by (i/m)^N - ((i-1)/m)^N for i <= m - k.
        levels = rank.astype(dtype) / valid_float[..., None]
        previous = (rank - 1).astype(dtype) / valid_float[..., None]
        log_cdf = budgets[..., None] * expand_ranks(jnp.log(levels))
        log_previous = budgets[..., None] * expand_ranks(jnp.log(previous))
        weights = jnp.exp(log_cdf) - jnp.exp(log_previous)
        below = expand_ranks(rank <= num_below[..., None])
        terms = jnp.where(below, expand_ranks(ascending) * weights, 0.0)
        empirical = jnp.sum(terms, axis=-1)

        # GPD part over levels (1 - p_u, 1). Safe parameters keep the nodes of
        # states without a tail, or with xi >= 1, finite.
        infinite = (xi >= 1) & (tail_mass > 0)
        safe_xi = jnp.where(infinite, 0.0, xi)
        has_tail = tail_mass > 0
        safe_mass = jnp.where(has_tail, tail_mass, 1.0)

        def quantile(p, s):
            del p
            minus_log_s = jnp.log(safe_mass[..., None]) - jnp.log(s)
            exceedance = _quantile_from_log_survival(
                minus_log_s, safe_xi[..., None], sigma[..., None]
            )
            return threshold[..., None] + exceedance

        lower_level = 1.0 - tail_mass
        tail = expected_max(quantile, budgets, lower_level=lower_level, dtype=dtype)
        tail = tail + _truncation_correction(budgets, safe_xi, sigma, tail_mass, has_tail)
        value = empirical + jnp.where(has_tail, tail, 0.0)
        value = jnp.where(infinite, jnp.inf, value)
    else:
        # Return level Q(1 - 1/N): GPD part when N p_u >= 1, else empirical.
        expected_count = budgets * tail_mass
        in_tail = expected_count >= 1
        log_count = jnp.log(jnp.where(in_tail, expected_count, 1.0))
        tail_level = threshold + sigma * log_count * expm1_ratio(xi * log_count)

        position = jnp.ceil(expand(valid_float) - expand(valid_float) / budgets)
        index = jnp.clip(position.astype(jnp.int32), 1, expand(jnp.maximum(num_valid, 1))) - 1
        flat_index = index.reshape(rewards.shape[:-1] + (-1,))
        empirical = jnp.take_along_axis(ascending, flat_index, axis=-1).reshape(index.shape)
        value = jnp.where(in_tail, tail_level, empirical)

    return jnp.where(expand(num_valid > 0), value, -jnp.inf)


def _log_gamma_ratio(x, shift):
    """Return ``log Gamma(x) - log Gamma(x - shift)`` for ``x >= 2``, ``0 < shift < 1``.

    For ``x >= 10`` the difference of Stirling series avoids the cancellation
    of two large ``gammaln`` values (``x`` reaches 10^9); the first omitted
    term is below ``shift / (120 x^4)``.
    """
    large = x >= 10
    x_large = jnp.where(large, x, 10.0)
    stirling = (
        shift * jnp.log(x_large)
        - (x_large - shift - 0.5) * jnp.log1p(-shift / x_large)
        - shift
        - shift / (12.0 * x_large * (x_large - shift))
    )
    x_small = jnp.where(large, 2.0, x)
    direct = gammaln(x_small) - gammaln(x_small - shift)
    return jnp.where(large, stirling, direct)


def _truncation_correction(budgets, xi, sigma, tail_mass, has_tail):
    """Return the part of the GPD integral that the quadrature cuts off near ``p = 1``.

    The tanh-sinh nodes of ``expected_max`` stop at a distance of about 1e-17
    from the upper end of the level interval. The GPD quantile grows like
    ``s^(-xi)`` there, so the missed mass is a share of order
    ``(1e-17)^(1 - xi)`` of the integral: 2% at ``xi = 0.9``, below 1e-11 for
    ``xi <= 0.25``. The same cut-off applied to ``s^(-xi)`` over all levels
    has the exact value ``N B(N, 1 - xi)``, and the cut-off part scales with
    the width ``1 - (1 - p_u)^N`` of the interval as ``width^(1 - xi)``, so

        correction = sigma / xi p_u^xi width^(1 - xi) (N B(N, 1 - xi) - quadrature).

    It is applied for ``0.25 < xi < 1`` only, where ``sigma / xi`` is safe.
    """
    heavy = has_tail & (xi > 0.25) & (xi < 1)
    heavy_xi = jnp.where(heavy, xi, 0.5)
    safe_mass = jnp.where(heavy, tail_mass, 0.5)

    exact = jnp.exp(_log_gamma_ratio(budgets + 1.0, heavy_xi) + gammaln(1.0 - heavy_xi))

    def power(p, s):
        del p
        return jnp.exp(-heavy_xi[..., None] * jnp.log(s))

    quadrature = expected_max(power, budgets, lower_level=0.0, dtype=budgets.dtype)
    below_one = safe_mass < 1
    log_lower = jnp.log1p(-jnp.where(below_one, safe_mass, 0.0))
    width = jnp.where(below_one, -jnp.expm1(budgets * log_lower), 1.0)
    scale = sigma / heavy_xi * jnp.exp(heavy_xi * jnp.log(safe_mass)) * width ** (1.0 - heavy_xi)
    return jnp.where(heavy, scale * (exact - quadrature), 0.0)


_value_jit = jax.jit(_value_impl, static_argnames=("method",))
