"""Profile likelihood of the GPD in one parameter, shared by two fitters.

The fitters of :mod:`slgjax.tail.gpd_fit` work on ``z = y / max(y)``; the GPD
family is closed under scaling, so the fitted scale is multiplied back by
``max(y)`` at the end. The profile
likelihood and the Zhang-Stephens posterior share the parameter
``theta = -xi / sigma`` of Zhang and Stephens (2009), written here as
``e = -theta max(y)``: for a given ``e > -1`` the likelihood is maximized by

.. math::

    \\xi(e) = \\operatorname{mean}_i \\log(1 + e z_i), \\qquad
    \\sigma(e) = \\xi(e) / e,

and the profile log-likelihood per exceedance, in units of ``max(y)``, is
``f(e) = -log sigma(e) - xi(e) - 1``. Near ``e = 0`` both are evaluated from a
power series in ``e`` whose coefficients are the moments of ``z``, so they stay
accurate (with their derivatives) through ``xi = 0``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Sample", "summarize", "profile"]

# Terms of the power series of sigma(e) around e = 0, and where it replaces
# the closed form; the first omitted term is below 1e-18 at |e| = 0.1. A
# cutoff this wide keeps the float32 derivatives of the closed form, which
# cancel like 1/e, precise enough for Newton steps of 1e-4 in t.
_SERIES_TERMS = 17
_SERIES_CUTOFF = 0.1


class Sample(NamedTuple):
    """Normalized exceedances and the summaries that the profile reuses."""

    z: jax.Array  # float[S + (W,)], max 1, zero where masked
    n: jax.Array  # float[S], number of valid exceedances
    moments: jax.Array  # float[S + (_SERIES_TERMS,)], mean(z^k) for k = 1, 2, ...
    num_at_max: jax.Array  # float[S], number of entries with z == 1


def summarize(z, n):
    """Return the :class:`Sample` of normalized exceedances ``z`` with ``n`` valid entries."""
    powers = [z]
    for _ in range(_SERIES_TERMS - 1):
        powers.append(powers[-1] * z)
    moments = jnp.stack([jnp.sum(p, axis=-1) for p in powers], axis=-1) / n[..., None]
    num_at_max = jnp.sum(z == 1, axis=-1).astype(z.dtype)
    return Sample(z, n, moments, num_at_max)


def _series(moments, e):
    """Return ``sigma(e)`` of the power series and its first two derivatives in ``e``.

    ``sigma(e) = sum_k c_k e^(k-1)`` with ``c_k = (-1)^(k+1) mean(z^k) / k``,
    for ``moments[..., k-1] = mean(z^k)`` and ``e`` of shape ``S + (G,)``.
    """
    value = jnp.zeros_like(e)
    first = jnp.zeros_like(e)
    second = jnp.zeros_like(e)
    for k in range(_SERIES_TERMS, 0, -1):
        coefficient = (1.0 if k % 2 == 1 else -1.0) / k * moments[..., None, k - 1]
        second = second * e + 2.0 * first
        first = first * e + value
        value = value * e + coefficient
    return value, first, second


def profile(sample, e, log1p_e, derivatives=False):
    """Evaluate ``xi(e)``, ``sigma(e)`` and the profile ``f(e)`` per exceedance.

    Args:
      sample: a :class:`Sample` with batch shape ``S``.
      e: float[S + (G,)] evaluation points, ``e > -1``.
      log1p_e: ``log(1 + e)``, exact even where ``e`` rounds to -1.
      derivatives: also return ``df/de`` and ``d2f/de2``.
    """
    dtype = e.dtype
    n = sample.n[..., None]
    at_max = sample.num_at_max[..., None]
    small = jnp.abs(e) < _SERIES_CUTOFF

    # Closed form: xi = mean log1p(e z), sigma = xi / e. The entries with
    # z = 1 contribute log1p_e; the per-entry loop uses log1p(e) for them and
    # the sum is corrected afterwards, which keeps the loop free of selects.
    e_large = jnp.maximum(jnp.where(small, 1.0, e), -1.0 + np.finfo(dtype).eps)
    log1p_large = jnp.where(small, np.log(2.0), log1p_e)
    x = sample.z[..., None, :] * e_large[..., :, None]
    log_sum = jnp.sum(jnp.log1p(x), axis=-1) + at_max * (log1p_large - jnp.log1p(e_large))
    xi_large = log_sum / n
    sigma_large = xi_large / e_large

    # Series: sigma(e) = sum_k (-1)^(k+1) mean(z^k) e^(k-1) / k, xi = e sigma,
    # with its first two derivatives, by Horner's rule.
    e_small = jnp.where(small, e, 0.0)
    sigma_small, dsigma, d2sigma = _series(sample.moments, e_small)
    xi_small = e_small * sigma_small

    xi = jnp.where(small, xi_small, xi_large)
    sigma = jnp.where(small, sigma_small, sigma_large)
    f = -jnp.log(sigma) - xi - 1.0
    if not derivatives:
        return xi, sigma, f

    # d/de of xi and log(sigma) in each form; f = -log(sigma) - xi - 1.
    ratio = sample.z[..., None, :] / (1.0 + x)
    exact_at_max = jnp.exp(-log1p_large) - 1.0 / (1.0 + e_large)
    s1 = (jnp.sum(ratio, axis=-1) + at_max * exact_at_max) / n
    s2 = (
        jnp.sum(ratio * ratio, axis=-1)
        + at_max * (jnp.exp(-2.0 * log1p_large) - 1.0 / (1.0 + e_large) ** 2)
    ) / n
    dxi_large = s1
    d2xi_large = -s2
    dlog_sigma_large = dxi_large / xi_large - 1.0 / e_large
    d2log_sigma_large = d2xi_large / xi_large - (dxi_large / xi_large) ** 2 + 1.0 / e_large**2

    dxi_small = sigma_small + e_small * dsigma
    d2xi_small = 2.0 * dsigma + e_small * d2sigma
    dlog_sigma_small = dsigma / sigma_small
    d2log_sigma_small = d2sigma / sigma_small - dlog_sigma_small**2

    df = -jnp.where(small, dlog_sigma_small + dxi_small, dlog_sigma_large + dxi_large)
    d2f = -jnp.where(small, d2log_sigma_small + d2xi_small, d2log_sigma_large + d2xi_large)
    return xi, sigma, f, df, d2f
