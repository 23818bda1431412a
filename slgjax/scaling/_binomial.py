"""Log ratios of binomial coefficients that stay accurate in float32 for n up to 10^6.

Both the unbiased best-of-N estimator and the unbiased pass@k estimator need

.. math::

    \\log \\frac{\\binom{M - \\delta}{k}}{\\binom{M}{k}}
      = -\\Delta^2(A), \\qquad
    \\Delta^2(A) = \\ln\\Gamma(A) - \\ln\\Gamma(A - k) - \\ln\\Gamma(A - \\delta)
                   + \\ln\\Gamma(A - k - \\delta),

with ``A = M + 1``. Written as four ``gammaln`` calls, each term is about
``M ln M`` (1.4e7 for ``M = 10^6``), so float32 rounding alone shifts the result
by about one unit. Here the second difference is formed analytically instead:
with Stirling's form ``ln Gamma(x) = (x - 1/2) ln x - x + ln(2 pi)/2 + r(x)``, the
linear terms cancel exactly and the ``x ln x`` and ``ln x`` parts are rewritten
with ``log1p`` so that no two large numbers are subtracted. The result has an
absolute error of a few float32 ulps of ``k delta / M`` where that quantity is
below a few hundred, which is where the ratio is not negligible.
"""

import math

import jax.numpy as jnp
from jax.scipy.special import gammaln

__all__ = ["log_binomial_ratio"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)

# Below this argument the Stirling remainder r(x) comes from gammaln directly,
# where all terms are small; above it from the asymptotic series.
_STIRLING_CUTOFF = 10.0

# Below this ratio g(t) comes from its power series, above it from log1p.
_SERIES_CUTOFF = 0.125
_SERIES_TERMS = 16


def _stirling_remainder(x):
    """Return ``r(x) = ln Gamma(x) - (x - 1/2) ln x + x - ln(2 pi)/2`` for ``x >= 1``."""
    large = x >= _STIRLING_CUTOFF
    safe_large = jnp.where(large, x, _STIRLING_CUTOFF)
    inv2 = 1.0 / safe_large**2
    series = (
        1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0))
    ) / safe_large

    safe_small = jnp.where(large, 1.0, x)
    direct = gammaln(safe_small) - (safe_small - 0.5) * jnp.log(safe_small) + safe_small
    direct = direct - _HALF_LOG_TWO_PI
    return jnp.where(large, series, direct)


def _log1p_ratio_correction(t):
    """Return ``g(t) = log1p(t)/t - 1 + t/2`` (about ``t^2/3``) for ``t >= 0``."""
    small = t < _SERIES_CUTOFF
    ts = jnp.where(small, t, 0.0)
    # Horner form of sum_{j>=0} (-t)^j / (j + 3).
    acc = jnp.zeros_like(ts)
    for j in reversed(range(_SERIES_TERMS)):
        acc = 1.0 / (j + 3) - ts * acc
    series = ts * ts * acc

    tl = jnp.where(small, 1.0, t)
    direct = jnp.log1p(tl) / tl - 1.0 + 0.5 * tl
    return jnp.where(small, series, direct)


def _log_quotient(x, y):
    """Return ``ln(x / y)`` for ``x >= y > 0``, using ``log1p`` when ``x`` and ``y`` are close."""
    gap = (x - y) / x
    close = gap < 0.5
    return jnp.where(close, -jnp.log1p(-jnp.where(close, gap, 0.0)), jnp.log(x) - jnp.log(y))


def _second_difference_lgamma(a, d, delta):
    """Return ``ln G(a) - ln G(a-d) - ln G(a-delta) + ln G(a-d-delta)`` for ``a-d-delta >= 1``."""
    # The second difference is symmetric in (d, delta); the rewritten x ln x
    # part below is most accurate when d is the smaller one.
    d, delta = jnp.minimum(d, delta), jnp.maximum(d, delta)
    b = a - d
    c = a - delta
    e = a - d - delta

    # x ln x part: B log1p(d/B) - E log1p(d/E) + d ln(A/C), with
    # x log1p(d/x) = d (1 - t/2 + g(t)) and t = d/x.
    t_b = d / b
    t_e = d / e
    x_log_x = d * (0.5 * d * delta / (b * e) + _log1p_ratio_correction(t_b))
    x_log_x = x_log_x - d * _log1p_ratio_correction(t_e) + d * _log_quotient(a, c)

    # -1/2 ln x part: -1/2 ln(A E / (B C)), where A E - B C = -d delta.
    cross = d * delta / (b * c)
    near_one = cross < 0.5
    log_ratio = jnp.where(
        near_one,
        jnp.log1p(-jnp.where(near_one, cross, 0.0)),
        jnp.log(a) + jnp.log(e) - jnp.log(b) - jnp.log(c),
    )

    remainder = (
        _stirling_remainder(a)
        - _stirling_remainder(b)
        - _stirling_remainder(c)
        + _stirling_remainder(e)
    )
    return x_log_x - 0.5 * log_ratio + remainder


def log_binomial_ratio(total, k, delta):
    """Return ``log(C(total - delta, k) / C(total, k))``, elementwise.

    Args:
      total: the population size ``M >= 0``; float or int array.
      k: the subset size ``0 <= k <= M``.
      delta: the number of excluded items ``0 <= delta <= M``.

    Returns:
      A float array with the broadcast shape of the arguments, in the
      floating dtype of ``total`` (JAX's default float for integer inputs).
      The value is ``-inf`` where ``k + delta > M`` (no such subset exists)
      and ``0`` where ``k = 0`` or ``delta = 0``.
    """
    total = jnp.asarray(total)
    dtype = total.dtype if jnp.issubdtype(total.dtype, jnp.floating) else jnp.result_type(float)
    total, k, delta = (jnp.asarray(v, dtype) for v in (total, k, delta))

    feasible = k + delta <= total
    a = jnp.where(feasible, total + 1.0, 2.0)
    safe_k = jnp.where(feasible, k, 0.0)
    safe_delta = jnp.where(feasible, delta, 0.0)
    value = -_second_difference_lgamma(a, safe_k, safe_delta)
    return jnp.where(feasible, value, -jnp.inf)
