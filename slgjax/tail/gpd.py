"""Generalized Pareto distribution of exceedances over a threshold.

An exceedance ``y = r - u >= 0`` over a threshold ``u`` follows ``GPD(xi, sigma)``
with shape ``xi`` and scale ``sigma > 0`` when

.. math::

    P(Y > y) = (1 + \\xi y / \\sigma)^{-1/\\xi}, \\qquad
    f(y) = \\frac{1}{\\sigma} (1 + \\xi y / \\sigma)^{-1 - 1/\\xi},

on ``y >= 0`` and, for ``xi < 0``, ``y <= -sigma / xi``. At ``xi = 0`` this is
the exponential distribution ``P(Y > y) = exp(-y / sigma)``.

Every function here is continuous through ``xi = 0``: it uses
``log1p(x) / x`` and ``expm1(x) / x`` with a Taylor series for ``|x| < 0.01``,
so values and gradients stay finite at ``xi = 0`` exactly. Values outside the
support are exact limits (``-inf`` log-density, survival one below zero and
zero beyond the endpoint) and their gradients are zero, never NaN.

A scale ``sigma = 0`` is read as a point mass at zero, which is what a
degenerate fit (:attr:`~slgjax.tail.status.Status.DEGENERATE`) reports.
"""

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.tail._validate import is_traced

__all__ = [
    "gpd_log_prob",
    "gpd_cdf",
    "gpd_log_survival",
    "gpd_quantile",
    "gpd_quantile_from_survival",
    "gpd_sample",
]

# Below this |x| the ratios log1p(x)/x and expm1(x)/x switch to their series.
_SERIES_CUTOFF = 0.01


def log1p_ratio(x):
    """Return ``log1p(x) / x`` with its limit 1 at ``x = 0``; needs ``x >= -1``.

    The value is ``+inf`` at ``x = -1``. Gradients are finite for ``x > -1``.
    """
    small = jnp.abs(x) < _SERIES_CUTOFF
    x_small = jnp.where(small, x, 0.0)
    x_large = jnp.where(small, 1.0, x)

    # sum_k (-x)^k / (k + 1); the first omitted term is below 1e-17 at |x| = 0.01.
    series = jnp.zeros_like(x_small)
    for k in range(8, -1, -1):
        series = 1.0 / (k + 1) - x_small * series
    return jnp.where(small, series, jnp.log1p(x_large) / x_large)


def expm1_ratio(x):
    """Return ``expm1(x) / x`` with its limit 1 at ``x = 0``.

    The value tends to zero as ``x -> -inf``. Where ``expm1(x)`` overflows the
    value is ``+inf`` with a zero gradient, so large ``x`` never yields NaN.
    """
    dtype = jnp.result_type(x)
    overflow = x > 0.99 * np.log(np.finfo(dtype).max)
    small = jnp.abs(x) < _SERIES_CUTOFF
    x_small = jnp.where(small, x, 0.0)
    x_large = jnp.where(small | overflow, 1.0, x)

    # sum_k x^k / (k + 1)!; the first omitted term is below 1e-18 at |x| = 0.01.
    series = jnp.zeros_like(x_small)
    for k in range(6, -1, -1):
        series = 1.0 + x_small * series / (k + 2)
    value = jnp.where(small, series, jnp.expm1(x_large) / x_large)
    return jnp.where(overflow, jnp.inf, value)


def _as_float_arrays(*arrays):
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return [jnp.asarray(a, dtype) for a in arrays]


def _check_scale(sigma):
    if is_traced(sigma):
        return
    negative = np.asarray(sigma) < 0
    if np.any(negative):
        raise ValueError(
            f"sigma has negative entries (first: {np.asarray(sigma)[negative].flat[0]}); the GPD "
            "scale must be >= 0 (0 means a point mass at zero)."
        )


def _check_levels(levels, name):
    if is_traced(levels):
        return
    bad = ~((np.asarray(levels) >= 0) & (np.asarray(levels) <= 1))
    if np.any(bad):
        raise ValueError(
            f"{name} has entries outside [0, 1] (first: {np.asarray(levels)[bad].flat[0]}); pass "
            "probabilities."
        )


