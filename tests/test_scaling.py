"""Tests of the empirical best-of-N estimators and of the unified prediction API."""

import itertools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

from slgjax.scaling import MODELS, bootstrap, empirical_best_of_n, pass_at_k, predict_best_of_n
from slgjax.scaling._binomial import log_binomial_ratio
from slgjax.scaling.empirical import _empirical_jit
from slgjax.tail.expected_max import expected_max_std_normal
from slgjax.tail.gaussian import fit_gaussian_tail, gaussian_tail_value
from slgjax.tail.status import Status, has_flag

FREQUENTIST = ("gaussian", "gaussian_quantile", "gpd_zhang_stephens", "gpd_profile_mle", "gpd_pwm")


def _brute_force_best_of_n(pool, n):
    return np.mean([max(subset) for subset in itertools.combinations(pool, n)])


def _float64_best_of_n(pool, n):
    """The estimator with float64 gammaln weights, the textbook form."""
    x = np.sort(np.asarray(pool, np.float64))
    size = len(x)
    i = np.arange(n, size + 1)
    log_weight = gammaln(i) - gammaln(n) - gammaln(i - n + 1)
    log_weight -= gammaln(size + 1) - gammaln(n + 1) - gammaln(size - n + 1)
    return float(np.sum(np.exp(log_weight) * x[n - 1 :]))


# ---------------------------------------------------------------------------
# Log binomial ratios.


@pytest.mark.parametrize(
    "total, k, delta",
    [(10, 3, 4), (1000, 1, 999), (10**6, 4, 999_996), (10**6, 1000, 50_000), (10**6, 50_000, 1000)],
)
def test_log_binomial_ratio_matches_mpmath(total, k, delta):
    mpmath.mp.dps = 40
    exact = float(mpmath.log(mpmath.binomial(total - delta, k) / mpmath.binomial(total, k)))

    value = float(log_binomial_ratio(total, k, delta))

    # Absolute error in the log, so a relative error in the ratio itself.
    assert abs(value - exact) < 1e-6 * max(1.0, abs(exact))


def test_log_binomial_ratio_grid_against_float64():
    totals, ks, deltas = [], [], []
    for total in (7, 100, 10**4, 10**6):
        for k in np.unique(np.geomspace(1, total, 12).astype(int)):
            for delta in np.unique(np.geomspace(1, total - k + 1, 12).astype(int) - 1):
                if k + delta <= total:
                    totals.append(total), ks.append(k), deltas.append(delta)
    totals, ks, deltas = (np.array(v, np.float64) for v in (totals, ks, deltas))
    reference = (
        gammaln(totals - deltas + 1)
        - gammaln(totals - deltas - ks + 1)
        - gammaln(totals + 1)
        + gammaln(totals - ks + 1)
    )

    value = np.asarray(log_binomial_ratio(totals, ks, deltas))

    # Where the ratio is not negligible, the float32 log is within 5e-5 of the
    # float64 one (whose own rounding is about 3e-9 at total = 1e6).
    relevant = reference > -60
    np.testing.assert_allclose(value[relevant], reference[relevant], atol=5e-5, rtol=2e-6)


def test_log_binomial_ratio_infeasible_is_minus_inf():
    assert float(log_binomial_ratio(5, 3, 3)) == -np.inf
    assert float(log_binomial_ratio(5, 0, 2)) == 0.0


# ---------------------------------------------------------------------------
# Empirical best-of-N.


@pytest.mark.parametrize("seed", [0, 1])
def test_estimator_matches_subset_enumeration(seed):
    pool = np.random.default_rng(seed).normal(size=9)
    pool[3] = pool[5]  # a tie

    values = np.asarray(empirical_best_of_n(pool, n=np.arange(1, 10)))

    expected = [_brute_force_best_of_n(pool, n) for n in range(1, 10)]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)


