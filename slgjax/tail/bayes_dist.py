"""Generalized Pareto distribution for NumPyro, with a support that follows ``xi``.

NumPyro 0.22 has no generalized Pareto distribution, and the TensorFlow
Probability wrapper assumes ``xi > 0`` once ``xi`` is traced. This module adds a
:class:`GeneralizedPareto` over exceedances ``y >= 0`` (location zero) whose
support is a dependent constraint: ``[0, inf)`` for ``xi >= 0`` and
``[0, -sigma/xi]`` for ``xi < 0``. The density is

.. math::

    f(y) = \\frac{1}{\\sigma} \\Big(1 + \\xi \\frac{y}{\\sigma}\\Big)^{-1/\\xi - 1},
    \\qquad \\lim_{\\xi \\to 0} f(y) = \\frac{1}{\\sigma} e^{-y/\\sigma}.
"""

import jax.numpy as jnp
from jax import lax
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes

from slgjax.tail.gpd import gpd_cdf, gpd_quantile, gpd_sample

__all__ = [
    "GeneralizedPareto",
    "GPDExceedances",
    "gpd_exceedance_log_likelihood",
    "gpd_upper_endpoint",
]


def gpd_upper_endpoint(xi, sigma):
    """Return the upper end ``-sigma/xi`` of the support for ``xi < 0``, else ``inf``."""
    xi, sigma = jnp.asarray(xi), jnp.asarray(sigma)
    negative = xi < 0
    safe_xi = jnp.where(negative, xi, -1.0)
    return jnp.where(negative, sigma / -safe_xi, jnp.inf)


# Below this |x| the ratio log1p(x)/x uses its series; the first omitted term,
# x^4/5, is below 2e-13 there.
_SERIES_CUTOFF = 1e-3


def _log_prob(y, xi, sigma):
    """GPD log-density with one ``log1p`` per element; ``-inf`` off the open support.

    ``log f = -log(sigma) - log1p(x) - z log1p(x)/x`` with ``z = y/sigma`` and
    ``x = xi z``. The likelihood of a model evaluates this on every exceedance
    at every leapfrog step, so it avoids a second ``log1p`` and a long series.
    """
    z = y / sigma
    x = xi * z
    inside = (y >= 0) & (x > -1)
    x_in = jnp.where(inside, x, 0.0)
    z_in = jnp.where(inside, z, 0.0)

    log1p_x = jnp.log1p(x_in)
    small = jnp.abs(x_in) < _SERIES_CUTOFF
    x_large = jnp.where(small, 1.0, x_in)
    series = 1.0 - x_in * (0.5 - x_in * (1.0 / 3.0 - 0.25 * x_in))
    ratio = jnp.where(small, series, log1p_x / x_large)

    log_density = -jnp.log(sigma) - log1p_x - z_in * ratio
    return jnp.where(inside, log_density, -jnp.inf)


class _GPDSupport(constraints.Constraint):
    """The interval ``[0, upper_bound]``; ``upper_bound`` may be ``inf``.

    NumPyro's ``interval`` would offer the midpoint as a feasible value, which is
    ``inf`` for an unbounded support and breaks masked observations. Zero is
    inside every GPD support, so it is the feasible value here.
    """

    event_dim = 0

    def __init__(self, upper_bound):
        self.lower_bound = 0.0
        self.upper_bound = upper_bound

    def __call__(self, x):
        return (x >= 0) & (x <= self.upper_bound)

    def feasible_like(self, prototype):
        return jnp.zeros(jnp.shape(prototype), jnp.result_type(prototype, float))

    def tree_flatten(self):
        return (self.upper_bound,), (("upper_bound",), {"lower_bound": 0.0})

    def __repr__(self):
        return f"GPDSupport(lower_bound=0.0, upper_bound={self.upper_bound})"


