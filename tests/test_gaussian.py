"""Tests of the Gaussian tail fit and its best-of-N prediction against scipy oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from slgjax.tail.expected_max import expected_max_std_normal
from slgjax.tail.gaussian import _fit_jit, fit_gaussian_tail, gaussian_tail_value
from slgjax.tail.status import Status, has_flag


def _tail_with_truncnorm_moments(mu, sigma, *, m, tail_fraction):
    """Build m rewards whose top share has exactly the truncated-normal mean and variance."""
    k = math.ceil(tail_fraction * m)
    z = stats.norm.isf(k / m)
    truncated = stats.truncnorm(z, np.inf, loc=mu, scale=sigma)
    target_mean, target_var = truncated.stats(moments="mv")

    tail = truncated.ppf((np.arange(k) + 0.5) / k)
    tail = (tail - tail.mean()) / tail.std(ddof=1) * math.sqrt(target_var) + target_mean
    body = np.linspace(tail.min() - 3.0 * sigma, tail.min() - 0.1 * sigma, m - k)
    return np.concatenate([body, tail])


def _reference_expected_max(n):
    """E[max of n standard normals] by scipy quadrature of x n phi(x) Phi(x)^(n-1)."""
    if n == 1:
        return 0.0
    mode = stats.norm.isf(1.0 / n)

    def density(x):
        return math.exp(math.log(n) + stats.norm.logpdf(x) + (n - 1) * stats.norm.logcdf(x))

    pieces = [(-12.0, mode - 1.0), (mode - 1.0, mode + 1.0), (mode + 1.0, 15.0)]
    return sum(integrate.quad(lambda x: x * density(x), a, b, limit=200)[0] for a, b in pieces)


@pytest.mark.parametrize("tail_fraction", [0.2, 0.05, 0.5])
def test_fit_inverts_truncnorm_moments(tail_fraction):
    rewards = _tail_with_truncnorm_moments(1.3, 0.4, m=1000, tail_fraction=tail_fraction)

    fit = fit_gaussian_tail(jnp.asarray(rewards, jnp.float32), tail_fraction=tail_fraction)

    np.testing.assert_allclose(float(fit.mu), 1.3, atol=2e-4)
    np.testing.assert_allclose(float(fit.sigma), 0.4, rtol=2e-4)
    assert int(fit.num_exceedances) == math.ceil(tail_fraction * 1000)
    assert int(fit.status) == Status.OK


def test_fit_recovers_normal_parameters():
    # m = 2e5 and 20% kept: the standard errors are about 0.0045 (mu) and
    # 0.0034 (sigma), so 0.02 is more than four of them.
    rewards = 1.5 + 0.7 * jax.random.normal(jax.random.key(0), (200_000,))

    fit = fit_gaussian_tail(rewards)

    assert abs(float(fit.mu) - 1.5) < 0.02
    assert abs(float(fit.sigma) - 0.7) < 0.02


@pytest.mark.parametrize("n", [1, 2, 3, 10, 100, 10_000, 10**6, 10**9])
def test_expected_max_matches_quadrature(n):
    expected = _reference_expected_max(n)

    value = float(expected_max_std_normal(n))

    np.testing.assert_allclose(value, expected, rtol=2e-5, atol=1e-6)


def test_expected_max_small_closed_forms():
    values = np.asarray(expected_max_std_normal(jnp.array([1, 2, 3])))

    np.testing.assert_allclose(
        values, [0.0, 1 / math.sqrt(math.pi), 1.5 / math.sqrt(math.pi)], atol=1e-6
    )


def test_value_monte_carlo_normal():
    # Fit on 1e5 draws of N(0.5, 2^2), then compare with 4000 simulated maxima
    # of N = 64 draws. Fit error (about 0.02 sigma E_N) and the Monte Carlo
    # standard error (about 0.015) together stay well below 0.1.
    key_fit, key_sim = jax.random.split(jax.random.key(1))
    rewards = 0.5 + 2.0 * jax.random.normal(key_fit, (100_000,))
    simulated = 0.5 + 2.0 * jax.random.normal(key_sim, (4000, 64))

    value = float(gaussian_tail_value(fit_gaussian_tail(rewards), 64))

    assert abs(value - float(jnp.mean(jnp.max(simulated, axis=-1)))) < 0.1


def test_quantile_method_uses_normal_quantile():
    fit = fit_gaussian_tail(_tail_with_truncnorm_moments(0.0, 1.0, m=500, tail_fraction=0.2))
    budgets = np.array([1, 2, 100, 10**9])

    values = np.asarray(gaussian_tail_value(fit, budgets, method="quantile"))

    expected = float(fit.mu) + float(fit.sigma) * np.where(
        budgets > 1, stats.norm.isf(1.0 / budgets), 0.0
    )
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_quantile_method_below_expected_max():
    fit = fit_gaussian_tail(_tail_with_truncnorm_moments(0.0, 1.0, m=500, tail_fraction=0.2))
    budgets = np.array([10, 1000, 10**6])

    gap = gaussian_tail_value(fit, budgets) - gaussian_tail_value(fit, budgets, method="quantile")

    assert np.all((np.asarray(gap) > 0.05) & (np.asarray(gap) < 0.3))


def test_value_shape_is_batch_plus_budgets():
    rewards = jax.random.normal(jax.random.key(2), (3, 4, 50))
    budgets = jnp.array([[1, 4], [16, 64]])

    values = gaussian_tail_value(fit_gaussian_tail(rewards), budgets)

    assert values.shape == (3, 4, 2, 2)


def test_mask_equals_truncated_pool():
    rewards = jax.random.normal(jax.random.key(3), (2, 40))
    mask = jnp.arange(40)[None, :] < jnp.array([[40], [25]])

    masked = fit_gaussian_tail(rewards, mask)
    short = fit_gaussian_tail(rewards[1, :25])

    np.testing.assert_allclose(float(masked.mu[1]), float(short.mu), rtol=1e-6)
    np.testing.assert_allclose(float(masked.sigma[1]), float(short.sigma), rtol=1e-6)


def test_vmap_equals_python_loop():
    rewards = jax.random.normal(jax.random.key(4), (5, 60))

    batched = jax.vmap(lambda r: gaussian_tail_value(fit_gaussian_tail(r), 32))(rewards)
    looped = [float(gaussian_tail_value(fit_gaussian_tail(r), 32)) for r in rewards]

    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-6)


def test_fit_traces_once_per_shape():
    key = jax.random.key(5)
    fit_gaussian_tail(jnp.zeros((3, 17)) + jnp.arange(17.0), tail_fraction=0.3)
    before = _fit_jit._cache_size()

    for i in range(3):
        fit_gaussian_tail(jax.random.normal(jax.random.fold_in(key, i), (3, 17)), tail_fraction=0.3)

    assert _fit_jit._cache_size() == before


def test_fit_new_tail_fraction_recompiles():
    rewards = jnp.arange(20.0)
    fit_gaussian_tail(rewards, tail_fraction=0.25)
    before = _fit_jit._cache_size()

    fit_gaussian_tail(rewards, tail_fraction=0.35)

    assert _fit_jit._cache_size() == before + 1


def test_nan_reward_names_position():
    rewards = np.zeros((2, 10))
    rewards[1, 7] = np.nan

    with pytest.raises(ValueError, match=r"rewards\[1, 7\]"):
        fit_gaussian_tail(rewards)


def test_infinite_reward_names_position():
    rewards = np.zeros(10)
    rewards[3] = np.inf

    with pytest.raises(ValueError, match=r"rewards\[3\]"):
        fit_gaussian_tail(rewards)


def test_constant_rewards_are_degenerate():
    fit = fit_gaussian_tail(jnp.full((20,), 0.75))

    values = gaussian_tail_value(fit, jnp.array([1, 100, 10**9]))

    assert bool(has_flag(fit.status, Status.DEGENERATE))
    np.testing.assert_allclose(np.asarray(values), 0.75)


def test_ties_at_threshold_flagged():
    rewards = jnp.array([0.0] * 10 + [1.0] * 6 + [2.0, 3.0])

    fit = fit_gaussian_tail(rewards, tail_fraction=0.2)

    assert bool(has_flag(fit.status, Status.TIES_AT_THRESHOLD))
    assert np.isfinite(float(fit.mu))
    assert float(fit.sigma) > 0


def test_single_sample_flags_few_exceedances():
    fit = fit_gaussian_tail(jnp.array([0.3, 9.0]), jnp.array([True, False]))

    assert bool(has_flag(fit.status, Status.FEW_EXCEEDANCES))
    np.testing.assert_allclose(np.asarray(gaussian_tail_value(fit, jnp.array([1, 50]))), 0.3)


def test_empty_state_flagged():
    fit = fit_gaussian_tail(jnp.ones((2, 5)), jnp.array([[True] * 5, [False] * 5]))

    assert bool(has_flag(fit.status[1], Status.EMPTY))
    assert float(fit.mu[1]) == -np.inf
    assert int(fit.status[0]) & int(Status.EMPTY) == 0


def test_scalar_rewards_raise():
    with pytest.raises(ValueError, match="at least one axis"):
        fit_gaussian_tail(jnp.array(1.0))


def test_zero_samples_raise():
    with pytest.raises(ValueError, match="no samples on its last axis"):
        fit_gaussian_tail(jnp.zeros((3, 0)))


def test_budget_below_one_raises():
    fit = fit_gaussian_tail(jnp.arange(10.0))

    with pytest.raises(ValueError, match=">= 1"):
        gaussian_tail_value(fit, jnp.array([0, 4]))


def test_huge_budget_is_finite():
    fit = fit_gaussian_tail(jnp.arange(30.0))

    values = np.asarray(gaussian_tail_value(fit, jnp.array([10**6, 10**9])))

    assert np.all(np.isfinite(values))
    assert values[1] > values[0]


@pytest.mark.parametrize("tail_fraction", [0.0, -0.1, 1.5])
def test_bad_tail_fraction_raises(tail_fraction):
    with pytest.raises(ValueError, match="tail_fraction"):
        fit_gaussian_tail(jnp.arange(10.0), tail_fraction=tail_fraction)