def test_ragged_pools_match_enumeration():
    rng = np.random.default_rng(2)
    pools = [rng.uniform(size=size) for size in (4, 7, 9)]
    rewards = np.zeros((3, 9))
    mask = np.zeros((3, 9), bool)
    for row, pool in enumerate(pools):
        rewards[row, : len(pool)] = pool
        mask[row, : len(pool)] = True

    values = np.asarray(empirical_best_of_n(rewards, mask, n=np.array([1, 2, 4])))

    expected = [[_brute_force_best_of_n(pool, n) for n in (1, 2, 4)] for pool in pools]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_estimator_stable_at_one_million():
    pool = np.asarray(jax.random.normal(jax.random.key(0), (10**6,)))
    budgets = np.array([1, 3, 100, 10**4, 10**6])

    values = np.asarray(empirical_best_of_n(pool, n=budgets))

    expected = [_float64_best_of_n(pool, int(n)) for n in budgets]
    # float32 rounding of the rewards themselves is about 5e-7 relative.
    np.testing.assert_allclose(values, expected, rtol=2e-5, atol=2e-5)
    assert values[-1] == pool.max()


def test_binary_rewards_equal_pass_at_k():
    rng = np.random.default_rng(3)
    pools = (rng.uniform(size=(6, 200)) < rng.uniform(0.0, 0.3, size=(6, 1))).astype(np.float32)
    ks = np.array([1, 5, 50, 200])

    values = np.asarray(empirical_best_of_n(pools, n=ks))

    correct = pools.sum(axis=-1).astype(int)
    expected = np.asarray(pass_at_k(correct[:, None], 200, ks[None, :]))
    np.testing.assert_allclose(values, expected, atol=2e-6)


def test_constant_pool_is_constant():
    values = np.asarray(empirical_best_of_n(jnp.full((50,), 0.25), n=np.array([1, 7, 50])))

    np.testing.assert_allclose(values, 0.25, rtol=1e-6)


def test_shape_is_batch_plus_budgets():
    rewards = jnp.zeros((2, 3, 20)) + jnp.arange(20.0)

    values = empirical_best_of_n(rewards, n=jnp.array([[1, 2], [3, 4]]))

    assert values.shape == (2, 3, 2, 2)


def test_budget_above_pool_raises():
    mask = np.ones((2, 10), bool)
    mask[1, 6:] = False

    with pytest.raises(ValueError, match=r"N=8 exceeds the pool at \[1\], which contains 6"):
        empirical_best_of_n(np.zeros((2, 10)), mask, n=np.array([2, 8]))


def test_budget_above_pool_nan_when_not_strict():
    values = np.asarray(empirical_best_of_n(np.arange(5.0), n=np.array([5, 6]), strict=False))

    assert values[0] == 4.0
    assert np.isnan(values[1])


def test_traced_budget_above_pool_is_nan():
    values = jax.jit(lambda r, n: empirical_best_of_n(r, n=n))(jnp.arange(5.0), jnp.array([2, 9]))

    assert np.isfinite(values[0])
    assert np.isnan(values[1])


@pytest.mark.parametrize("budget", [0, -3, 2.5])
def test_bad_budget_raises(budget):
    with pytest.raises(ValueError, match="budget|whole numbers|>= 1"):
        empirical_best_of_n(np.arange(5.0), n=budget)


def test_empirical_nan_reward_names_position():
    rewards = np.zeros((3, 4))
    rewards[2, 1] = np.nan

    with pytest.raises(ValueError, match=r"rewards\[2, 1\]"):
        empirical_best_of_n(rewards, n=2)


def test_empirical_empty_pool_raises():
    with pytest.raises(ValueError, match="no samples"):
        empirical_best_of_n(np.zeros((3, 0)), n=1)


def test_empirical_vmap_equals_loop():
    rewards = jax.random.uniform(jax.random.key(4), (4, 30))
    budgets = jnp.array([1, 5, 30])

    batched = jax.vmap(lambda r: empirical_best_of_n(r, n=budgets))(rewards)
    looped = np.stack([np.asarray(empirical_best_of_n(r, n=budgets)) for r in rewards])

    np.testing.assert_allclose(np.asarray(batched), looped, rtol=1e-6)


