"""Simulated environments and the vectorized Monte Carlo of search.

Reference laws come from scipy and closed forms, written here independently of
the families' own formulas. Mixtures over the state latent ``z ~ N(0, 1)`` use
Gauss-Hermite quadrature in NumPy.

Monte Carlo tolerances: a mean from ``R`` replications is compared with
``4`` standard errors (two-sided, about 6e-5 false-alarm rate for a normal
mean); an ordering of two means with ``-3`` standard errors of their paired
difference (one-sided, 99.87% confidence). Keys are fixed, so every test is
deterministic.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special, stats

from slgjax.envs.protocol import Environment, check_rollout_batch
from slgjax.envs.simulated import (
    ALGORITHMS,
    BernoulliFamily,
    BoundedFamily,
    EqualMeanTailFamily,
    GaussianFamily,
    HeavyTailFamily,
    MultiStepGaussianEnvironment,
    SimulatedEnvironment,
    replication_keys,
    simulate_replication,
    simulate_search,
)
from slgjax.search import run_search
from slgjax.tail.expected_max import expected_max_std_normal

SIZES = dict(budget=128, num_states=4, samples_per_state=16)
REPLICATIONS = 8000

FAMILIES = {
    "gaussian": GaussianFamily(mu0=0.5, sigma0=1.0, sigma1=1.0),
    "bounded": BoundedFamily(a0=1.5, b=3.0, sigma0=0.5),
    "heavy": HeavyTailFamily(mu0=0.0, sigma0=1.0, sigma1=1.0, xi=0.25),
    "bernoulli": BernoulliFamily(p0=0.002, sigma0=1.5),
    "equal_mean": EqualMeanTailFamily(mean=0.0, scale=1.0, xi_low=-0.4, xi_high=0.3),
}


# Independent reference laws: state parameter from z, and the scipy law of a state.


def _state_parameter(name, family, z):
    if name == "gaussian":
        return family.mu0 + family.sigma0 * z
    if name == "bounded":
        return math.log(family.a0) + family.sigma0 * z
    if name == "heavy":
        return family.mu0 + family.sigma0 * z
    if name == "bernoulli":
        return special.logit(family.p0) + family.sigma0 * z
    return family.xi_low + (family.xi_high - family.xi_low) * stats.norm.cdf(z)


def _gpd_cdf(y, xi, scale):
    """GPD(xi, scale) CDF of ``y``, the form scipy.stats.genpareto uses, for xi != 0."""
    z = np.maximum(y, 0.0) / scale
    inside = 1.0 + xi * z > 0
    survival = np.where(inside, np.maximum(1.0 + xi * z, 1e-300) ** (-1.0 / xi), 0.0)
    return np.where(y <= 0, 0.0, 1.0 - survival)


def _state_cdf(name, family, theta, x):
    theta = np.asarray(theta, np.float64)
    x = np.asarray(x, np.float64)
    if name == "gaussian":
        return special.ndtr((x - theta) / family.sigma1)
    if name == "bounded":
        u = np.clip((x - family.low) / (family.high - family.low), 0.0, 1.0)
        return 1.0 - (1.0 - u ** np.exp(theta)) ** family.b
    if name == "heavy":
        loc = theta - family.sigma1 / (1.0 - family.xi)
        return _gpd_cdf(x - loc, family.xi, family.sigma1)
    if name == "bernoulli":
        return np.where(x < 0, 0.0, np.where(x < 1, special.expit(-theta), 1.0))
    loc = family.mean - family.scale
    return _gpd_cdf(x - loc, theta, family.scale * (1.0 - theta))


@functools.cache
def _normal_nodes():
    nodes, weights = hermegauss(120)
    return nodes, weights / math.sqrt(2.0 * math.pi)


def _root_cdf(name, family, x):
    nodes, weights = _normal_nodes()
    theta = _state_parameter(name, family, nodes)
    x = np.asarray(x, np.float64)
    cdf = _state_cdf(name, family, theta[:, None], x.reshape(1, -1))
    return (weights @ cdf).reshape(x.shape)


def _expected_max(cdf, n, lower, upper):
    """``E[max of n]`` from a CDF: ``int_0^upper (1 - F^n) - int_lower^0 F^n``."""
    options = dict(limit=200, epsabs=1e-10, epsrel=1e-8)
    positive = integrate.quad(lambda x: 1.0 - cdf(x) ** n, max(lower, 0.0), upper, **options)[0]
    negative = 0.0
    if lower < 0:
        negative = integrate.quad(lambda x: cdf(x) ** n, lower, min(upper, 0.0), **options)[0]
    return positive - negative


def test_reference_gpd_cdf_matches_scipy():
    x = np.linspace(-3.0, 30.0, 200)
    for xi in (-0.3, 0.25):
        expected = stats.genpareto.cdf(x, c=xi, loc=-1.0, scale=1.3)
        np.testing.assert_allclose(_gpd_cdf(x + 1.0, xi, 1.3), expected, atol=1e-12)


# Monte Carlo: every run shares one static configuration, so each family class
# compiles once; the family's parameters are traced.


def _simulate(family, key=11, num_replications=REPLICATIONS, **options):
    out = simulate_search(
        jax.random.key(key),
        family,
        num_replications=num_replications,
        oracle_states=SIZES["samples_per_state"],
        **SIZES,
        **options,
    )
    return {name: np.asarray(values, np.float64) for name, values in out.items()}


@pytest.fixture(scope="module")
def runs():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _simulate(FAMILIES[name])
        return cache[name]

    return get


def _mean_and_error(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(ddof=1) / math.sqrt(values.size)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_best_of_n_matches_true_value(runs, name):
    mean, error = _mean_and_error(runs(name)["best_of_n"])
    expected = float(FAMILIES[name].root_value(SIZES["budget"]))
    assert abs(mean - expected) <= 4.0 * error, (mean, expected, error)


@pytest.mark.parametrize("sigma1", [0.5, 1.0, 3.0])
def test_best_of_n_matches_gaussian_closed_form(sigma1):
    # V_N = mu0 + sqrt(sigma0^2 + sigma1^2) E_N; no recompilation across t.
    out = _simulate(GaussianFamily(mu0=1.0, sigma0=1.0, sigma1=sigma1), key=3)
    mean, error = _mean_and_error(out["best_of_n"])
    e_n = float(expected_max_std_normal(SIZES["budget"]))
    closed = 1.0 + math.hypot(1.0, sigma1) * e_n
    assert abs(mean - closed) <= 4.0 * error, (mean, closed, error)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_oracle_at_least_every_algorithm(runs, name):
    out = runs(name)
    for algorithm in ALGORITHMS:
        if algorithm == "oracle":
            continue
        difference = out["oracle"] - out[algorithm]
        mean, error = _mean_and_error(difference)
        assert mean >= -3.0 * error, (algorithm, mean, error)


def test_fixed_key_reproduces_exactly(runs):
    again = _simulate(FAMILIES["gaussian"])
    other = _simulate(FAMILIES["gaussian"], key=12)
    for name, values in runs("gaussian").items():
        np.testing.assert_array_equal(again[name], values)
    assert not np.array_equal(other["slg_paper"], runs("gaussian")["slg_paper"])


def test_chunks_and_count_do_not_change_results(runs):
    # Replication r uses fold_in(key, r): a shorter run in smaller chunks is a prefix.
    short = _simulate(FAMILIES["gaussian"], num_replications=40, chunk_size=7)
    for name, values in runs("gaussian").items():
        np.testing.assert_allclose(short[name], values[:40], rtol=1e-6, err_msg=name)


def test_vectorized_equals_loop_over_replications(runs):
    keys = replication_keys(jax.random.key(11), REPLICATIONS)
    for r in (0, 1, REPLICATIONS - 1):
        single = simulate_replication(
            keys[r], FAMILIES["bounded"], oracle_states=SIZES["samples_per_state"], **SIZES
        )
        for name, values in runs("bounded").items():
            assert float(single[name]) == pytest.approx(values[r], rel=1e-6), (name, r)


def test_reference_beats_paper_form_on_gaussian(runs):
    # The reference-code form screens m root prefixes; the paper form draws K fresh states.
    out = runs("gaussian")
    mean, error = _mean_and_error(out["slg_reference"] - out["slg_paper"])
    assert mean > 3.0 * error


# Environments behind the protocol.


@pytest.mark.parametrize("name", ["gaussian", "bounded", "heavy", "equal_mean"])
def test_state_rollouts_follow_state_law(name):
    family = FAMILIES[name]
    env = SimulatedEnvironment(family)
    state = env.expand(jax.random.key(1), [env.root(0)], 3)[0][2]
    batch = env.rollout(jax.random.key(2), [state], 4000)
    rewards = check_rollout_batch(batch, 1, 4000)[0]
    result = stats.kstest(rewards, lambda x: _state_cdf(name, family, state.parameter, x))
    assert result.pvalue > 1e-3, result
    assert all(prefix is state for prefix in batch.prefixes[0])


@pytest.mark.parametrize("name", ["gaussian", "bounded", "heavy", "equal_mean"])
def test_root_rollouts_follow_mixture_law(name):
    family = FAMILIES[name]
    env = SimulatedEnvironment(family)
    batch = env.rollout(jax.random.key(3), [env.root(0)], 4000)
    rewards = batch.rewards[0]
    result = stats.kstest(rewards, lambda x: _root_cdf(name, family, x))
    assert result.pvalue > 1e-3, result

    # Each reward given its prefix follows that prefix's law: map through its CDF.
    levels = [
        _state_cdf(name, family, prefix.parameter, reward)
        for prefix, reward in zip(batch.prefixes[0], rewards, strict=True)
    ]
    assert stats.kstest(levels, "uniform").pvalue > 1e-3


def test_bernoulli_rollouts_match_success_probability():
    family = BernoulliFamily(p0=0.2, sigma0=1.0)
    env = SimulatedEnvironment(family)
    state = env.expand(jax.random.key(4), [env.root(0)], 1)[0][0]
    batch = env.rollout(jax.random.key(5), [state, env.root(0)], 4000)
    rewards = batch.rewards
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    np.testing.assert_array_equal(batch.correct, rewards == 1.0)

    p_state = special.expit(state.parameter)
    assert stats.binomtest(int(rewards[0].sum()), 4000, p_state).pvalue > 1e-3
    p_root = 1.0 - float(_root_cdf("bernoulli", family, 0.5))
    assert stats.binomtest(int(rewards[1].sum()), 4000, p_root).pvalue > 1e-3


def test_environment_satisfies_protocol():
    env = SimulatedEnvironment(FAMILIES["gaussian"], num_prompts=2)
    assert isinstance(env, Environment)
    assert isinstance(MultiStepGaussianEnvironment(), Environment)
    batch = env.rollout(jax.random.key(0), [env.root(1)], 5)
    assert batch.responses.shape == (1, 5)
    assert len(set(batch.responses.ravel().tolist())) == 5


# True values against closed forms and scipy quadrature.


@pytest.mark.parametrize("budget", [1, 10, 1000])
def test_gaussian_true_values_closed_form(budget):
    family = GaussianFamily(mu0=0.3, sigma0=0.7, sigma1=1.9)
    env = SimulatedEnvironment(family)
    state = env.expand(jax.random.key(0), [env.root(0)], 1)[0][0]
    e_n = float(expected_max_std_normal(budget))
    root = 0.3 + math.hypot(0.7, 1.9) * e_n
    assert env.true_value(env.root(0), budget) == pytest.approx(root, rel=1e-5, abs=1e-6)
    assert env.true_value(state, budget) == pytest.approx(
        state.parameter + 1.9 * e_n, rel=1e-5, abs=1e-6
    )


@pytest.mark.parametrize("budget", [1, 30, 1000])
def test_gpd_state_values_closed_form(budget):
    # E[max of n GPD(xi, 1)] = (n B(1 - xi, n) - 1) / xi.
    def gpd_max(xi, n):
        return (n * math.exp(special.betaln(1.0 - xi, n)) - 1.0) / xi

    heavy = FAMILIES["heavy"]
    expected = 0.4 + heavy.sigma1 * (gpd_max(0.25, budget) - 1.0 / 0.75)
    assert float(heavy.state_value(jnp.float32(0.4), budget)) == pytest.approx(expected, rel=2e-4)

    equal = FAMILIES["equal_mean"]
    for xi in (-0.3, 0.2):
        expected = equal.scale * ((1.0 - xi) * gpd_max(xi, budget) - 1.0)
        value = float(equal.state_value(jnp.float32(xi), budget))
        assert value == pytest.approx(expected, rel=2e-4, abs=2e-5)


@pytest.mark.parametrize("budget", [1, 50, 2000])
def test_bounded_and_bernoulli_state_values(budget):
    bounded = FAMILIES["bounded"]
    theta = 0.3

    def cdf(x):
        return float(_state_cdf("bounded", bounded, theta, x))

    expected = _expected_max(cdf, budget, 0.0, 1.0)
    assert float(bounded.state_value(jnp.float32(theta), budget)) == pytest.approx(
        expected, rel=2e-4
    )

    bernoulli = FAMILIES["bernoulli"]
    p = special.expit(-4.0)
    value = float(bernoulli.state_value(jnp.float32(-4.0), budget))
    assert value == pytest.approx(1.0 - (1.0 - p) ** budget, rel=2e-5)


# The reference CDF has a kink at each quadrature node's lower endpoint, which
# makes scipy's quad report roundoff for the heavy family at N = 1; the result
# still meets the tolerance below.
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("name", ["bounded", "heavy", "equal_mean", "bernoulli"])
@pytest.mark.parametrize("budget", [1, 100, 10000])
def test_root_values_match_quadrature(name, budget):
    family = FAMILIES[name]
    if name == "bernoulli":
        success = 1.0 - float(_root_cdf(name, family, 0.5))
        expected = 1.0 - (1.0 - success) ** budget
    else:
        lower, upper = {"bounded": (0.0, 1.0), "heavy": (-12.0, np.inf)}.get(name, (-1.0, np.inf))
        expected = _expected_max(lambda x: float(_root_cdf(name, family, x)), budget, lower, upper)
    env = SimulatedEnvironment(family)
    value = env.true_value(env.root(0), budget)
    assert value == pytest.approx(expected, rel=2e-3, abs=1e-4)


def test_multi_step_environment_values_and_rollouts():
    env = MultiStepGaussianEnvironment(mu0=1.0, step_sigmas=(1.0, 0.5), sigma1=0.8)
    root = env.root(0)
    child = env.expand(jax.random.key(0), [root], 1)[0][0]
    grandchild = env.expand(jax.random.key(1), [child], 1)[0][0]
    assert (child.depth, grandchild.depth) == (1, 2)

    e_n = float(expected_max_std_normal(100))
    assert env.true_value(root, 100) == pytest.approx(1.0 + math.sqrt(1.0 + 0.25 + 0.64) * e_n)
    assert env.true_value(child, 100) == pytest.approx(
        child.parameter + math.sqrt(0.25 + 0.64) * e_n
    )
    assert env.true_value(grandchild, 100) == pytest.approx(grandchild.parameter + 0.8 * e_n)

    batch = env.rollout(jax.random.key(2), [child], 4000)
    law = stats.norm(loc=child.parameter, scale=math.sqrt(0.25 + 0.64))
    assert stats.kstest(batch.rewards[0], law.cdf).pvalue > 1e-3
    assert all(prefix.depth == 2 for prefix in batch.prefixes[0])

    family = env.two_level_family()
    assert (family.sigma0, family.sigma1) == pytest.approx((1.0, math.sqrt(0.25 + 0.64)))
    with pytest.raises(ValueError, match="max_depth=2"):
        env.expand(jax.random.key(3), [grandchild], 2)


# The host-side algorithms of slgjax.search against the same environment.


def test_simulator_agrees_with_search_driver(runs):
    family = FAMILIES["gaussian"]
    env = SimulatedEnvironment(family, num_prompts=200)
    sizes = dict(num_states=SIZES["num_states"], samples_per_state=SIZES["samples_per_state"])
    simulated = runs("gaussian")
    for algorithm in ("best_of_n", "slg_paper", "slg_reference", "oracle"):
        options = {} if algorithm == "best_of_n" else dict(sizes)
        if algorithm == "oracle":
            options = dict(num_states=sizes["samples_per_state"])
        results = run_search(
            algorithm,
            env,
            key=jax.random.key(9),
            budget=SIZES["budget"],
            prompts=range(200),
            **options,
        )
        driven = np.array([result.best_reward for result in results])
        driven_mean, driven_error = _mean_and_error(driven)
        mean, error = _mean_and_error(simulated[algorithm])
        tolerance = 4.0 * math.hypot(driven_error, error)
        assert abs(driven_mean - mean) <= tolerance, (algorithm, driven_mean, mean, tolerance)


# Input checks.


def test_invalid_sizes_raise():
    family = FAMILIES["gaussian"]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="slg_paper cannot explore"):
        simulate_search(
            key,
            family,
            budget=32,
            num_states=4,
            samples_per_state=16,
            num_replications=2,
            algorithms=("slg_paper",),
        )
    with pytest.raises(ValueError, match="K <= m"):
        simulate_search(
            key,
            family,
            budget=512,
            num_states=20,
            samples_per_state=16,
            num_replications=2,
            algorithms=("slg_reference",),
        )
    with pytest.raises(ValueError, match="choose from"):
        simulate_search(key, family, num_replications=2, algorithms=("greedy",), **SIZES)
    with pytest.raises(ValueError, match="horizon"):
        simulate_search(key, family, num_replications=2, horizon="half", **SIZES)
    with pytest.raises(ValueError, match="num_replications"):
        simulate_search(key, family, num_replications=0, **SIZES)
    with pytest.raises(TypeError, match="RewardFamily"):
        simulate_search(key, "gaussian", num_replications=2, **SIZES)


def test_invalid_family_parameters_raise():
    with pytest.raises(ValueError, match="sigma1"):
        GaussianFamily(sigma1=0.0)
    with pytest.raises(ValueError, match="xi"):
        HeavyTailFamily(xi=1.2)
    with pytest.raises(ValueError, match="p0"):
        BernoulliFamily(p0=1.0)
    with pytest.raises(ValueError, match="xi_low"):
        EqualMeanTailFamily(xi_low=0.5, xi_high=0.2)
    with pytest.raises(ValueError, match="prompt_index"):
        SimulatedEnvironment(FAMILIES["gaussian"]).root(3)
