"""Spliced GPD best-of-N values against closed forms and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from slgjax.tail import gpd_predict
from slgjax.tail.gpd import gpd_sample
from slgjax.tail.gpd_fit import GPDFit, fit_gpd
from slgjax.tail.gpd_predict import gpd_tail_value
from slgjax.tail.status import Status

BUDGETS = np.asarray([1, 10, 1000, 10**6, 10**9])
SIGMA = 1.5
# Ten rewards; a fit with k exceedances keeps the lowest 10 - k as its empirical part.
REWARDS = np.sort(np.random.default_rng(0).uniform(0.0, 1.0, 10))


def make_fit(xi, count, *, sigma=SIGMA, status=0):
    """A GPDFit over REWARDS with ``count`` exceedances above the next reward."""
    m = len(REWARDS)
    threshold = 0.0 if count == m else REWARDS[m - count - 1]
    return GPDFit(
        xi=jnp.float32(xi),
        sigma=jnp.float32(sigma),
        threshold=jnp.float32(threshold),
        exceedance_fraction=jnp.float32(count / m),
        num_exceedances=jnp.int32(count),
        status=jnp.int32(status),
    )


def power_integral(n, xi, lower):
    """Return the integral of (1 - p)^(-xi) d(p^N) over (lower, 1), in float64."""
    return n * scipy.special.beta(n, 1 - xi) * scipy.special.betaincc(n, 1 - xi, lower)


def log_integral(n, lower):
    """Return the integral of -log(1 - p) d(p^N) over (lower, 1), in float64.

    Integration by parts gives (a^N - 1) log(1 - a) + sum_{j <= N} (1 - a^j) / j.
    """
    j = np.arange(1, min(n, 10**6) + 1)
    partial = np.sum((1 - lower**j) / j)
    if n > 10**6:
        # The remaining terms have a^j below 1e-300: their sum is H_N - H_(10^6).
        partial += scipy.special.digamma(n + 1) - scipy.special.digamma(10**6 + 1)
    return (lower**n - 1) * np.log1p(-lower) + partial


def spliced_value(xi, count):
    """V_N of the spliced model of make_fit(xi, count), in float64."""
    m = len(REWARDS)
    tail_mass = count / m
    lower = 1 - tail_mass
    threshold = 0.0 if count == m else REWARDS[m - count - 1]
    values = []
    for n in BUDGETS:
        i = np.arange(1, m - count + 1)
        empirical = np.sum(REWARDS[: m - count] * ((i / m) ** float(n) - ((i - 1) / m) ** float(n)))
        mass = 1 - lower**n
        if xi == 0:
            # Q(p) = u + sigma (log p_u - log(1 - p)).
            tail = (threshold + SIGMA * np.log(tail_mass)) * mass + SIGMA * log_integral(n, lower)
        else:
            # Q(p) = u - sigma / xi + sigma / xi p_u^xi (1 - p)^(-xi).
            constant = (threshold - SIGMA / xi) * mass
            tail = constant + SIGMA / xi * tail_mass**xi * power_integral(n, xi, lower)
        values.append(empirical + tail)
    return np.asarray(values)


@pytest.mark.parametrize("xi", [-0.4, 0.0, 0.3, 0.6, 0.9])
def test_pure_gpd_closed_form(xi):
    # p_u = 1: V_N = sigma H_N for xi = 0, else sigma / xi (N B(N, 1 - xi) - 1).
    values = gpd_tail_value(make_fit(xi, 10), REWARDS, None, BUDGETS)
    if xi == 0:
        expected = SIGMA * (scipy.special.digamma(BUDGETS + 1.0) + np.euler_gamma)
    else:
        expected = SIGMA / xi * (BUDGETS * scipy.special.beta(BUDGETS, 1 - xi) - 1)
    np.testing.assert_allclose(values, expected, rtol=1e-5)


@pytest.mark.parametrize("xi", [-0.4, 0.0, 0.3, 0.9])
def test_spliced_closed_form(xi):
    values = gpd_tail_value(make_fit(xi, 3), REWARDS, None, BUDGETS)
    np.testing.assert_allclose(values, spliced_value(xi, 3), rtol=1e-5)


@jax.jit
def running_maxima(key, fit, rewards):
    """Running maxima of 50 draws from the spliced model, [20000 repeats, 50 budgets]."""
    m = rewards.shape[-1]
    shape = (20_000, 50)
    ascending = jnp.sort(rewards)
    key_choice, key_index, key_tail = jax.random.split(key, 3)
    in_tail = jax.random.uniform(key_choice, shape) < fit.exceedance_fraction
    empirical = ascending[jax.random.randint(key_index, shape, 0, m - fit.num_exceedances)]
    tail = fit.threshold + gpd_sample(key_tail, xi=fit.xi, sigma=fit.sigma, shape=shape)
    return jax.lax.cummax(jnp.where(in_tail, tail, empirical), axis=1)


def test_spliced_matches_monte_carlo():
    rewards = jax.random.normal(jax.random.key(1), (50,))
    fit = fit_gpd(rewards, method="zhang_stephens")
    budgets = np.asarray([1, 5, 50])
    values = gpd_tail_value(fit, rewards, None, budgets)
    maxima = running_maxima(jax.random.key(2), fit, rewards)
    for budget, value in zip(budgets, values, strict=True):
        column = maxima[:, budget - 1]
        standard_error = float(jnp.std(column)) / np.sqrt(column.size)
        # Four standard errors, with a fixed key.
        assert abs(float(jnp.mean(column)) - float(value)) < 4 * standard_error, budget


@pytest.mark.parametrize("xi", [-0.4, 0.0, 0.3, 1.2])
def test_return_level_formula(xi):
    fit = make_fit(xi, 3)
    values = gpd_tail_value(fit, REWARDS, None, BUDGETS, method="return_level")
    threshold, tail_mass = REWARDS[6], 0.3
    expected = []
    for n in BUDGETS:
        if n * tail_mass < 1:
            # Level 1 - 1/N lies in the empirical part: x_(ceil(m (1 - 1/N))).
            expected.append(REWARDS[max(int(np.ceil(10 * (1 - 1 / n))), 1) - 1])
        elif xi == 0:
            expected.append(threshold + SIGMA * np.log(n * tail_mass))
        else:
            expected.append(threshold + SIGMA / xi * ((n * tail_mass) ** xi - 1))
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_return_level_continuous_at_zero():
    at_zero = gpd_tail_value(make_fit(0.0, 3), REWARDS, None, BUDGETS, method="return_level")
    for xi in (-1e-6, 1e-6):
        nearby = gpd_tail_value(make_fit(xi, 3), REWARDS, None, BUDGETS, method="return_level")
        np.testing.assert_allclose(nearby, at_zero, rtol=1e-4)


def test_infinite_mean_is_inf_not_nan():
    fit = make_fit(1.2, 3, status=int(Status.INFINITE_MEAN))
    values = gpd_tail_value(fit, REWARDS, None, BUDGETS)
    assert np.all(np.isposinf(values))
    levels = gpd_tail_value(fit, REWARDS, None, BUDGETS, method="return_level")
    assert np.all(np.isfinite(levels))


def test_degenerate_and_binary_use_empirical():
    constant = jnp.full(60, 0.7)
    for method in ("expected_max", "return_level"):
        values = gpd_tail_value(fit_gpd(constant), constant, None, BUDGETS, method=method)
        np.testing.assert_allclose(values, 0.7, rtol=1e-6)

    # 6 ones in 60: V_N = 1 - 0.9^N, the empirical expected maximum.
    binary = jnp.asarray(np.r_[np.ones(6), np.zeros(54)])
    values = gpd_tail_value(fit_gpd(binary), binary, None, BUDGETS)
    np.testing.assert_allclose(values, 1 - 0.9**BUDGETS, rtol=1e-5)


def test_empty_state_is_minus_inf():
    rewards = jnp.asarray([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    mask = jnp.asarray([[True] * 4, [False] * 4])
    fit = fit_gpd(rewards, mask)
    values = gpd_tail_value(fit, rewards, mask, BUDGETS)
    assert np.all(np.isfinite(values[0]))
    assert np.all(np.isneginf(values[1]))


def test_shapes_and_batch_equals_loop():
    rewards = jax.random.normal(jax.random.key(3), (2, 3, 40))
    mask = jnp.arange(40) < jnp.asarray([[40, 30, 20], [35, 40, 25]])[..., None]
    fit = fit_gpd(rewards, mask, method="pwm")
    budgets = jnp.asarray([[1, 10], [100, 1000]])
    for method in ("expected_max", "return_level"):
        values = gpd_tail_value(fit, rewards, mask, budgets, method=method)
        assert values.shape == (2, 3, 2, 2)
        for b in range(2):
            for k in range(3):
                single = GPDFit(*(field[b, k] for field in fit))
                expected = gpd_tail_value(single, rewards[b, k], mask[b, k], budgets, method=method)
                np.testing.assert_allclose(values[b, k], expected, rtol=1e-6)


def test_one_trace_per_shape():
    before = gpd_predict._value_jit._cache_size()
    for seed in range(3):
        rewards = jax.random.normal(jax.random.key(seed), (3, 40))
        fit = fit_gpd(rewards, method="pwm")
        gpd_tail_value(fit, rewards, None, jnp.asarray([1, 10, 100]))
    assert gpd_predict._value_jit._cache_size() == before + 1


def test_gradients_finite():
    rewards = jnp.asarray(REWARDS, jnp.float32)

    def value(xi, sigma, rewards):
        fit = make_fit(0.0, 3)._replace(xi=xi, sigma=sigma)
        return jnp.sum(
            gpd_predict._value_impl(fit, rewards, jnp.ones(10, bool), BUDGETS, "expected_max")
        )

    gradient = jax.jit(jax.grad(value, argnums=(0, 1, 2)))
    for xi in (-0.4, 0.0, 0.9, 1.2):
        for part in gradient(jnp.float32(xi), jnp.float32(SIGMA), rewards):
            assert np.all(np.isfinite(part)), xi


def test_invalid_arguments_raise():
    fit = make_fit(0.1, 3)
    with pytest.raises(ValueError, match="method"):
        gpd_tail_value(fit, REWARDS, None, 10, method="mean")
    with pytest.raises(ValueError, match="budgets"):
        gpd_tail_value(fit, REWARDS, None, 0)
    with pytest.raises(ValueError, match="batch shape"):
        gpd_tail_value(fit, np.ones((2, 10)), None, 10)
