"""Reward families with known ground truth for simulated search.

Every family is a two-level model. A state ``s`` reached from the prompt has a
parameter ``theta(s) = g(z)`` with ``z ~ N(0, 1)``, and the reward of a full
response continued from ``s`` is drawn from ``F_theta``. A rollout from the
prompt first draws a fresh state, then a reward, so the prompt's reward law is
the mixture ``F_root = E_z[F_g(z)]``.

Each family gives the quantile function of ``F_theta`` in terms of both the
level ``p`` and its complement ``s = 1 - p``, so upper tails keep their
precision. It also gives the true best-of-N value ``V_N(s) = E[max of N draws]``,
in closed form where one exists and by tanh-sinh quadrature otherwise.

Families:

- :class:`GaussianFamily`: ``theta ~ N(mu0, sigma0^2)``, rewards ``N(theta, sigma1^2)``,
  ``t = sigma1 / sigma0``; the model of the theory for scaling-law guided search
  (Li, Qian and Mou, 2026, arXiv:2602.01485).
- :class:`BoundedFamily`: Kumaraswamy rewards on ``[low, high]`` with GPD shape
  ``xi = -1 / b < 0`` at the upper endpoint.
- :class:`HeavyTailFamily`: Gaussian state means plus centred GPD noise, ``0 < xi < 1``.
- :class:`BernoulliFamily`: 0/1 rewards with a logit-normal success probability.
- :class:`EqualMeanTailFamily`: every state has the same mean but its own GPD
  shape, so ranking by mean and ranking by best-of-N value disagree.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from slgjax.envs.simulated.base import (
    RewardFamily,
    gpd_log_survival,
    gpd_quantile,
    latent_nodes,
    log_one_minus_exp,
    register_family,
    std_normal_quantile,
)
from slgjax.tail.expected_max import expected_max_std_normal

__all__ = [
    "RewardFamily",
    "GaussianFamily",
    "BoundedFamily",
    "HeavyTailFamily",
    "BernoulliFamily",
    "EqualMeanTailFamily",
    "std_normal_quantile",
]


def _check_positive(name, value, *, allow_zero=False):
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value} is invalid; it must be finite and {bound}.")


@register_family
@dataclasses.dataclass(frozen=True)
class GaussianFamily(RewardFamily):
    """Two-level Gaussian model: ``theta ~ N(mu0, sigma0^2)``, rewards ``N(theta, sigma1^2)``.

    Plain best-of-N from the prompt has ``V_N = mu0 + sqrt(sigma0^2 + sigma1^2) E_N``
    and a state has ``V_N(s) = theta + sigma1 E_N``, with ``E_N`` the expected
    maximum of N standard normals.

    Attributes:
      mu0: mean of the state means.
      sigma0: spread of the state means across states.
      sigma1: spread of the rewards within a state.
    """

    mu0: float = 0.0
    sigma0: float = 1.0
    sigma1: float = 1.0

    def __post_init__(self):
        _check_positive("sigma0", self.sigma0, allow_zero=True)
        _check_positive("sigma1", self.sigma1)

    @property
    def t(self) -> float:
        """Ratio ``t = sigma1 / sigma0`` of within-state to between-state spread."""
        return self.sigma1 / self.sigma0 if self.sigma0 > 0 else math.inf

    @property
    def root_sigma(self):
        """Standard deviation ``sqrt(sigma0^2 + sigma1^2)`` of a rollout from the prompt."""
        return jnp.hypot(self.sigma0, self.sigma1)

    def state_parameter(self, z):
        return self.mu0 + self.sigma0 * z

    def quantile(self, theta, p, s):
        return theta + self.sigma1 * std_normal_quantile(p, s)

    def log_survival(self, theta, x):
        return log_ndtr((theta - x) / self.sigma1)

    def log_cdf(self, theta, x):
        return log_ndtr((x - theta) / self.sigma1)

    def state_value(self, theta, budget):
        theta = jnp.asarray(theta)
        return theta + self.sigma1 * expected_max_std_normal(budget, dtype=theta.dtype)

    def root_quantile(self, p, s):
        return self.mu0 + self.root_sigma * std_normal_quantile(p, s)

    def root_quantile_interpolant(self, dtype=None):
        return self.root_quantile

    def root_value(self, budget, dtype=None):
        return self.mu0 + self.root_sigma * expected_max_std_normal(budget, dtype=dtype)


@register_family
@dataclasses.dataclass(frozen=True)
class BoundedFamily(RewardFamily):
    """Kumaraswamy rewards on ``[low, high]``, whose upper tail has ``xi = -1 / b``.

    A state has ``a(s) = a0 exp(sigma0 z)`` and the reward
    ``low + (high - low) X`` with ``X ~ Kumaraswamy(a(s), b)``, that is
    ``P(X > x) = (1 - x^a)^b`` on ``[0, 1]``. Near the endpoint
    ``P(X > 1 - e) ~ (a e)^b``, so the GPD shape of every state is ``-1 / b``;
    a larger ``a`` moves mass towards ``high``. ``theta`` is ``log a``.

    Attributes:
      a0: median of ``a`` across states.
      b: tail exponent at the upper endpoint (``xi = -1 / b``).
      sigma0: spread of ``log a`` across states.
      low, high: reward range.
    """

    a0: float = 1.0
    b: float = 3.0
    sigma0: float = 0.5
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        _check_positive("a0", self.a0)
        _check_positive("b", self.b)
        _check_positive("sigma0", self.sigma0, allow_zero=True)
        if not self.high > self.low:
            raise ValueError(
                f"high={self.high} must exceed low={self.low}; they bound the rewards."
            )

    @property
    def xi(self) -> float:
        """GPD shape of the upper tail of every state, ``-1 / b``."""
        return -1.0 / self.b

    def state_parameter(self, z):
        return jnp.log(self.a0) + self.sigma0 * z

    def quantile(self, theta, p, s):
        # (1 - s^(1/b))^(1/a) with 1 - s^(1/b) from expm1, exact for s near 1.
        log_x = jnp.log(-jnp.expm1(jnp.log(s) / self.b)) * jnp.exp(-theta)
        return self.low + (self.high - self.low) * jnp.exp(log_x)

    def _unit(self, x):
        return (x - self.low) / (self.high - self.low)

    def log_survival(self, theta, x):
        u = self._unit(x)
        inside = (u > 0.0) & (u < 1.0)
        log_u = jnp.log(jnp.where(inside, u, 0.5))
        value = self.b * log_one_minus_exp(jnp.exp(theta) * log_u)
        return jnp.where(u <= 0.0, 0.0, jnp.where(inside, value, -jnp.inf))

    def log_cdf(self, theta, x):
        return log_one_minus_exp(self.log_survival(theta, x))


@register_family
@dataclasses.dataclass(frozen=True)
class HeavyTailFamily(RewardFamily):
    """Gaussian state means plus centred GPD noise with ``0 < xi < 1``.

    ``theta ~ N(mu0, sigma0^2)`` and the reward is
    ``theta + sigma1 (G - 1 / (1 - xi))`` with ``G ~ GPD(xi, 1)``, so each state's
    mean is ``theta``. The noise variance is finite only for ``xi < 1/2``; the
    expected maximum is finite for every ``xi < 1``.

    Attributes:
      mu0: mean of the state means.
      sigma0: spread of the state means.
      sigma1: GPD scale of the noise.
      xi: GPD shape of the noise, in ``(0, 1)``.
    """

    mu0: float = 0.0
    sigma0: float = 1.0
    sigma1: float = 1.0
    xi: float = 0.25

    def __post_init__(self):
        _check_positive("sigma0", self.sigma0, allow_zero=True)
        _check_positive("sigma1", self.sigma1)
        if not 0.0 < self.xi < 1.0:
            raise ValueError(
                f"xi={self.xi} is outside (0, 1): a heavy tail needs xi > 0 and a finite "
                "expected maximum needs xi < 1. Use BoundedFamily for xi < 0."
            )

    @property
    def _noise_mean(self) -> float:
        return 1.0 / (1.0 - self.xi)

    def state_parameter(self, z):
        return self.mu0 + self.sigma0 * z

    def quantile(self, theta, p, s):
        return theta + self.sigma1 * (gpd_quantile(self.xi, s) - self._noise_mean)

    def log_survival(self, theta, x):
        return gpd_log_survival(self.xi, (x - theta) / self.sigma1 + self._noise_mean)

    def log_cdf(self, theta, x):
        return log_one_minus_exp(self.log_survival(theta, x))


@register_family
@dataclasses.dataclass(frozen=True)
class BernoulliFamily(RewardFamily):
    """0/1 rewards with success probability ``sigmoid(logit(p0) + sigma0 z)``.

    A state's value is ``V_N = 1 - (1 - p)^N`` (pass@N), and a rollout from the
    prompt succeeds with probability ``E_z[p]``. ``theta`` is the logit of ``p``.

    Attributes:
      p0: median success probability across states.
      sigma0: spread of the logits across states.
    """

    p0: float = 0.1
    sigma0: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.p0 < 1.0:
            raise ValueError(f"p0={self.p0} is outside (0, 1); it is a probability.")
        _check_positive("sigma0", self.sigma0, allow_zero=True)

    def state_parameter(self, z):
        return jnp.log(self.p0) - jnp.log1p(-self.p0) + self.sigma0 * z

    def quantile(self, theta, p, s):
        # log P(R = 1) = log_sigmoid(theta); the reward is 1 on the top levels.
        return (jnp.log(s) < jax.nn.log_sigmoid(theta)).astype(jnp.result_type(s))

    def log_survival(self, theta, x):
        log_success = jax.nn.log_sigmoid(theta)
        return jnp.where(x < 0.0, 0.0, jnp.where(x < 1.0, log_success, -jnp.inf))

    def log_cdf(self, theta, x):
        log_failure = jax.nn.log_sigmoid(-theta)
        return jnp.where(x < 0.0, -jnp.inf, jnp.where(x < 1.0, log_failure, 0.0))

    def success_probability(self, theta):
        """Success probability of the states ``theta``."""
        return jax.nn.sigmoid(theta)

    def root_success_probability(self, dtype=None):
        """Success probability of a rollout from the prompt, ``E_z[sigmoid(theta)]``."""
        dtype = dtype or jnp.result_type(float)
        z, weight = latent_nodes(dtype)
        return jnp.sum(weight * jax.nn.sigmoid(self.state_parameter(z)))

    def state_value(self, theta, budget):
        theta = jnp.asarray(theta)
        n = jnp.asarray(budget, theta.dtype)
        # 1 - (1 - p)^N with log(1 - p) = -softplus(theta).
        return -jnp.expm1(-n * jax.nn.softplus(theta))

    def root_quantile(self, p, s):
        s = jnp.asarray(s)
        return (s < self.root_success_probability(s.dtype)).astype(s.dtype)

    def root_quantile_interpolant(self, dtype=None):
        success = self.root_success_probability(dtype)
        return lambda p, s: (s < success).astype(success.dtype)

    def root_value(self, budget, dtype=None):
        dtype = dtype or jnp.result_type(float)
        success = self.root_success_probability(dtype)
        return -jnp.expm1(jnp.asarray(budget, dtype) * jnp.log1p(-success))


@register_family
@dataclasses.dataclass(frozen=True)
class EqualMeanTailFamily(RewardFamily):
    """States with one common mean and different tails.

    A state has the GPD shape ``xi(s) = xi_low + (xi_high - xi_low) Phi(z)``,
    uniform on ``[xi_low, xi_high]``, and the reward
    ``mean + scale ((1 - xi) G - 1)`` with ``G ~ GPD(xi, 1)``: the mean is
    ``mean`` for every state, while ``V_N`` grows with ``xi`` once N is large.
    The sample mean carries no information about ``V_N`` here, so a selection
    rule that ranks states by mean picks at random. ``theta`` is ``xi``.

    Attributes:
      mean: common mean of every state.
      scale: scale of the rewards.
      xi_low, xi_high: range of the GPD shapes, ``xi_low < xi_high < 1``.
    """

    mean: float = 0.0
    scale: float = 1.0
    xi_low: float = -0.4
    xi_high: float = 0.3

    def __post_init__(self):
        _check_positive("scale", self.scale)
        if not self.xi_low < self.xi_high < 1.0:
            raise ValueError(
                f"xi_low={self.xi_low}, xi_high={self.xi_high} are invalid; they need "
                "xi_low < xi_high < 1 so that every state's mean and maximum are finite."
            )

    def state_parameter(self, z):
        return self.xi_low + (self.xi_high - self.xi_low) * jax.scipy.stats.norm.cdf(z)

    def quantile(self, theta, p, s):
        return self.mean + self.scale * ((1.0 - theta) * gpd_quantile(theta, s) - 1.0)

    def log_survival(self, theta, x):
        y = ((x - self.mean) / self.scale + 1.0) / (1.0 - theta)
        return gpd_log_survival(theta, y)

    def log_cdf(self, theta, x):
        return log_one_minus_exp(self.log_survival(theta, x))