def test_empirical_traces_once_per_shape():
    rewards = jax.random.uniform(jax.random.key(5), (3, 11))
    empirical_best_of_n(rewards, n=jnp.array([1, 2]))
    before = _empirical_jit._cache_size()

    for i in range(3):
        empirical_best_of_n(rewards + i, n=jnp.array([i + 1, 11]))

    assert _empirical_jit._cache_size() == before


# ---------------------------------------------------------------------------
# pass@k.


def test_pass_at_k_matches_product_form():
    # Chen et al. (2021) give 1 - prod_{i=n-c+1}^{n} (1 - k/i).
    cases = [(10, 3, 1), (10, 3, 5), (10, 3, 8), (100, 1, 50), (10**5, 20, 1000), (10**5, 0, 10)]
    for n, c, k in cases:
        expected = 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64))

        value = float(pass_at_k(c, n, k))

        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7, err_msg=f"{n=} {c=} {k=}")


def test_pass_at_k_one_when_too_few_failures():
    assert float(pass_at_k(8, 10, 3)) == 1.0


@pytest.mark.parametrize("c, n, k", [(-1, 10, 2), (11, 10, 2), (3, 10, 0), (3, 10, 11)])
def test_pass_at_k_bad_arguments_raise(c, n, k):
    with pytest.raises(ValueError):
        pass_at_k(c, n, k)


# ---------------------------------------------------------------------------
# predict_best_of_n: options, shapes, bad inputs.


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown"):
        predict_best_of_n(np.arange(10.0), n=4, model="lognormal", band=None)


def test_band_needs_key():
    with pytest.raises(ValueError, match="key"):
        predict_best_of_n(np.arange(10.0), n=4, model="gaussian")


@pytest.mark.parametrize("band", [0.0, 1.0, 1.5])
def test_band_outside_unit_interval_raises(band):
    with pytest.raises(ValueError, match="band"):
        predict_best_of_n(np.arange(10.0), n=4, key=jax.random.key(0), band=band)


def test_no_band_returns_none():
    prediction = predict_best_of_n(np.arange(10.0), n=4, band=None)

    assert prediction.lower is None
    assert prediction.upper is None


def test_gaussian_models_equal_tail_value():
    rewards = jax.random.normal(jax.random.key(6), (3, 40))
    budgets = jnp.array([1, 8, 10**6])
    fit = fit_gaussian_tail(rewards)

    exact = predict_best_of_n(rewards, n=budgets, model="gaussian", band=None)
    quantile = predict_best_of_n(rewards, n=budgets, model="gaussian_quantile", band=None)

    np.testing.assert_allclose(exact.value, gaussian_tail_value(fit, budgets), rtol=1e-6)
    np.testing.assert_allclose(
        quantile.value, gaussian_tail_value(fit, budgets, method="quantile"), rtol=1e-6
    )


def test_empirical_max_is_estimator_then_sample_max():
    rewards = jax.random.normal(jax.random.key(7), (2, 30))

    prediction = predict_best_of_n(
        rewards, n=jnp.array([1, 30, 31, 10**9]), model="empirical_max", band=None
    )

    expected = empirical_best_of_n(rewards, n=jnp.array([1, 30]))
    np.testing.assert_allclose(prediction.value[:, :2], expected, rtol=1e-6)
    np.testing.assert_allclose(
        prediction.value[:, 2:], np.max(rewards, axis=-1, keepdims=True).repeat(2, 1)
    )


def test_predict_nan_reward_names_position():
    rewards = np.zeros((2, 3, 12))
    rewards[1, 2, 4] = np.inf

    with pytest.raises(ValueError, match=r"rewards\[1, 2, 4\]"):
        predict_best_of_n(rewards, n=4, band=None)


def test_predict_empty_input_raises():
    with pytest.raises(ValueError, match="no samples"):
        predict_best_of_n(np.zeros((0,)), n=4, band=None)


