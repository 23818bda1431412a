"""Tests of the Bayesian GPD tail: distribution, models, NUTS, Laplace and V_N predictions.

NUTS runs are few and small: every compiled configuration costs about 20 s of
tracing and compilation on one CPU core, so the NUTS fixtures are module-scoped
and shared.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from numpyro.infer.util import log_density

from slgjax.tail.bayes import (
    BayesGPDFit,
    GeneralizedPareto,
    GPDExceedances,
    GPDPrior,
    bayes_tail_draws,
    bayes_tail_posterior,
    bayes_tail_value,
    fit_bayes_gpd,
    gpd_model_hierarchical,
    gpd_model_independent,
)
from slgjax.tail.bayes_models import restrict_shape
from slgjax.tail.status import Status, has_flag

# The NUTS fixtures are expensive to compile; with pytest-xdist's
# "--dist loadgroup" this keeps them in one worker.
pytestmark = pytest.mark.xdist_group("bayes")

# Rewards [B, K, m]: prompt 0 has GPD(-0.3, 1) rewards, prompt 1 GPD(0.15, 2).
# Exceedances over the top-25% threshold u are GPD(xi, sigma + xi u).
TRUE_XI = (-0.3, 0.15)
TRUE_SIGMA = (1.0, 2.0)
NUM_STATES = 20
NUM_REWARDS = 400
TAIL_FRACTION = 0.25
NUTS_SETTINGS = dict(num_warmup=200, num_samples=200, num_chains=2, tail_fraction=TAIL_FRACTION)


def _gpd_rewards(seed, xi, sigma, shape):
    uniform = np.random.default_rng(seed).uniform(size=shape)
    return scipy.stats.genpareto.ppf(uniform, xi, scale=sigma).astype(np.float32)


@pytest.fixture(scope="module")
def rewards():
    prompts = [
        _gpd_rewards(seed, xi, sigma, (NUM_STATES, NUM_REWARDS))
        for seed, xi, sigma in zip((11, 12), TRUE_XI, TRUE_SIGMA, strict=True)
    ]
    return jnp.asarray(np.stack(prompts))


def _quiet_fit(*args, **kwargs):
    """Fit while recording convergence warnings, which short test runs may raise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fit_bayes_gpd(*args, **kwargs)


@pytest.fixture(scope="module")
def independent_fit(rewards):
    return _quiet_fit(jax.random.key(0), rewards, model="independent", **NUTS_SETTINGS)


@pytest.fixture(scope="module")
def hierarchical_fit(rewards):
    return _quiet_fit(jax.random.key(0), rewards, model="hierarchical", **NUTS_SETTINGS)


def _max_exceedance(rewards, fit):
    """Largest exceedance per state, recomputed from the rewards and the fit's threshold."""
    return jnp.max(rewards, axis=-1) - fit.threshold


# ----------------------------------------------------------------------------
# Distribution


LOG_PROB_CASES = [
    # (xi, sigma, exceedances)
    (-0.9, 0.5, [0.0, 0.1, 0.3, 0.55, 0.554]),
    (-0.5, 2.0, [0.0, 0.5, 2.0, 3.9, 3.99]),
    (-1e-6, 1.0, [0.0, 0.01, 1.0, 10.0, 30.0]),
    (0.0, 1.0, [0.0, 0.01, 1.0, 10.0, 30.0]),
    (1e-6, 1.0, [0.0, 0.01, 1.0, 10.0, 30.0]),
    (9e-4, 1.5, [0.0, 0.5, 1.0, 2.0]),
    (2e-3, 1.5, [0.0, 0.5, 1.0, 2.0]),
    (0.2, 2.0, [0.0, 0.3, 5.0, 100.0]),
    (1.5, 0.7, [0.0, 0.3, 5.0, 1e4]),
]


@pytest.mark.parametrize(("xi", "sigma", "values"), LOG_PROB_CASES)
def test_log_prob_matches_scipy(xi, sigma, values):
    expected = scipy.stats.genpareto.logpdf(values, xi, scale=sigma)
    actual = GeneralizedPareto(xi, sigma).log_prob(jnp.asarray(values))
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5)


