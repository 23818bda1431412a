"""The reward-family base class: state prior, reward law and generic numerics.

A family maps a standard normal latent ``z`` to a state parameter
``theta = g(z)`` and gives the quantile, log survival and log CDF of the reward
law ``F_theta``. The base class builds on them: inverse-CDF sampling, the
maximum of ``n`` draws in one draw, ``V_N`` by tanh-sinh quadrature, and the
prompt's mixture law ``E_z[F_g(z)]`` by bisection. The concrete families live in
:mod:`slgjax.envs.simulated.families`.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from slgjax.envs.simulated._uniform import levels, max_levels, open_uniform
from slgjax.tail.expected_max import expected_max, tanh_sinh_nodes

__all__ = [
    "RewardFamily",
    "gpd_log_survival",
    "gpd_quantile",
    "latent_nodes",
    "log_one_minus_exp",
    "register_family",
    "std_normal_quantile",
]

_BISECTION_STEPS = 48
_TABLE_POINTS = 2048
_TABLE_MIN_LOG_LEVEL = -40.0
# Below this |xi| the GPD formulas switch to their exponential limit.
_XI_EPS = 1e-6


def std_normal_quantile(p, s):
    """Standard normal quantile at level ``p = 1 - s``, precise in both tails."""
    lower = p < 0.5
    magnitude = ndtri(jnp.where(lower, p, s))
    return jnp.where(lower, magnitude, -magnitude)


def gpd_quantile(xi, s):
    """GPD(xi, 1) quantile at survival level ``s``: ``((s^-xi) - 1) / xi``."""
    log_s = jnp.log(s)
    small = jnp.abs(xi) < _XI_EPS
    safe_xi = jnp.where(small, 1.0, xi)
    return jnp.where(small, -log_s, jnp.expm1(-safe_xi * log_s) / safe_xi)


def gpd_log_survival(xi, y):
    """GPD(xi, 1) log survival ``-log1p(xi y) / xi``; 0 below 0, -inf past the endpoint."""
    small = jnp.abs(xi) < _XI_EPS
    safe_xi = jnp.where(small, 1.0, xi)
    y_pos = jnp.maximum(y, 0.0)
    argument = 1.0 + safe_xi * y_pos
    inside = argument > 0.0
    regular = -jnp.log(jnp.where(inside, argument, 1.0)) / safe_xi
    value = jnp.where(small, -y_pos, jnp.where(inside, regular, -jnp.inf))
    return jnp.where(y <= 0.0, 0.0, value)


def log_one_minus_exp(log_x):
    """``log(1 - exp(log_x))`` for ``log_x <= 0``, precise on both sides of log 2."""
    log_x = jnp.minimum(log_x, 0.0)
    near_zero = log_x > -math.log(2.0)
    return jnp.where(
        near_zero,
        jnp.log(-jnp.expm1(log_x)),
        jnp.log1p(-jnp.exp(jnp.minimum(log_x, -math.log(2.0)))),
    )


def latent_nodes(dtype):
    """Return tanh-sinh nodes ``z`` and weights for ``E[f(z)]``, ``z ~ N(0, 1)``."""
    log_t, log_one_minus_t, weight = (jnp.asarray(a, dtype) for a in tanh_sinh_nodes())
    z = std_normal_quantile(jnp.exp(log_t), jnp.exp(log_one_minus_t))
    return z, weight


def register_family(cls):
    """Register a family dataclass as a pytree whose fields are its leaves.

    Unflattening skips ``__init__``, so the eager checks of ``__post_init__``
    run only when a user builds a family, never on tracers inside ``jit``.
    """
    names = tuple(field.name for field in dataclasses.fields(cls))

    def flatten(family):
        return tuple(getattr(family, name) for name in names), None

    def unflatten(_, leaves):
        family = object.__new__(cls)
        for name, leaf in zip(names, leaves, strict=True):
            object.__setattr__(family, name, leaf)
        return family

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


class RewardFamily:
    """Base class: a state prior ``theta = g(z)`` and a reward law ``F_theta``.

    Subclasses are frozen dataclasses registered as pytrees: their parameters
    are the leaves, so they can be passed to ``jax.jit`` as traced arguments
    and a sweep over parameters compiles once per family class. They implement
    :meth:`state_parameter`, :meth:`quantile`, :meth:`log_survival` and
    :meth:`log_cdf`; the rest has generic implementations that subclasses
    replace with closed forms where they exist.
    """

    # Generic methods

    def state_parameter(self, z):
        """Map standard normal latents ``z`` to state parameters ``theta``."""
        raise NotImplementedError

    def quantile(self, theta, p, s):
        """Reward quantile of the states ``theta`` at level ``p = 1 - s`` (broadcasts)."""
        raise NotImplementedError

    def log_survival(self, theta, x):
        """``log P(R > x)`` for a reward ``R`` from the states ``theta`` (broadcasts)."""
        raise NotImplementedError

    def log_cdf(self, theta, x):
        """``log P(R <= x)`` for a reward ``R`` from the states ``theta`` (broadcasts)."""
        raise NotImplementedError

    def states_from_uniform(self, u):
        """Map uniforms to the parameters of fresh states from the prompt."""
        return self.state_parameter(std_normal_quantile(*levels(u)))

    def rewards_from_uniform(self, theta, u):
        """Map uniforms to rewards from the states ``theta`` (broadcasts)."""
        return self.quantile(theta, *levels(u))

    def max_from_uniform(self, theta, u, num_draws):
        """Map uniforms to the maximum of ``num_draws`` rewards from the states ``theta``.

        Exact in law, at the cost of one uniform: ``Q_theta(u^(1/n))``.
        """
        return self.quantile(theta, *max_levels(u, num_draws))

    def sample_states(self, key, shape, dtype=None):
        """Draw the parameters of fresh states from the prompt, float[shape]."""
        return self.states_from_uniform(open_uniform(key, shape, dtype))

    def sample(self, key, theta, shape):
        """Draw rewards of shape ``shape`` from the states ``theta`` (broadcast to it)."""
        theta = jnp.asarray(theta)
        return self.rewards_from_uniform(theta, open_uniform(key, shape, theta.dtype))

    def max_of_draws(self, key, theta, num_draws):
        """Draw the maximum of ``num_draws`` rewards from each state in ``theta``."""
        theta = jnp.asarray(theta)
        shape = jnp.broadcast_shapes(theta.shape, jnp.shape(num_draws))
        return self.max_from_uniform(theta, open_uniform(key, shape, theta.dtype), num_draws)

    def state_value(self, theta, budget):
        """True best-of-N value ``V_N`` of the states ``theta``, by quadrature."""
        theta = jnp.asarray(theta)
        shape = jnp.broadcast_shapes(theta.shape, jnp.shape(budget))
        theta = jnp.broadcast_to(theta, shape)
        n = jnp.broadcast_to(jnp.asarray(budget), shape)
        return expected_max(
            lambda p, s: self.quantile(theta[..., None], p, s), n, dtype=theta.dtype
        )

    def _mixture_quantile(self, log_level, *, upper):
        """Solve ``log S_root(x) = log_level`` (``upper``) or ``log F_root(x) = log_level``.

        The mixture ``F_root(x) = E_z[F_g(z)(x)]`` is integrated over ``z`` with
        tanh-sinh nodes, and the root is found by bisection. The per-node
        quantiles at the same level bracket it: the mixture of laws whose
        quantiles all lie in ``[a, b]`` has its quantile there too.
        """
        level = jnp.exp(log_level)
        p, s = (1.0 - level, level) if upper else (level, 1.0 - level)
        z, weight = latent_nodes(log_level.dtype)
        theta = self.state_parameter(z)
        log_weight = jnp.log(weight)
        node_quantiles = self.quantile(theta, p[..., None], s[..., None])
        bracket = (jnp.min(node_quantiles, axis=-1), jnp.max(node_quantiles, axis=-1))
        log_tail = self.log_survival if upper else self.log_cdf
        sign = -1.0 if upper else 1.0

        def step(_, bracket):
            low, high = bracket
            middle = 0.5 * (low + high)
            log_mass = jax.nn.logsumexp(log_weight + log_tail(theta, middle[..., None]), axis=-1)
            below = sign * (log_mass - log_level) < 0.0
            return jnp.where(below, middle, low), jnp.where(below, high, middle)

        low, high = jax.lax.fori_loop(0, _BISECTION_STEPS, step, bracket)
        return 0.5 * (low + high)

    def root_quantile(self, p, s):
        """Quantile of the prompt's mixture law at level ``p = 1 - s``, by bisection."""
        p = jnp.asarray(p)
        s = jnp.asarray(s)
        upper = s < 0.5
        from_survival = self._mixture_quantile(jnp.log(jnp.minimum(s, 0.5)), upper=True)
        from_cdf = self._mixture_quantile(jnp.log(jnp.minimum(p, 0.5)), upper=False)
        return jnp.where(upper, from_survival, from_cdf)

    def root_quantile_interpolant(self, dtype=None):
        """Return a fast ``(p, s) -> x`` for the prompt's quantile, for many evaluations.

        The generic version tabulates :meth:`root_quantile` at ``2048`` points
        per tail, uniform in ``log s`` (upper half) and ``log p`` (lower half)
        down to ``e^-40``, and interpolates linearly. Levels further out are
        clamped to the last point; the maximum of up to about 10^9 draws with
        :func:`open_uniform` levels never reaches them. Families with a closed
        form return :meth:`root_quantile` itself.
        """
        dtype = dtype or jnp.result_type(float)
        grid = jnp.linspace(_TABLE_MIN_LOG_LEVEL, -math.log(2.0), _TABLE_POINTS, dtype=dtype)
        step = (grid[-1] - grid[0]) / (_TABLE_POINTS - 1)
        upper_values = self._mixture_quantile(grid, upper=True)
        lower_values = self._mixture_quantile(grid, upper=False)

        def interpolate(p, s):
            upper = s < 0.5
            log_level = jnp.log(jnp.where(upper, s, p))
            position = jnp.clip((log_level - grid[0]) / step, 0.0, _TABLE_POINTS - 1.0)
            index = jnp.minimum(jnp.floor(position).astype(jnp.int32), _TABLE_POINTS - 2)
            fraction = position - index
            values = jnp.where(upper, upper_values[index], lower_values[index])
            following = jnp.where(upper, upper_values[index + 1], lower_values[index + 1])
            return values + fraction * (following - values)

        return interpolate

    def root_max_from_uniform(self, u, num_draws):
        """Map uniforms to the maximum of ``num_draws`` rollouts from the prompt."""
        return self.root_quantile(*max_levels(u, num_draws))

    def root_sample(self, key, shape, dtype=None):
        """Draw rollouts from the prompt: ``(theta, rewards)``, each float[shape].

        ``theta`` is the parameter of the state each rollout passed through, its
        first-step prefix.
        """
        state_key, reward_key = jax.random.split(key)
        theta = self.sample_states(state_key, shape, dtype)
        return theta, self.sample(reward_key, theta, shape)

    def root_max_of_draws(self, key, num_draws, shape=(), dtype=None):
        """Draw the maximum of ``num_draws`` rollouts from the prompt, float[shape]."""
        shape = jnp.broadcast_shapes(tuple(shape), jnp.shape(num_draws))
        return self.root_max_from_uniform(open_uniform(key, shape, dtype), num_draws)

    def root_value(self, budget, dtype=None):
        """True best-of-N value ``V_N`` of the prompt (plain best-of-N)."""
        dtype = dtype or jnp.result_type(float)
        return expected_max(self.root_quantile, jnp.asarray(budget), dtype=dtype)