class GeneralizedPareto(Distribution):
    """Generalized Pareto distribution of exceedances, ``GPD(xi, sigma)``.

    The shape ``xi`` may take any real value and may be a traced sample: the
    support is ``[0, -sigma/xi]`` for ``xi < 0`` and ``[0, inf)`` otherwise, so a
    model can put a prior on ``xi`` that spans both signs. ``log_prob`` is
    ``-inf`` outside the support and also at the upper endpoint itself. That
    point has measure zero, but for ``xi < -1`` the density there is infinite,
    and a sampler that rounds onto it must be repelled rather than trapped at
    ``+inf``. (``scipy.stats.genpareto`` returns ``+inf`` at the endpoint for
    ``xi < -1`` and ``-log(sigma)`` for ``xi = -1``.) Values and gradients stay
    finite through ``xi = 0``, where the exponential limit applies, and
    gradients are never NaN.

    Args:
      xi: shape parameter, any real.
      sigma: scale parameter, positive.
      validate_args: NumPyro's argument and sample validation flag.

    Reference: J. Pickands, "Statistical inference using extreme order
    statistics", Annals of Statistics 3(1), 1975.
    """

    arg_constraints = {"xi": constraints.real, "sigma": constraints.positive}
    reparametrized_params = ["xi", "sigma"]
    pytree_data_fields = ("xi", "sigma")

    def __init__(self, xi, sigma, *, validate_args=None):
        self.xi, self.sigma = promote_shapes(xi, sigma)
        batch_shape = lax.broadcast_shapes(jnp.shape(xi), jnp.shape(sigma))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return _GPDSupport(gpd_upper_endpoint(self.xi, self.sigma))

    def sample(self, key, sample_shape=()):
        """Draw by the quantile of an exponential draw's survival level."""
        return gpd_sample(key, xi=self.xi, sigma=self.sigma, shape=sample_shape)

    def log_prob(self, value):
        return _log_prob(value, self.xi, self.sigma)

    def cdf(self, value):
        return gpd_cdf(value, xi=self.xi, sigma=self.sigma)

    def icdf(self, q):
        return gpd_quantile(q, xi=self.xi, sigma=self.sigma)

    @property
    def mean(self):
        """``sigma / (1 - xi)`` for ``xi < 1``, ``inf`` otherwise."""
        finite = self.xi < 1
        value = self.sigma / jnp.where(finite, 1.0 - self.xi, 1.0)
        return jnp.broadcast_to(jnp.where(finite, value, jnp.inf), self.batch_shape)

    @property
    def variance(self):
        """``sigma^2 / ((1 - xi)^2 (1 - 2 xi))`` for ``xi < 1/2``, ``inf`` otherwise."""
        finite = self.xi < 0.5
        one_minus = jnp.where(finite, 1.0 - self.xi, 1.0)
        value = self.sigma**2 / (one_minus**2 * jnp.where(finite, 1.0 - 2.0 * self.xi, 1.0))
        return jnp.broadcast_to(jnp.where(finite, value, jnp.inf), self.batch_shape)


# The joint log-likelihood switches to a series in xi where |xi max(y) / sigma|
# is below this; the first omitted term is below 2e-13 of the leading one.
_JOINT_SERIES_CUTOFF = 1e-2
_JOINT_SERIES_ORDER = 6