def test_log_prob_matches_scipy_near_endpoint_in_float64():
    # In float32, 1 + xi y / sigma loses most digits within 1e-4 of the endpoint.
    xi, sigma = -0.9, 0.5
    values = np.asarray([0.5555, 0.555555, 0.5555555555])
    expected = scipy.stats.genpareto.logpdf(values, xi, scale=sigma)
    with jax.enable_x64(True):
        actual = GeneralizedPareto(jnp.float64(xi), jnp.float64(sigma)).log_prob(values)
        np.testing.assert_allclose(actual, expected, rtol=1e-9)


def test_log_prob_outside_support_is_minus_inf():
    dist = GeneralizedPareto(jnp.asarray([-0.5, -0.5, 0.3, -1.5]), 2.0)
    values = jnp.asarray([-0.1, 4.5, -1e-3, 4.0 / 3.0])
    # The last value is the upper endpoint of xi = -1.5, where scipy gives +inf.
    assert np.all(np.asarray(dist.log_prob(values)) == -np.inf)


def test_log_prob_continuous_through_zero():
    y = jnp.asarray([0.5, 2.0, 7.0])
    at_zero = GeneralizedPareto(0.0, 1.3).log_prob(y)
    for xi in (-1e-7, 1e-7, -1e-5, 1e-5):
        nearby = GeneralizedPareto(xi, 1.3).log_prob(y)
        np.testing.assert_allclose(nearby, at_zero, rtol=0, atol=1e-4)


def test_log_prob_gradient_at_zero_is_exact():
    # d/dxi log f at xi = 0 is z^2/2 - z with z = y / sigma.
    y, sigma = 2.0, 1.3
    grad = jax.grad(lambda xi: GeneralizedPareto(xi, sigma).log_prob(y))(0.0)
    z = y / sigma
    np.testing.assert_allclose(grad, z**2 / 2 - z, rtol=1e-5)


def test_log_prob_gradients_never_nan():
    points = [(0.0, 1.0, 2.0), (-0.5, 2.0, 4.0), (-0.5, 2.0, 10.0), (0.3, 1.0, -1.0)]
    points += [(-1.5, 2.0, 4.0 / 3.0), (-2e-4, 1.0, 3.0)]
    grad = jax.grad(lambda xi, sigma, y: GeneralizedPareto(xi, sigma).log_prob(y), argnums=(0, 1))
    for xi, sigma, y in points:
        d_xi, d_sigma = grad(xi, sigma, y)
        assert np.isfinite(d_xi), (xi, sigma, y)
        assert np.isfinite(d_sigma), (xi, sigma, y)


def test_support_follows_xi():
    dist = GeneralizedPareto(jnp.asarray([-0.5, 0.0, 0.4]), 2.0)
    support = dist.support
    inside = np.asarray(support(jnp.asarray([3.9, 1e6, 1e6])))
    outside = np.asarray(support(jnp.asarray([4.1, -1.0, -1e-3])))
    assert inside.all()
    assert not outside.any()


def test_mean_and_variance_infinite_where_undefined():
    dist = GeneralizedPareto(jnp.asarray([-0.5, 0.4, 0.5, 1.0, 2.0]), 2.0)
    np.testing.assert_allclose(dist.mean[:3], 2.0 / (1.0 - np.array([-0.5, 0.4, 0.5])), rtol=1e-6)
    assert np.all(np.isinf(dist.mean[3:]))
    np.testing.assert_allclose(dist.variance[0], 4.0 / (1.5**2 * 2.0), rtol=1e-6)
    assert np.all(np.isinf(dist.variance[2:]))


@pytest.mark.parametrize(("xi", "sigma"), [(-0.4, 1.0), (0.0, 2.0), (0.3, 0.5)])
def test_sample_matches_scipy_distribution(xi, sigma):
    draws = np.asarray(GeneralizedPareto(xi, sigma).sample(jax.random.key(7), (4000,)))
    assert np.all(np.asarray(GeneralizedPareto(xi, sigma).support(jnp.asarray(draws))))
    result = scipy.stats.kstest(draws, scipy.stats.genpareto(xi, scale=sigma).cdf)
    assert result.pvalue > 0.01