def test_bootstrap_band_brackets_value():
    rewards = jax.random.normal(jax.random.key(8), (6, 80))

    prediction = predict_best_of_n(
        rewards, n=jnp.array([4, 64, 4096]), key=jax.random.key(9), num_resamples=100
    )

    assert prediction.lower.shape == prediction.value.shape == (6, 3)
    assert np.all(prediction.lower <= prediction.value)
    assert np.all(prediction.value <= prediction.upper)


def test_gpd_splice_draws_fitted_tail():
    from slgjax.tail.gpd_fit import fit_gpd

    rewards = jax.random.beta(jax.random.key(16), 2.0, 3.0, (200,))
    mask = jnp.ones_like(rewards, bool)
    fit = fit_gpd(rewards)

    simulated, _ = bootstrap.simulate_gpd_splice(
        jax.random.key(17), fit, rewards, mask, num_resamples=100
    )

    simulated = np.asarray(simulated).ravel()
    threshold = float(fit.threshold)
    above = simulated[simulated > threshold] - threshold
    body = np.sort(np.asarray(rewards)[np.asarray(rewards) <= threshold])
    below = simulated[simulated <= threshold]
    tail_share = len(above) / len(simulated)
    expected_share = float(fit.exceedance_fraction)
    assert abs(tail_share - expected_share) < 4 * math.sqrt(expected_share / len(simulated))
    assert np.all(np.isin(below, body))
    reference = stats.genpareto(c=float(fit.xi), scale=float(fit.sigma))
    assert stats.kstest(above, reference.cdf).pvalue > 1e-3


def test_gaussian_splice_draws_fitted_tail():
    rewards = 1.0 + 0.5 * jax.random.normal(jax.random.key(18), (200,))
    mask = jnp.ones_like(rewards, bool)
    fit = fit_gaussian_tail(rewards)

    simulated, _ = bootstrap.simulate_gaussian_splice(
        jax.random.key(19), fit, rewards, mask, num_resamples=100
    )

    simulated = np.asarray(simulated).ravel()
    k = int(fit.num_exceedances)
    body = np.sort(np.asarray(rewards))[: 200 - k]
    from_body = np.isin(simulated, body)
    tail_share = 1.0 - from_body.mean()
    assert abs(tail_share - k / 200) < 4 * math.sqrt((k / 200) / len(simulated))
    # The tail is N(mu, sigma^2) above its own 1 - k/m quantile.
    lower = stats.norm.isf(k / 200)
    reference = stats.truncnorm(lower, np.inf, loc=float(fit.mu), scale=float(fit.sigma))
    assert stats.kstest(simulated[~from_body], reference.cdf).pvalue > 1e-3


def test_resample_pool_draws_observed_rewards():
    rewards = jnp.arange(10.0).reshape(2, 5)
    mask = jnp.array([[True] * 5, [True, True, False, False, False]])

    resampled, resampled_mask = bootstrap.resample_pool(
        jax.random.key(20), rewards, mask, num_resamples=50
    )

    resampled = np.asarray(resampled)
    assert resampled.shape == (50, 2, 5)
    assert set(resampled[:, 0].ravel()) <= set(range(5))
    assert set(resampled[:, 1, :2].ravel()) <= {5.0, 6.0}
    np.testing.assert_array_equal(np.asarray(resampled_mask[0]), np.asarray(mask))


def test_prediction_traces_once_per_shape():
    from slgjax.scaling import predict

    key = jax.random.key(15)
    budgets = jnp.array([4, 64])
    predict_best_of_n(jnp.arange(60.0).reshape(2, 30), n=budgets, key=key, num_resamples=20)
    jitted = (
        predict._gaussian_value,
        bootstrap._simulate_gaussian_jit,
        bootstrap._order_statistics,
    )
    before = [f._cache_size() for f in jitted]

    for i in range(3):
        rewards = jax.random.normal(jax.random.fold_in(key, i), (2, 30))
        predict_best_of_n(rewards, n=budgets * (i + 1), key=key, num_resamples=20)

    assert [f._cache_size() for f in jitted] == before