def _safe_scale(sigma):
    positive = sigma > 0
    return positive, jnp.where(positive, sigma, 1.0)


def gpd_log_prob(y, *, xi, sigma):
    """Return the GPD log-density ``log f(y)``.

    ``log f(y) = -log(sigma) - (1 + 1/xi) log1p(xi y / sigma)``, written as
    ``-log(sigma) - log1p(x) - (y / sigma) log1p(x) / x`` with ``x = xi y / sigma``
    so that it is finite at ``xi = 0``.

    Args:
      y: exceedances, any shape; broadcast with ``xi`` and ``sigma``.
      xi: shape parameter.
      sigma: scale, ``>= 0``.

    Returns:
      The log-density, ``-inf`` outside the support (``y < 0``, or
      ``y > -sigma/xi`` when ``xi < 0``). At the upper endpoint ``y = -sigma/xi``
      it is ``+inf`` for ``xi < -1``, ``-log(sigma)`` for ``xi = -1`` and ``-inf``
      for ``-1 < xi < 0``, as in ``scipy.stats.genpareto``. With ``sigma = 0`` it
      is ``+inf`` at ``y = 0`` and ``-inf`` elsewhere.
    """
    _check_scale(sigma)
    y, xi, sigma = _as_float_arrays(y, xi, sigma)
    positive, safe_sigma = _safe_scale(sigma)

    z = y / safe_sigma
    x = xi * z
    inside = positive & (y >= 0) & (x > -1)
    at_endpoint = positive & (y > 0) & (x == -1)
    z_in = jnp.where(inside, z, 0.0)
    x_in = jnp.where(inside, x, 0.0)
    log_density = -jnp.log(safe_sigma) - jnp.log1p(x_in) - z_in * log1p_ratio(x_in)

    endpoint_value = jnp.where(
        xi < -1, jnp.inf, jnp.where(xi == -1, -jnp.log(safe_sigma), -jnp.inf)
    )
    outside_value = jnp.where(at_endpoint, endpoint_value, -jnp.inf)
    point_mass = jnp.where(y == 0, jnp.inf, -jnp.inf)
    return jnp.where(positive, jnp.where(inside, log_density, outside_value), point_mass)


def gpd_log_survival(y, *, xi, sigma):
    """Return ``log P(Y > y) = -log1p(xi y / sigma) / xi``.

    Args:
      y: exceedances, any shape; broadcast with ``xi`` and ``sigma``.
      xi: shape parameter.
      sigma: scale, ``>= 0``.

    Returns:
      The log-survival: zero for ``y <= 0`` and ``-inf`` from the upper
      endpoint ``-sigma/xi`` on (``xi < 0``). With ``sigma = 0`` it is zero for
      ``y < 0`` and ``-inf`` from zero on.
    """
    _check_scale(sigma)
    y, xi, sigma = _as_float_arrays(y, xi, sigma)
    positive, safe_sigma = _safe_scale(sigma)

    z = y / safe_sigma
    x = xi * z
    inside = positive & (y > 0) & (x > -1)
    z_in = jnp.where(inside, z, 0.0)
    x_in = jnp.where(inside, x, 0.0)
    log_survival = -z_in * log1p_ratio(x_in)

    below = jnp.where(positive, y <= 0, y < 0)
    return jnp.where(inside, log_survival, jnp.where(below, 0.0, -jnp.inf))


def gpd_cdf(y, *, xi, sigma):
    """Return ``P(Y <= y) = 1 - (1 + xi y / sigma)^(-1/xi)``.

    Computed as ``-expm1(log_survival)``, precise for small ``y``. Zero below
    zero and one from the upper endpoint on.
    """
    return -jnp.expm1(gpd_log_survival(y, xi=xi, sigma=sigma))