@pytest.mark.parametrize("xi", [-0.45, -0.3, -2e-3, -1e-5, 0.0, 1e-5, 5e-3, 0.02, 0.4, 1.3])
def test_joint_log_likelihood_equals_masked_sum(xi):
    y = jnp.asarray(_gpd_rewards(4, 0.1, 1.0, (3, 12)))
    mask = jnp.arange(12) < jnp.asarray([12, 7, 1])[:, None]
    sigma = jnp.asarray([1.3, 0.7, 2.0])
    # xi = -0.45 puts the largest exceedance of a state just inside or beyond
    # the endpoint, depending on the state.
    xi = jnp.full(3, xi)

    def joint(xi, sigma):
        return GPDExceedances(xi, sigma, mask).log_prob(jnp.where(mask, y, 99.0))

    def per_element(xi, sigma):
        log_prob = GeneralizedPareto(xi[:, None], sigma[:, None]).log_prob(y)
        return jnp.sum(jnp.where(mask, log_prob, 0.0), axis=-1)

    expected = per_element(xi, sigma)
    np.testing.assert_allclose(joint(xi, sigma), expected, rtol=1e-5, atol=1e-5)
    finite = np.isfinite(np.asarray(expected))
    for argnum in (0, 1):
        grad_joint = jax.jacrev(joint, argnums=argnum)(xi, sigma)
        grad_sum = jax.jacrev(per_element, argnums=argnum)(xi, sigma)
        assert np.all(np.isfinite(np.asarray(grad_joint)))
        np.testing.assert_allclose(
            np.asarray(grad_joint)[finite], np.asarray(grad_sum)[finite], rtol=2e-3, atol=1e-3
        )


def test_exceedance_vectors_sample_inside_support():
    mask = jnp.asarray([[True, True, False], [True, False, False]])
    dist = GPDExceedances(jnp.asarray([-0.3, 0.2]), jnp.asarray([1.0, 2.0]), mask)
    draws = dist.sample(jax.random.key(3), (50,))
    assert draws.shape == (50, 2, 3)
    assert np.all(np.asarray(dist.support(draws)))
    assert np.all(np.asarray(draws)[:, ~np.asarray(mask)] == 0.0)
    assert np.all(np.isfinite(np.asarray(dist.log_prob(draws))))


# ----------------------------------------------------------------------------
# Models


def test_restrict_shape_stays_inside_support():
    sigma, max_y = 1.5, 3.0
    free = jnp.linspace(-10.0, 60.0, 141)
    # Far below the bound the distance to it is below float resolution.
    far_below = jnp.linspace(-300.0, -10.0, 71)
    for loc, scale in [(0.0, 0.3), (-0.45, 0.01), (0.2, 2.0)]:
        xi, eps, log_jacobian = restrict_shape(free, loc=loc, scale=scale, sigma=sigma, max_y=max_y)
        assert np.all(np.asarray(1.0 + xi * max_y / sigma) > 0)
        xi_far, _, _ = restrict_shape(far_below, loc=loc, scale=scale, sigma=sigma, max_y=max_y)
        assert np.all(np.asarray(1.0 + xi_far * max_y / sigma) > 0)
        np.testing.assert_allclose(xi, loc + scale * eps, rtol=1e-5, atol=1e-6)

        def eps_of(v, loc=loc, scale=scale):
            return restrict_shape(v, loc=loc, scale=scale, sigma=sigma, max_y=max_y)[1]

        slope = jax.vmap(jax.grad(eps_of))(free)
        np.testing.assert_allclose(jnp.exp(log_jacobian), slope, rtol=1e-4, atol=1e-30)


def test_restrict_shape_without_exceedances_is_identity():
    free = jnp.asarray([-3.0, 0.0, 2.0])
    xi, eps, log_jacobian = restrict_shape(free, loc=0.1, scale=0.3, sigma=1.0, max_y=0.0)
    np.testing.assert_allclose(xi, 0.1 + 0.3 * free, rtol=1e-6)
    np.testing.assert_allclose(eps, free)
    assert np.all(np.asarray(log_jacobian) == 0.0)


