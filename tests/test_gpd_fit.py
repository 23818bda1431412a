"""Peaks over threshold and the three GPD fitters against scipy and reference loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from slgjax.tail import gpd_fit, threshold
from slgjax.tail.gpd_fit import GPD_METHODS, fit_gpd, fit_gpd_exceedances
from slgjax.tail.status import Status, has_flag
from slgjax.tail.threshold import select_exceedances


def gpd_sets(num_sets, size, xi, seed):
    """Exceedances [num_sets, size] from GPD(xi, 1) by numpy inversion."""
    uniform = np.random.default_rng(seed).uniform(size=(num_sets, size))
    xi = np.broadcast_to(np.asarray(xi, float), (num_sets,))[:, None]
    return scipy.stats.genpareto.ppf(uniform, xi)


# Exceedance fits in this file run on one padded shape per data size, so
# each method compiles once for them.
SLAB_ROWS, SLAB_WIDTH = 20, 400


def fit_rows(rows, method, *, width=SLAB_WIDTH):
    """Fit each 1-D array in ``rows`` in one padded call; return numpy (xi, sigma, status)."""
    num_rows = SLAB_ROWS if width == SLAB_WIDTH else 2
    y = np.zeros((num_rows, width))
    mask = np.zeros((num_rows, width), bool)
    for i, row in enumerate(rows):
        y[i, : len(row)] = row
        mask[i, : len(row)] = True
    xi, sigma, status = fit_gpd_exceedances(jnp.asarray(y, jnp.float32), mask, method=method)
    count = len(rows)
    return np.asarray(xi)[:count], np.asarray(sigma)[:count], np.asarray(status)[:count]


def log_likelihood(y, xi, sigma):
    return scipy.stats.genpareto.logpdf(y, np.float64(xi), scale=np.float64(sigma)).sum()


# ---------------------------------------------------------------------------
# Threshold selection.


def test_threshold_is_next_reward():
    rewards = jnp.asarray([0.5, 3.0, 1.0, 2.0, 4.0, 0.1, 5.0, 2.5, 0.2, 0.3])
    exceedances = select_exceedances(rewards, tail_fraction=0.3)
    assert int(exceedances.num_exceedances) == 3
    assert float(exceedances.threshold) == 2.5
    valid = np.asarray(exceedances.y)[np.asarray(exceedances.mask)]
    np.testing.assert_allclose(valid, [2.5, 1.5, 0.5])
    assert float(exceedances.exceedance_fraction) == pytest.approx(0.3)
    assert int(exceedances.status) == 0


def test_threshold_by_count_and_ragged_mask():
    rewards = jnp.asarray([[1.0, 2.0, 3.0, 4.0, 9.0], [5.0, 1.0, 7.0, 3.0, 100.0]])
    mask = jnp.asarray([[True] * 5, [True, True, True, True, False]])
    exceedances = select_exceedances(rewards, mask, num_exceedances=2)
    np.testing.assert_array_equal(exceedances.num_exceedances, [2, 2])
    np.testing.assert_allclose(exceedances.threshold, [3.0, 3.0])
    np.testing.assert_allclose(exceedances.exceedance_fraction, [2 / 5, 2 / 4])
    np.testing.assert_allclose(np.where(exceedances.mask, exceedances.y, 0), [[6, 1], [4, 2]])


def test_ties_at_threshold_lower_the_count():
    rewards = jnp.asarray([1.0, 2.0, 2.0, 2.0, 5.0, 0.0])
    exceedances = select_exceedances(rewards, num_exceedances=3)
    assert float(exceedances.threshold) == 2.0
    assert int(exceedances.num_exceedances) == 1
    assert has_flag(exceedances.status, Status.TIES_AT_THRESHOLD)
    assert float(exceedances.y[0]) == 3.0


def test_threshold_empty_single_and_constant_states():
    rewards = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [7.0, 7.0, 7.0]])
    mask = jnp.asarray([[False] * 3, [True, False, False], [True] * 3])
    exceedances = select_exceedances(rewards, mask)
    np.testing.assert_array_equal(exceedances.num_exceedances, [0, 0, 0])
    assert float(exceedances.threshold[0]) == -np.inf
    assert has_flag(exceedances.status[0], Status.EMPTY)
    assert float(exceedances.threshold[1]) == 4.0
    assert has_flag(exceedances.status[2], Status.TIES_AT_THRESHOLD)
    assert np.all(np.isfinite(exceedances.y))


@pytest.mark.parametrize("shape", [(40,), (3, 40), (2, 3, 40)])
def test_threshold_shapes_under_jit(shape):
    rewards = jax.random.normal(jax.random.key(0), shape)
    exceedances = jax.jit(lambda r: select_exceedances(r, tail_fraction=0.25))(rewards)
    assert exceedances.threshold.shape == shape[:-1]
    assert exceedances.y.shape == shape[:-1] + (11,)
    np.testing.assert_array_equal(exceedances.num_exceedances, 10)


def test_threshold_rejects_bad_requests():
    rewards = jnp.ones(10)
    with pytest.raises(ValueError, match="tail_fraction"):
        select_exceedances(rewards, tail_fraction=1.5)
    with pytest.raises(ValueError, match="one of them"):
        select_exceedances(rewards, tail_fraction=0.2, num_exceedances=3)
    with pytest.raises(ValueError, match="num_exceedances"):
        select_exceedances(rewards, num_exceedances=0)


# ---------------------------------------------------------------------------
# Reference implementations, written as plain loops from the papers' formulas.


def zhang_stephens_reference(y):
    y = np.sort(np.asarray(y, np.float64))
    n = len(y)
    points = 30 + int(np.sqrt(n))
    quartile = y[int(n / 4 + 0.5) - 1]
    theta = 1 / y[-1] + (1 - np.sqrt(points / (np.arange(1, points + 1) - 0.5))) / (3 * quartile)
    profile = []
    for value in theta:
        xi = np.mean(np.log1p(-value * y))
        profile.append(n * (np.log(-value / xi) - xi - 1))
    profile = np.asarray(profile)
    weights = np.exp(profile - profile.max())
    theta_mean = np.sum(weights * theta) / np.sum(weights)
    xi = np.mean(np.log1p(-theta_mean * y))
    return xi, -xi / theta_mean


def pwm_reference(y):
    y = np.sort(np.asarray(y, np.float64))
    n = len(y)
    plotting = (np.arange(1, n + 1) - 0.35) / n
    a0 = y.mean()
    a1 = np.mean((1 - plotting) * y)
    return 2 - a0 / (a0 - 2 * a1), 2 * a0 * a1 / (a0 - 2 * a1)


@pytest.fixture(scope="module")
def moderate_sets():
    """Twenty sets of 100 exceedances, xi spread over [-0.5, 0.4]."""
    xi = np.linspace(-0.5, 0.4, 20)
    return gpd_sets(20, 100, xi, seed=1)


def test_zhang_stephens_matches_reference(moderate_sets):
    xi, sigma, status = fit_rows(moderate_sets, "zhang_stephens")
    for i, y in enumerate(moderate_sets):
        expected_xi, expected_sigma = zhang_stephens_reference(y)
        assert float(xi[i]) == pytest.approx(expected_xi, abs=2e-4)
        assert float(sigma[i]) == pytest.approx(expected_sigma, rel=2e-4)
    np.testing.assert_array_equal(status, 0)


def test_pwm_matches_reference(moderate_sets):
    xi, sigma, _ = fit_rows(moderate_sets, "pwm")
    for i, y in enumerate(moderate_sets):
        expected_xi, expected_sigma = pwm_reference(y)
        assert float(xi[i]) == pytest.approx(expected_xi, abs=1e-5)
        assert float(sigma[i]) == pytest.approx(expected_sigma, rel=1e-5)


def test_profile_mle_loglik_at_least_scipy(moderate_sets):
    # float32 fit, log-likelihoods in float64: within 1e-4 of scipy's or above.
    xi, sigma, status = fit_rows(moderate_sets, "profile_mle")
    for i, y in enumerate(moderate_sets):
        scipy_xi, _, scipy_sigma = scipy.stats.genpareto.fit(y, floc=0)
        ours = log_likelihood(y, xi[i], sigma[i])
        assert ours >= log_likelihood(y, scipy_xi, scipy_sigma) - 1e-4, i
    np.testing.assert_array_equal(status, 0)


def test_profile_mle_float64_precise(moderate_sets):
    with jax.enable_x64(True):
        xi, sigma, _ = fit_gpd_exceedances(jnp.asarray(moderate_sets), method="profile_mle")
        # The score equations of the GPD hold at an interior maximum.
        for i, y in enumerate(moderate_sets):
            scipy_xi, _, scipy_sigma = scipy.stats.genpareto.fit(y, floc=0)
            ours = log_likelihood(y, xi[i], sigma[i])
            assert ours >= log_likelihood(y, scipy_xi, scipy_sigma) - 1e-6, i
            step = 1e-5
            for d_xi, d_sigma in ((step, 0), (-step, 0), (0, step), (0, -step)):
                nearby = log_likelihood(y, xi[i] + d_xi, sigma[i] * (1 + d_sigma))
                assert nearby <= ours + 1e-9, i


@pytest.mark.parametrize("method", GPD_METHODS)
def test_recovers_parameters_on_large_samples(method):
    # Two sets of 4000: the standard error of xi is about 0.02, tolerance 0.08.
    true_xi = np.asarray([-0.3, 0.25])
    y = gpd_sets(2, 4000, true_xi, seed=2) * 1.7
    xi, sigma, status = fit_rows(y, method, width=4000)
    np.testing.assert_allclose(xi, true_xi, atol=0.08)
    np.testing.assert_allclose(sigma, 1.7, rtol=0.1)
    np.testing.assert_array_equal(status, 0)


def test_profile_mle_boundary_below_minus_one():
    # Quantiles of GPD(-1.5): the likelihood grows without bound as xi -> -inf.
    y = scipy.stats.genpareto.ppf((np.arange(1, 51) - 0.5) / 50, -1.5) * 2.0
    scipy_xi, _, _ = scipy.stats.genpareto.fit(y, floc=0)
    assert scipy_xi < -1
    xi, sigma, status = fit_rows([y], "profile_mle")
    assert xi[0] == -1.0
    assert sigma[0] == pytest.approx(y.max(), rel=1e-6)
    assert has_flag(status[0], Status.XI_BOUNDARY)


@pytest.mark.parametrize("method", GPD_METHODS)
def test_few_exceedances_use_exponential(method):
    xi, sigma, status = fit_rows([[0.5, 1.0, 2.0, 4.0], [0.5, 1.0, 2.0, 4.0, 3.0]], method)
    assert xi[0] == 0.0
    assert float(sigma[0]) == pytest.approx(1.875)
    assert has_flag(status[0], Status.FEW_EXCEEDANCES)
    assert not has_flag(status[1], Status.FEW_EXCEEDANCES)


@pytest.mark.parametrize("method", GPD_METHODS)
def test_constant_rewards_are_degenerate(method):
    rewards = jnp.full(60, 0.7)
    fit = fit_gpd(rewards, method=method)
    np.testing.assert_array_equal(fit.sigma, 0.0)
    np.testing.assert_array_equal(fit.xi, 0.0)
    assert has_flag(fit.status, Status.TIES_AT_THRESHOLD)
    assert has_flag(fit.status, Status.DEGENERATE)

    xi, sigma, status = fit_rows([[2.0] * 6, [0.0] * 6], method)
    np.testing.assert_array_equal(sigma, 0.0)
    np.testing.assert_array_equal(xi, 0.0)
    assert np.all(has_flag(status, Status.DEGENERATE))


def test_binary_rewards():
    # 18 ones in 60: the threshold is 1 and no reward exceeds it.
    rewards = jnp.asarray(np.r_[np.ones(18), np.zeros(42)])
    fit = fit_gpd(rewards, method="profile_mle")
    assert float(fit.threshold) == 1.0
    assert int(fit.num_exceedances) == 0
    assert has_flag(fit.status, Status.TIES_AT_THRESHOLD)
    assert has_flag(fit.status, Status.FEW_EXCEEDANCES)
    assert has_flag(fit.status, Status.DEGENERATE)

    # 6 ones in 60: the threshold is 0 and the six equal exceedances are degenerate.
    rewards = jnp.asarray(np.r_[np.ones(6), np.zeros(54)])
    fit = fit_gpd(rewards, method="profile_mle")
    assert float(fit.threshold) == 0.0
    assert int(fit.num_exceedances) == 6
    assert has_flag(fit.status, Status.DEGENERATE)


def test_bounded_rewards_at_endpoint():
    # Rewards clipped at 1: 10% sit at the bound, 20% are requested.
    base = scipy.stats.norm.ppf((np.arange(1, 61) - 0.5) / 60)
    rewards = jnp.asarray(np.minimum(base, scipy.stats.norm.ppf(0.9)))
    for method in GPD_METHODS:
        fit = fit_gpd(rewards, method=method)
        assert int(fit.num_exceedances) == 12
        assert np.isfinite(float(fit.xi)) and float(fit.sigma) > 0
        assert float(fit.xi) < 0, method
    fit = fit_gpd(rewards, method="profile_mle")
    y = np.asarray(rewards)[np.asarray(rewards) > float(fit.threshold)] - float(fit.threshold)
    assert (
        float(fit.threshold) - float(fit.sigma) / float(fit.xi)
        >= y.max() + float(fit.threshold) - 1e-5
    )


@pytest.mark.parametrize("true_xi", [-0.02, 0.02])
def test_xi_near_zero_from_both_sides(true_xi):
    # Exact quantiles of GPD(+-0.02): every fit lands close to the true shape.
    y = scipy.stats.genpareto.ppf((np.arange(1, 401) - 0.5) / 400, true_xi)
    scipy_xi, _, scipy_sigma = scipy.stats.genpareto.fit(y, floc=0)
    for method in GPD_METHODS:
        xi, sigma, status = fit_rows([y], method)
        assert abs(xi[0] - true_xi) < 0.03, method
        assert status[0] == 0
    xi, sigma, _ = fit_rows([y], "profile_mle")
    assert np.sign(xi[0]) == np.sign(scipy_xi)
    ours = log_likelihood(y, xi[0], sigma[0])
    assert ours >= log_likelihood(y, scipy_xi, scipy_sigma) - 1e-4


def test_heavy_tail_flags_infinite_mean():
    y = gpd_sets(1, 3000, 1.3, seed=3)
    xi, _, status = fit_rows(y, "profile_mle", width=4000)
    assert xi[0] > 1
    assert has_flag(status[0], Status.INFINITE_MEAN)


# ---------------------------------------------------------------------------
# Vectorization, compilation and gradients.


@pytest.mark.parametrize("method", GPD_METHODS)
def test_batched_fit_equals_loop(method):
    rewards = jax.random.normal(jax.random.key(4), (2, 3, 60))
    lengths = jnp.asarray([[60, 45, 30], [55, 60, 8]])
    mask = jnp.arange(60) < lengths[..., None]
    batched = fit_gpd(rewards, mask, method=method)
    for b in range(2):
        for k in range(3):
            single = fit_gpd(rewards[b, k], mask[b, k], method=method)
            for name, batch_value, value in zip(single._fields, batched, single, strict=True):
                np.testing.assert_allclose(
                    batch_value[b, k], value, rtol=2e-5, atol=1e-6, err_msg=name
                )


def test_vmap_equals_batch():
    rewards = jax.random.normal(jax.random.key(5), (2, 3, 60))
    batched = fit_gpd(rewards, method="profile_mle")
    mapped = jax.vmap(lambda r: fit_gpd(r, method="profile_mle"))(rewards)
    for batch_value, mapped_value in zip(batched, mapped, strict=True):
        np.testing.assert_allclose(batch_value, mapped_value, rtol=1e-6)


def test_one_trace_per_shape():
    before_fit = gpd_fit._fit_gpd_jit._cache_size()
    before_select = threshold._select_jit._cache_size()
    for seed in range(3):
        rewards = jax.random.normal(jax.random.key(seed), (5, 33))
        fit_gpd(rewards, method="pwm", tail_fraction=0.3)
        select_exceedances(rewards, tail_fraction=0.3)
    assert gpd_fit._fit_gpd_jit._cache_size() == before_fit + 1
    assert threshold._select_jit._cache_size() == before_select + 1


@pytest.mark.parametrize("method", GPD_METHODS)
def test_gradients_finite(method):
    y = jnp.asarray(gpd_sets(3, 30, [-0.3, 0.0, 0.3], seed=6))
    y = y.at[2, :27].set(1.0)

    def loss(y):
        xi, sigma, _ = gpd_fit._fit_exceedances_impl(y, jnp.ones(y.shape, bool), method)
        return jnp.sum(xi + sigma)

    gradient = jax.jit(jax.grad(loss))(y)
    assert np.all(np.isfinite(gradient))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="method"):
        fit_gpd(jnp.ones(10), method="moments")
    with pytest.raises(ValueError, match=">= 0"):
        fit_gpd_exceedances(jnp.asarray([1.0, -0.5, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        fit_gpd(jnp.asarray([1.0, np.nan, 2.0]))