@pytest.mark.parametrize("model", ["gaussian", "gpd_zhang_stephens", "empirical_max"])
def test_vmapped_prediction_equals_loop(model):
    rewards = jax.random.normal(jax.random.key(10), (3, 60))
    key = jax.random.key(11)
    budgets = jnp.array([8, 512])

    def predict(r):
        prediction = predict_best_of_n(r, n=budgets, model=model, key=key, num_resamples=20)
        return prediction.value, prediction.lower, prediction.upper

    batched = jax.vmap(predict)(rewards)
    looped = [predict(r) for r in rewards]

    for field, name in enumerate(("value", "lower", "upper")):
        expected = np.stack([np.asarray(result[field]) for result in looped])
        np.testing.assert_allclose(np.asarray(batched[field]), expected, rtol=1e-5, err_msg=name)


# ---------------------------------------------------------------------------
# Bad inputs, for every model. All cases share one shape, [2, 40] with a mask,
# so that each model compiles once for them.

BUDGETS = jnp.array([1, 64, 10**9])


def _predict(rewards, mask=None, *, model):
    rewards = jnp.broadcast_to(jnp.asarray(rewards, jnp.float32), (2, 40))
    mask = jnp.ones((2, 40), bool) if mask is None else mask
    options = {"num_samples": 100} if model.startswith("bayes") else {}
    return predict_best_of_n(
        rewards, mask, n=BUDGETS, model=model, key=jax.random.key(0), band=None, **options
    )


@pytest.mark.parametrize("model", MODELS)
def test_constant_rewards_predict_constant(model):
    prediction = _predict(jnp.full((2, 40), 0.5), model=model)

    np.testing.assert_allclose(np.asarray(prediction.value), 0.5, rtol=1e-5)
    if model != "empirical_max":
        # Gaussian: DEGENERATE; GPD: no reward lies strictly above the
        # threshold, so FEW_EXCEEDANCES and TIES_AT_THRESHOLD.
        assert np.all(np.asarray(prediction.status) != Status.OK)


@pytest.mark.parametrize("model", MODELS)
def test_ties_at_threshold_flagged_per_model(model):
    # 40 rewards, 8 requested in the tail, 6 of the top 9 tied at 1.0.
    tied = jnp.concatenate(
        [jnp.linspace(-1.0, 0.0, 31), jnp.full((6,), 1.0), jnp.array([2.0, 2.5, 3.0])]
    )

    prediction = _predict(tied, model=model)

    assert np.all(np.isfinite(np.asarray(prediction.value)))
    if model != "empirical_max":
        assert bool(jnp.all(has_flag(prediction.status, Status.TIES_AT_THRESHOLD)))


@pytest.mark.parametrize("model", [m for m in MODELS if m.startswith(("gpd", "bayes"))])
def test_few_exceedances_flagged(model):
    # 20 valid rewards and a tail fraction of 0.2 leave 4 exceedances.
    rewards = jax.random.uniform(jax.random.key(12), (2, 40))
    mask = jnp.broadcast_to(jnp.arange(40) < 20, (2, 40))

    prediction = _predict(rewards, mask, model=model)

    assert bool(jnp.all(has_flag(prediction.status, Status.FEW_EXCEEDANCES)))
    assert np.all(np.isfinite(np.asarray(prediction.value)))


@pytest.mark.parametrize("model", MODELS)
def test_budget_of_a_billion_is_finite(model):
    rewards = jax.random.beta(jax.random.key(13), 2.0, 3.0, (2, 40))

    prediction = _predict(rewards, model=model)

    values = np.asarray(prediction.value)
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values, axis=-1) >= -1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_masked_out_state_flagged_empty(model):
    rewards = jax.random.uniform(jax.random.key(14), (2, 40))
    mask = jnp.array([[True] * 40, [False] * 40])

    prediction = _predict(rewards, mask, model=model)

    assert bool(has_flag(prediction.status[1], Status.EMPTY))
    assert not bool(has_flag(prediction.status[0], Status.EMPTY))
    assert np.all(np.isfinite(np.asarray(prediction.value[0])))