@pytest.mark.parametrize("model", [gpd_model_independent, gpd_model_hierarchical])
def test_masked_padding_does_not_change_log_density(model):
    y = jnp.asarray([[0.5, 1.0, 2.0, 0.0], [0.3, 0.2, 0.0, 0.0]])
    mask = jnp.asarray([[True, True, True, False], [True, True, False, False]])
    padded = jnp.where(mask, y, 1e6)
    params = {"log_sigma_std": jnp.asarray([0.1, -0.2]), "xi_free": jnp.asarray([0.3, -0.4])}
    if model is gpd_model_hierarchical:
        params.update(xi_mean_std=jnp.asarray(0.2), xi_tau_std=jnp.asarray(0.7))
    clean, _ = log_density(model, (y, mask), {}, params)
    noisy, _ = log_density(model, (padded, mask), {}, params)
    assert np.isfinite(clean)
    np.testing.assert_allclose(noisy, clean, rtol=1e-6)


# ----------------------------------------------------------------------------
# NUTS


def test_every_nuts_draw_inside_support(rewards, independent_fit, hierarchical_fit):
    max_y = _max_exceedance(rewards, independent_fit)[..., None]
    for fit in (independent_fit, hierarchical_fit):
        # All exceedances lie in the support iff 1 + xi max(y) / sigma > 0.
        margin = 1.0 + fit.xi_samples * max_y / fit.sigma_samples
        assert np.all(np.asarray(margin) > 0)
        assert np.all(np.asarray(fit.sigma_samples) > 0)


def test_nuts_posterior_concentrates_near_truth(rewards, independent_fit):
    # 100 exceedances per state: each posterior mean lies within 4 posterior
    # standard deviations of the truth, and the 20 states of a prompt (2,000
    # exceedances) average to within 0.06 of it.
    fit = independent_fit
    xi_mean = np.asarray(fit.xi_samples.mean(-1))
    xi_std = np.asarray(fit.xi_samples.std(-1))
    true_xi = np.asarray(TRUE_XI)[:, None]
    assert np.all(np.abs(xi_mean - true_xi) < 4 * xi_std)
    assert np.all(xi_std < 0.2)
    np.testing.assert_allclose(xi_mean.mean(-1), TRUE_XI, atol=0.06)

    # The exceedance scale over u is sigma + xi u.
    true_scale = np.asarray(TRUE_SIGMA)[:, None] + true_xi * np.asarray(fit.threshold)
    log_sigma = np.log(np.asarray(fit.sigma_samples))
    z = (log_sigma.mean(-1) - np.log(true_scale)) / log_sigma.std(-1)
    assert np.all(np.abs(z) < 4)


def test_nuts_diagnostics_returned(independent_fit, hierarchical_fit):
    batch = (2, NUM_STATES)
    assert independent_fit.xi_samples.shape == batch + (400,)
    for fit in (independent_fit, hierarchical_fit):
        for table in (fit.r_hat, fit.ess):
            assert table["xi"].shape == batch
            assert table["sigma"].shape == batch
            assert np.all(np.isfinite(np.asarray(table["xi"])))
        assert fit.num_divergent.shape == batch
    assert hierarchical_fit.r_hat["xi_tau"].shape == (2,)
    assert hierarchical_fit.ess["xi_mean"].shape == (2,)
    # A few hundred draws of a well-behaved posterior mix well.
    assert float(jnp.median(independent_fit.r_hat["xi"])) < 1.02
    assert float(jnp.median(independent_fit.ess["xi"])) > 100


def test_hierarchical_pooling_shrinks_spread(independent_fit, hierarchical_fit):
    # All states of a prompt share the true xi, so pooling should pull the
    # per-state posterior means together.
    independent_spread = np.asarray(independent_fit.xi_samples.mean(-1).std(-1))
    pooled_spread = np.asarray(hierarchical_fit.xi_samples.mean(-1).std(-1))
    assert np.all(pooled_spread < 0.5 * independent_spread)