def gpd_exceedance_log_likelihood(y, mask, *, xi, sigma):
    """Return the GPD log-likelihood of each state's valid exceedances.

    With ``n`` valid exceedances, ``t = xi / sigma`` and ``S = sum_j log1p(t y_j)``,

    .. math::

        \\ell = -n \\log\\sigma - S - S / \\xi,

    the sum of :meth:`GeneralizedPareto.log_prob` over the valid entries. The
    shared ``1/xi`` is applied once per state, so each exceedance costs one
    multiply and one ``log1p`` (and their derivatives), several times fewer
    operations than summing per-element log densities; NUTS evaluates this at
    every leapfrog step. Where ``|xi max(y) / sigma| < 0.01`` the ratio
    ``S / xi`` is replaced by its series
    ``(1/sigma) sum_k (-t)^(k-1) M_k / k`` in the moments ``M_k = sum_j y_j^k``
    (k <= 6), which is exact to float precision, continuous through ``xi = 0``
    and has exact gradients there.

    Args:
      y: float[..., W] exceedances; entries where ``mask`` is False are ignored.
      mask: bool[..., W].
      xi: shape per state, broadcastable to ``y.shape[:-1]``.
      sigma: positive scale per state, broadcastable to ``y.shape[:-1]``.

    Returns:
      float[...]; ``-inf`` for a state with a valid exceedance outside the
      support (negative, or at or beyond the upper endpoint ``-sigma/xi``).
    """
    valid_y = jnp.where(mask, y, 0.0)
    count = jnp.sum(mask, axis=-1)
    largest = jnp.max(valid_y, axis=-1)
    powers = [valid_y]
    for _ in range(_JOINT_SERIES_ORDER - 1):
        powers.append(powers[-1] * valid_y)
    moments = [jnp.sum(power, axis=-1) for power in powers]

    rate = xi / sigma
    x = rate[..., None] * valid_y
    inside = jnp.all((x > -1) & (valid_y >= 0), axis=-1)
    x_in = jnp.where(inside[..., None], x, 0.0)
    log_sum = jnp.sum(jnp.log1p(x_in), axis=-1)

    near = jnp.abs(rate * largest) < _JOINT_SERIES_CUTOFF
    rate_near = jnp.where(near, rate, 0.0)
    series = moments[-1] / _JOINT_SERIES_ORDER
    for k in range(_JOINT_SERIES_ORDER - 1, 0, -1):
        series = moments[k - 1] / k - rate_near * series
    xi_far = jnp.where(near, 1.0, xi)
    ratio = jnp.where(near, series / sigma, log_sum / xi_far)

    log_likelihood = -count * jnp.log(sigma) - log_sum - ratio
    return jnp.where(inside, log_likelihood, -jnp.inf)


class _MaskedGPDSupport(constraints.Constraint):
    """Vectors whose valid entries lie in ``[0, upper_bound]``; padding is free."""

    event_dim = 1

    def __init__(self, upper_bound, mask):
        self.upper_bound = upper_bound
        self.mask = mask

    def __call__(self, x):
        inside = (x >= 0) & (x <= self.upper_bound[..., None])
        return jnp.all(inside | ~self.mask, axis=-1)

    def feasible_like(self, prototype):
        return jnp.zeros(jnp.shape(prototype), jnp.result_type(prototype, float))

    def tree_flatten(self):
        return (self.upper_bound, self.mask), (("upper_bound", "mask"), {})


class GPDExceedances(Distribution):
    """The exceedances of K states as masked vectors: batch ``[K]``, event ``[W]``.

    Entry ``j`` of state ``k`` is ``GPD(xi_k, sigma_k)`` where ``mask[k, j]``
    is True and is ignored otherwise, which lets states with different numbers
    of exceedances share one padded array. ``log_prob`` is
    :func:`gpd_exceedance_log_likelihood`, equal to the masked sum of
    :meth:`GeneralizedPareto.log_prob` but cheaper to differentiate.

    Args:
      xi: float[K] shapes.
      sigma: float[K] positive scales.
      mask: bool[K, W]; True marks a valid exceedance.
    """

    arg_constraints = {
        "xi": constraints.real,
        "sigma": constraints.positive,
        "mask": constraints.boolean,
    }
    pytree_data_fields = ("xi", "sigma", "mask")

    def __init__(self, xi, sigma, mask, *, validate_args=None):
        mask = jnp.asarray(mask, bool)
        batch_shape = lax.broadcast_shapes(jnp.shape(xi), jnp.shape(sigma), mask.shape[:-1])
        self.xi = jnp.broadcast_to(xi, batch_shape)
        self.sigma = jnp.broadcast_to(sigma, batch_shape)
        self.mask = jnp.broadcast_to(mask, batch_shape + mask.shape[-1:])
        super().__init__(
            batch_shape=batch_shape, event_shape=mask.shape[-1:], validate_args=validate_args
        )

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return _MaskedGPDSupport(gpd_upper_endpoint(self.xi, self.sigma), self.mask)

    def sample(self, key, sample_shape=()):
        """Draw every entry from its state's GPD and set padding to zero."""
        shape = self.batch_shape + self.event_shape
        xi = jnp.broadcast_to(self.xi[..., None], shape)
        sigma = jnp.broadcast_to(self.sigma[..., None], shape)
        draws = gpd_sample(key, xi=xi, sigma=sigma, shape=sample_shape)
        return jnp.where(self.mask, draws, 0.0)

    def log_prob(self, value):
        return gpd_exceedance_log_likelihood(value, self.mask, xi=self.xi, sigma=self.sigma)