@pytest.mark.parametrize("model", MODELS)
def test_model_empty_input_raises(model):
    with pytest.raises(ValueError, match="no samples"):
        predict_best_of_n(np.zeros((2, 0)), n=BUDGETS, model=model, key=jax.random.key(0))


@pytest.mark.parametrize("model", MODELS)
def test_model_nan_reward_names_position(model):
    rewards = np.zeros((2, 40))
    rewards[0, 17] = np.nan

    with pytest.raises(ValueError, match=r"rewards\[0, 17\]"):
        predict_best_of_n(rewards, n=BUDGETS, model=model, key=jax.random.key(0))


# ---------------------------------------------------------------------------
# Monte Carlo checks of predicted V_N against simulated maxima.


def _gpd_expected_max(n, *, xi, sigma):
    """E[max of n GPD(xi, sigma) draws] by quadrature of Q(v^(1/n)) over v in (0, 1)."""

    def quantile(v):
        survival = -np.expm1(np.log(v) / n)
        return sigma * np.expm1(-xi * np.log(survival)) / xi

    return integrate.quad(quantile, 0.0, 1.0, limit=200)[0]


def _sample(name, key, shape):
    if name == "normal":
        return 0.5 + 2.0 * jax.random.normal(key, shape)
    if name == "beta":
        # Bounded above at 1 with density ~ (1 - x)^2 there: a GPD tail, xi = -1/3.
        return jax.random.beta(key, 2.0, 3.0, shape)
    # GPD(xi = 0.2, sigma = 1) by inversion, so the exceedances over any threshold are GPD.
    return jnp.expm1(-0.2 * jnp.log(jax.random.uniform(key, shape))) / 0.2


MONTE_CARLO_CASES = [
    ("gaussian", "normal"),
    ("empirical_max", "normal"),
    ("gpd_zhang_stephens", "beta"),
    ("gpd_profile_mle", "beta"),
    ("gpd_pwm", "beta"),
    ("gpd_zhang_stephens", "gpd"),
    ("gpd_profile_mle", "gpd"),
    ("gpd_pwm", "gpd"),
    ("bayes_independent", "gpd"),
    ("bayes_hierarchical", "gpd"),
]


@pytest.fixture(scope="module")
def simulated_maxima():
    """Mean and standard error of 4000 simulated maxima of N = 16 and N = 512 draws."""
    results = {}
    for index, name in enumerate(("normal", "beta", "gpd")):
        draws = _sample(name, jax.random.key(100 + index), (4000, 512))
        maxima = np.stack([np.max(draws[:, :16], axis=1), np.max(draws, axis=1)], axis=-1)
        results[name] = (maxima.mean(axis=0), maxima.std(axis=0) / math.sqrt(4000))
    return results


@pytest.mark.parametrize("model, distribution", MONTE_CARLO_CASES)
def test_prediction_matches_simulation(model, distribution, simulated_maxima):
    # 16 independent states of 4096 draws (one prompt for the hierarchical
    # model); their mean prediction is compared with the simulated mean.
    rewards = _sample(distribution, jax.random.key(200), (16, 4096))
    simulated, simulated_error = simulated_maxima[distribution]

    options = {"num_samples": 200} if model.startswith("bayes") else {}
    prediction = predict_best_of_n(
        rewards, n=jnp.array([16, 512]), model=model, key=jax.random.key(201), band=None, **options
    )

    # Within four standard errors of the difference, from the spread of the
    # 16 predictions and the Monte Carlo error. Fixed keys make this exact.
    values = np.asarray(prediction.value)
    error = np.sqrt(values.var(axis=0, ddof=1) / 16 + simulated_error**2)
    z_scores = (values.mean(axis=0) - simulated) / error
    assert np.all(np.abs(z_scores) < 4.0), z_scores