def test_vectorized_nuts_matches_prompt_loop(rewards, hierarchical_fit):
    # Prompt b of a batch uses split(key, B)[b], as a loop over prompts does.
    # Batching changes the float rounding of sums over states, and NUTS
    # amplifies rounding differences along a chain, so the draws differ. Both
    # runs sample the same posterior, so per-state posterior means agree
    # within 5 Monte Carlo standard errors (sd / sqrt(ESS) of both runs).
    # The Laplace path, which has no such amplification, is compared exactly
    # in test_laplace_vectorized_equals_prompt_loop.
    keys = jax.random.split(jax.random.key(0), 2)
    single = _quiet_fit(keys[1], rewards[1], model="hierarchical", **NUTS_SETTINGS)
    batched = hierarchical_fit.xi_samples[1]
    std = np.asarray(batched.std(-1))
    ess_single = np.asarray(single.ess["xi"])
    ess_batched = np.asarray(hierarchical_fit.ess["xi"][1])
    error = std * np.sqrt(1 / ess_single + 1 / ess_batched)
    difference = np.abs(np.asarray(single.xi_samples.mean(-1) - batched.mean(-1)))
    assert np.all(difference < 5 * error)


def test_short_nuts_run_warns_at_call_site():
    rewards = jnp.asarray(_gpd_rewards(3, 0.1, 1.0, (2, 40)))
    with pytest.warns(UserWarning, match="R-hat") as record:
        fit = fit_bayes_gpd(jax.random.key(1), rewards, num_warmup=5, num_samples=6, num_chains=2)
    assert record[0].filename == __file__
    assert np.all(has_flag(fit.status, Status.NOT_CONVERGED) | (fit.r_hat["xi"] <= 1.01))
    assert np.any(has_flag(fit.status, Status.NOT_CONVERGED))


# ----------------------------------------------------------------------------
# Laplace


@pytest.fixture(scope="module")
def laplace_fit(rewards):
    return fit_bayes_gpd(
        jax.random.key(0),
        rewards,
        model="independent",
        inference="laplace",
        num_samples=2000,
        tail_fraction=TAIL_FRACTION,
    )


def test_laplace_agrees_with_nuts(independent_fit, laplace_fit):
    # 100 exceedances per state: posterior means of xi within 0.04 and of
    # sigma within 5% of NUTS; posterior standard deviations within 25%.
    assert laplace_fit.r_hat is None
    assert not np.any(has_flag(laplace_fit.status, Status.NOT_CONVERGED))
    np.testing.assert_allclose(
        laplace_fit.xi_samples.mean(-1), independent_fit.xi_samples.mean(-1), atol=0.04
    )
    np.testing.assert_allclose(
        laplace_fit.sigma_samples.mean(-1), independent_fit.sigma_samples.mean(-1), rtol=0.05
    )
    np.testing.assert_allclose(
        laplace_fit.xi_samples.std(-1), independent_fit.xi_samples.std(-1), rtol=0.25
    )


def test_laplace_vectorized_equals_prompt_loop(rewards, laplace_fit):
    keys = jax.random.split(jax.random.key(0), 2)
    single = fit_bayes_gpd(
        keys[1],
        rewards[1],
        inference="laplace",
        num_samples=2000,
        tail_fraction=TAIL_FRACTION,
    )
    # Rounding moves the Newton iterate within its tolerance, about 1% of a
    # posterior standard deviation (0.07 here).
    np.testing.assert_allclose(single.xi_samples, laplace_fit.xi_samples[1], atol=1e-3)
    np.testing.assert_allclose(single.sigma_samples, laplace_fit.sigma_samples[1], rtol=1e-3)


def test_hierarchical_laplace_draws_inside_support(rewards):
    fit = fit_bayes_gpd(
        jax.random.key(2),
        rewards,
        model="hierarchical",
        inference="laplace",
        pool_log_sigma=True,
        num_samples=500,
        tail_fraction=TAIL_FRACTION,
    )
    max_y = _max_exceedance(rewards, fit)[..., None]
    assert np.all(np.asarray(1.0 + fit.xi_samples * max_y / fit.sigma_samples) > 0)
    assert not np.any(has_flag(fit.status, Status.NOT_CONVERGED))
    np.testing.assert_allclose(np.median(fit.xi_samples, axis=(1, 2)), TRUE_XI, atol=0.1)