def _quantile_from_log_survival(minus_log_s, xi, sigma):
    """Return ``sigma expm1(xi L) / xi`` for ``L = -log(s) >= 0``, with ``L = inf`` allowed."""
    positive, _ = _safe_scale(sigma)
    finite = jnp.isfinite(minus_log_s)
    level = jnp.where(finite, minus_log_s, 0.0)
    value = sigma * level * expm1_ratio(xi * level)

    negative_xi = xi < 0
    endpoint = jnp.where(negative_xi, -sigma / jnp.where(negative_xi, xi, -1.0), jnp.inf)
    value = jnp.where(finite, value, endpoint)
    return jnp.where(positive, value, 0.0)


def gpd_quantile(p, *, xi, sigma):
    """Return the quantile ``Q(p) = sigma ((1 - p)^(-xi) - 1) / xi``.

    Computed as ``sigma L expm1(xi L) / (xi L)`` with ``L = -log1p(-p)``. Use
    :func:`gpd_quantile_from_survival` for levels whose complement ``1 - p`` is
    below the float resolution.

    Args:
      p: levels in ``[0, 1]``; broadcast with ``xi`` and ``sigma``. Concrete
        levels outside that range raise a ``ValueError``; traced ones give NaN.
      xi: shape parameter.
      sigma: scale, ``>= 0``.

    Returns:
      ``Q(p)``: zero at ``p = 0``; at ``p = 1`` the upper endpoint
      ``-sigma/xi`` for ``xi < 0`` and ``+inf`` otherwise.
    """
    _check_levels(p, "p")
    _check_scale(sigma)
    p, xi, sigma = _as_float_arrays(p, xi, sigma)
    valid = (p >= 0) & (p <= 1)
    below_one = valid & (p < 1)
    minus_log_s = jnp.where(below_one, -jnp.log1p(-jnp.where(below_one, p, 0.0)), jnp.inf)
    return jnp.where(valid, _quantile_from_log_survival(minus_log_s, xi, sigma), jnp.nan)


def gpd_quantile_from_survival(s, *, xi, sigma):
    """Return the exceedance ``y`` with ``P(Y > y) = s``, precise for tiny ``s``.

    ``y = sigma (s^(-xi) - 1) / xi``, computed from ``L = -log(s)``.

    Args:
      s: survival levels in ``[0, 1]``; broadcast with ``xi`` and ``sigma``.
        Concrete levels outside that range raise a ``ValueError``; traced ones
        give NaN.
      xi: shape parameter.
      sigma: scale, ``>= 0``.

    Returns:
      The exceedance: zero at ``s = 1``; at ``s = 0`` the upper endpoint
      ``-sigma/xi`` for ``xi < 0`` and ``+inf`` otherwise.
    """
    _check_levels(s, "s")
    _check_scale(sigma)
    s, xi, sigma = _as_float_arrays(s, xi, sigma)
    valid = (s >= 0) & (s <= 1)
    positive_s = valid & (s > 0)
    minus_log_s = jnp.where(positive_s, -jnp.log(jnp.where(positive_s, s, 1.0)), jnp.inf)
    return jnp.where(valid, _quantile_from_log_survival(minus_log_s, xi, sigma), jnp.nan)


def gpd_sample(key, *, xi, sigma, shape=()):
    """Draw GPD exceedances by inversion of an exponential draw.

    With ``L ~ Exponential(1)``, ``sigma expm1(xi L) / xi`` follows
    ``GPD(xi, sigma)``.

    Args:
      key: a JAX random key.
      xi: shape parameter, any shape.
      sigma: scale, ``>= 0``; broadcast with ``xi``.
      shape: leading sample shape.

    Returns:
      Samples of shape ``shape + broadcast(xi, sigma).shape``.
    """
    _check_scale(sigma)
    xi, sigma = _as_float_arrays(xi, sigma)
    batch = jnp.broadcast_shapes(xi.shape, sigma.shape)
    minus_log_s = jax.random.exponential(key, tuple(shape) + batch, xi.dtype)
    return _quantile_from_log_survival(minus_log_s, xi, sigma)