# ---------------------------------------------------------------------------
# Coverage of the 90% band on 200 synthetic states of m = 200 rewards.

COVERAGE_BUDGETS = np.array([16, 1024])
GPD_SHAPE = -0.2


@pytest.fixture(scope="module")
def coverage_states():
    """Location-scale families with known V_N: normal and GPD(xi = -0.2) rewards."""
    key_loc, key_scale, key_normal, key_gpd = jax.random.split(jax.random.key(300), 4)
    loc = np.asarray(jax.random.uniform(key_loc, (200, 1), minval=-1.0, maxval=1.0))
    scale = np.asarray(jax.random.uniform(key_scale, (200, 1), minval=0.5, maxval=2.0))

    normal = loc + scale * np.asarray(jax.random.normal(key_normal, (200, 200)))
    normal_truth = loc + scale * np.asarray(expected_max_std_normal(COVERAGE_BUDGETS))
    normal_quantile_truth = loc + scale * stats.norm.isf(1.0 / COVERAGE_BUDGETS)

    uniform = np.asarray(jax.random.uniform(key_gpd, (200, 200)))
    gpd = loc + scale * np.expm1(-GPD_SHAPE * np.log(uniform)) / GPD_SHAPE
    gpd_max = [_gpd_expected_max(int(n), xi=GPD_SHAPE, sigma=1.0) for n in COVERAGE_BUDGETS]
    gpd_truth = loc + scale * np.asarray(gpd_max)
    return {
        "normal": (normal, normal_truth),
        "normal_quantile": (normal, normal_quantile_truth),
        "gpd": (gpd, gpd_truth),
    }


PROFILE_MLE_MISS = (
    "With 40 exceedances the MLE of xi is biased low (mean -0.27 for xi = -0.2), and the "
    "bootstrap band narrows with the fitted xi: states with a low estimate get a low V_N and "
    "a narrow band. Half the states then cover about 35% at N = 1024, the rest 97%."
)

COVERAGE_CASES = [
    ("gaussian", "normal", COVERAGE_BUDGETS),
    # The authors' rule targets mu + sigma Phi^-1(1 - 1/N), not E[max].
    ("gaussian_quantile", "normal_quantile", COVERAGE_BUDGETS),
    ("gpd_zhang_stephens", "gpd", COVERAGE_BUDGETS),
    ("gpd_profile_mle", "gpd", COVERAGE_BUDGETS[:1]),
    pytest.param(
        "gpd_profile_mle",
        "gpd",
        COVERAGE_BUDGETS[1:],
        marks=pytest.mark.xfail(reason=PROFILE_MLE_MISS, strict=True),
    ),
    ("gpd_pwm", "gpd", COVERAGE_BUDGETS),
    # The baseline does not extrapolate, so only N <= m is covered.
    ("empirical_max", "normal", COVERAGE_BUDGETS[:1]),
    ("bayes_independent", "gpd", COVERAGE_BUDGETS),
]


@pytest.mark.slow
@pytest.mark.parametrize("model, states, budgets", COVERAGE_CASES)
def test_band_coverage(model, states, budgets, coverage_states):
    rewards, truth = coverage_states[states]

    # 200 bootstrap replicates, or 200 posterior draws for the Bayesian model.
    prediction = predict_best_of_n(
        rewards,
        n=budgets,
        model=model,
        key=jax.random.key(301),
        band=0.9,
        num_resamples=200,
        num_samples=200,
    )

    truth = truth[:, np.isin(COVERAGE_BUDGETS, budgets)]
    inside = (np.asarray(prediction.lower) <= truth) & (truth <= np.asarray(prediction.upper))
    rates = inside.mean(axis=0)
    print(f"coverage {model} on {states}, N={budgets.tolist()}: {rates.tolist()}")
    assert np.all(rates >= 0.80), rates
    assert np.all(rates <= 0.97), rates