def test_laplace_runs_under_jit():
    rewards = jnp.asarray(_gpd_rewards(5, -0.2, 1.0, (3, 20)))

    @jax.jit
    def posterior_mean(key, rewards):
        fit = fit_bayes_gpd(key, rewards, inference="laplace", num_samples=64)
        return fit.xi_samples.mean(-1)

    eager = fit_bayes_gpd(jax.random.key(4), rewards, inference="laplace", num_samples=64)
    np.testing.assert_allclose(
        posterior_mean(jax.random.key(4), rewards), eager.xi_samples.mean(-1), atol=1e-5
    )


# ----------------------------------------------------------------------------
# Posterior predictive V_N


def _true_expected_max(xi, sigma, n):
    """E[max of N] for GPD(xi, sigma) rewards: sigma/xi (N B(N, 1 - xi) - 1)."""
    log_ratio = scipy.special.gammaln(n + 1) + scipy.special.gammaln(1 - xi)
    log_ratio -= scipy.special.gammaln(n + 1 - xi)
    return sigma / xi * (np.exp(log_ratio) - 1)


@pytest.mark.slow
def test_credible_band_coverage(rewards, independent_fit):
    budgets = np.asarray([100, 1000])
    posterior = bayes_tail_posterior(independent_fit, rewards, None, budgets, credible_mass=0.9)
    truth = np.stack(
        [
            _true_expected_max(xi, sigma, budgets)
            for xi, sigma in zip(TRUE_XI, TRUE_SIGMA, strict=True)
        ]
    )[:, None, :]
    covered = (np.asarray(posterior.lower) <= truth) & (truth <= np.asarray(posterior.upper))
    rate = covered.mean()
    print(f"90% credible band coverage of V_N: {rate:.3f} over {covered.size} state-budgets")
    # The band leaves out the uncertainty of the threshold and of the
    # exceedance fraction, so it may cover a little less than 90%.
    assert rate >= 0.75
    assert np.all(np.asarray(posterior.lower) <= np.asarray(posterior.median))
    assert np.all(np.asarray(posterior.median) <= np.asarray(posterior.upper))


def test_statistics_for_search(rewards, independent_fit):
    budgets = np.asarray([10, 1000])
    draws = bayes_tail_draws(independent_fit, rewards, None, budgets)
    assert draws.shape == (2, NUM_STATES, 2, 400)

    mean = bayes_tail_value(independent_fit, rewards, None, budgets, statistic="mean")
    np.testing.assert_allclose(mean, draws.mean(-1), rtol=1e-6)
    optimistic = bayes_tail_value(
        independent_fit, rewards, None, budgets, statistic="quantile", q=0.95
    )
    assert np.all(np.asarray(optimistic) >= np.median(np.asarray(draws), axis=-1))

    key = jax.random.key(9)
    sampled = bayes_tail_value(
        independent_fit, rewards, None, budgets, statistic="thompson", key=key
    )
    index = int(jax.random.randint(key, (), 0, 400))
    np.testing.assert_allclose(sampled, draws[..., index], rtol=1e-5)


def test_infinite_draws_give_inf_not_nan():
    rewards = jnp.asarray(_gpd_rewards(8, 0.5, 1.0, (2, 50)))
    xi = jnp.asarray([[0.2, 0.3, 1.2, 0.1, 0.25], [1.5, 2.0, 1.1, 0.4, 1.3]])
    fit = BayesGPDFit(
        xi_samples=xi,
        sigma_samples=jnp.ones_like(xi),
        threshold=jnp.sort(rewards, axis=-1)[:, -11],
        exceedance_fraction=jnp.full(2, 0.2),
        num_exceedances=jnp.full(2, 10, jnp.int32),
        status=jnp.zeros(2, jnp.int32),
        r_hat=None,
        ess=None,
    )
    posterior = bayes_tail_posterior(fit, rewards, None, np.asarray([5, 50]))
    for value in posterior[:5]:
        assert not np.any(np.isnan(np.asarray(value)))
    assert np.all(np.isinf(np.asarray(posterior.mean)))
    assert np.all(np.isfinite(np.asarray(posterior.median[0])))
    assert np.all(np.isinf(np.asarray(posterior.median[1])))
    np.testing.assert_allclose(posterior.infinite_fraction, [0.2, 0.8])
    assert np.all(has_flag(posterior.status, Status.INFINITE_MEAN))


def test_statistics_run_under_jit():
    rewards = jnp.asarray(_gpd_rewards(10, -0.1, 1.0, (2, 30)))
    xi = jnp.asarray([[-0.2, -0.1, 0.0, 0.1], [-0.3, -0.2, -0.1, 0.3]])
    fit = BayesGPDFit(
        xi_samples=xi,
        sigma_samples=jnp.ones_like(xi),
        threshold=jnp.sort(rewards, axis=-1)[:, -7],
        exceedance_fraction=jnp.full(2, 0.2),
        num_exceedances=jnp.full(2, 6, jnp.int32),
        status=jnp.zeros(2, jnp.int32),
        r_hat=None,
        ess=None,
    )
    budgets = np.asarray([4, 40])
    key = jax.random.key(1)

    @jax.jit
    def statistics(fit, rewards, key):
        return [
            bayes_tail_value(fit, rewards, None, budgets, statistic="mean"),
            bayes_tail_value(fit, rewards, None, budgets, statistic="quantile", q=0.75),
            bayes_tail_value(fit, rewards, None, budgets, statistic="thompson", key=key),
        ]

    mean, upper, sampled = statistics(fit, rewards, key)
    draws = np.asarray(bayes_tail_draws(fit, rewards, None, budgets))
    np.testing.assert_allclose(mean, draws.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(upper, np.quantile(draws, 0.75, axis=-1), rtol=1e-5)
    index = int(jax.random.randint(key, (), 0, 4))
    np.testing.assert_allclose(sampled, draws[..., index], rtol=1e-5)


# ----------------------------------------------------------------------------
# Bad inputs


def test_invalid_arguments_raise():
    rewards = jnp.ones((3, 10))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="model="):
        fit_bayes_gpd(key, rewards, model="pooled")
    with pytest.raises(ValueError, match="inference="):
        fit_bayes_gpd(key, rewards, inference="svi")
    with pytest.raises(ValueError, match="num_samples=2"):
        fit_bayes_gpd(key, rewards, num_samples=2)
    with pytest.raises(ValueError, match=r"\[B, K, m\]"):
        fit_bayes_gpd(key, jnp.ones((2, 2, 2, 10)))
    with pytest.raises(ValueError, match="mask shape"):
        fit_bayes_gpd(key, rewards, jnp.ones((3, 9), bool))
    with pytest.raises(ValueError, match="max_tree_depth"):
        fit_bayes_gpd(key, rewards, max_tree_depth=(6, 0))
    with pytest.raises(ValueError, match="target_accept_prob"):
        fit_bayes_gpd(key, rewards, target_accept_prob=1.5)
    with pytest.raises(ValueError, match="xi_scale"):
        GPDPrior(xi_scale=0.0)


def test_invalid_statistic_raises(rewards, laplace_fit):
    with pytest.raises(ValueError, match="statistic="):
        bayes_tail_value(laplace_fit, rewards, None, 10, statistic="ucb")
    with pytest.raises(ValueError, match="random key"):
        bayes_tail_value(laplace_fit, rewards, None, 10, statistic="thompson")
    with pytest.raises(ValueError, match="q=1.5"):
        bayes_tail_value(laplace_fit, rewards, None, 10, statistic="quantile", q=1.5)
    with pytest.raises(ValueError, match="budgets"):
        bayes_tail_value(laplace_fit, rewards, None, 0)
    with pytest.raises(ValueError, match="batch shape"):
        bayes_tail_value(laplace_fit, rewards[0], None, 10)


def test_few_exceedances_flagged():
    # Four exceedances per state (20% of 20), below the five a GPD fit needs;
    # the shapes match test_laplace_runs_under_jit, so nothing recompiles.
    rewards = jnp.asarray(_gpd_rewards(6, 0.0, 1.0, (3, 20)))
    fit = fit_bayes_gpd(jax.random.key(0), rewards, inference="laplace", num_samples=64)
    assert np.all(has_flag(fit.status, Status.FEW_EXCEEDANCES))
    assert fit.xi_samples.shape == (3, 64)
    assert np.all(np.isfinite(np.asarray(fit.xi_samples)))
