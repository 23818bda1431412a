"""Tests of the state values and the compiled decision step."""

import dataclasses
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slgjax.search import policies
from slgjax.search import values as search_values
from slgjax.search.policies import bucket_size, pad_rewards, select_state, select_ucb
from slgjax.search.values import QoMaxValue, state_values
from slgjax.tail.gaussian import fit_gaussian_tail, gaussian_tail_value

# Most tests share the shape [3, 4, 16] so that the compiled functions are reused.
SHAPE = (3, 4, 16)

# Eager calls of the tail estimators dispatch op by op; compile them instead.
jit_values = jax.jit(state_values, static_argnames=("value", "tail_fraction", "upper_level"))


@jax.jit
def gaussian_reference(rewards, budget):
    fit = fit_gaussian_tail(rewards)
    return gaussian_tail_value(fit, budget), gaussian_tail_value(fit, budget, method="quantile")


@pytest.fixture(scope="module")
def rewards():
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class NoisyMean:
    """A value that uses its key, to check how keys reach each prompt."""

    scale: float = 1.0

    def __call__(self, rewards, mask, budget, key):
        mean = jnp.sum(jnp.where(mask, rewards, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)
        return mean + self.scale * jax.random.normal(key, mean.shape) + 0.0 * budget


def test_gaussian_value_matches_tail_fit(rewards):
    expected, expected_quantile = gaussian_reference(rewards, 500.0)
    values = jit_values(rewards, value="gaussian", budget=500.0)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    quantile = jit_values(rewards, value="gaussian_quantile", budget=500.0)
    np.testing.assert_allclose(quantile, expected_quantile, rtol=1e-6)


def test_simple_values_match_numpy(rewards):
    mask = np.random.default_rng(1).random(rewards.shape) > 0.3
    masked = np.where(mask, rewards, np.nan)
    np.testing.assert_allclose(
        state_values(rewards, mask, value="empirical_max", budget=10), np.nanmax(masked, -1)
    )
    np.testing.assert_allclose(
        state_values(rewards, mask, value="mean", budget=10), np.nanmean(masked, -1), rtol=1e-6
    )


def test_values_treat_nan_as_missing(rewards):
    with_nan = rewards.copy()
    with_nan[0, 1, :5] = np.nan
    mask = np.ones(rewards.shape, bool)
    mask[0, 1, :5] = False
    for value in ("gaussian", "empirical_max", "mean"):
        np.testing.assert_allclose(
            jit_values(with_nan, value=value, budget=50.0),
            jit_values(rewards, mask, value=value, budget=50.0),
            rtol=1e-6,
        )


def test_empty_state_value_is_neg_inf(rewards):
    mask = np.ones(rewards.shape, bool)
    mask[1, 2] = False
    for value in ("gaussian", "gaussian_quantile", "empirical_max", "mean", QoMaxValue()):
        values = np.asarray(jit_values(rewards, mask, value=value, budget=50.0))
        assert values[1, 2] == -np.inf, value
        assert np.isfinite(np.delete(values.reshape(-1), 6)).all(), value


def test_callable_nan_becomes_neg_inf(rewards):
    def half_nan(rewards, mask, budget, key):
        return jnp.where(jnp.arange(rewards.shape[-2]) % 2 == 0, jnp.nan, 1.0) + 0 * rewards[..., 0]

    values = np.asarray(state_values(rewards, value=half_nan, budget=5))
    assert (values[:, ::2] == -np.inf).all()
    assert (values[:, 1::2] == 1.0).all()


def _qomax_reference(row, mask, num_batches, quantile):
    valid = row[mask]
    filled = min(num_batches, len(valid))
    if filled == 0:
        return -np.inf
    size = len(valid) // filled
    maxima = [valid[i * size : (i + 1) * size].max() for i in range(filled)]
    return np.quantile(maxima, quantile)


@pytest.mark.parametrize("num_batches, quantile", [(1, 0.5), (3, 0.5), (4, 0.25), (5, 1.0)])
def test_qomax_matches_numpy(num_batches, quantile):
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(6, 13)).astype(np.float32)
    mask = rng.random(rewards.shape) > 0.25
    mask[0, :] = False
    mask[1, :] = False
    mask[1, 4] = True
    value = QoMaxValue(num_batches=num_batches, quantile=quantile)
    got = np.asarray(value(jnp.asarray(rewards), jnp.asarray(mask), 1.0, None))
    expected = [
        _qomax_reference(r, m, num_batches, quantile) for r, m in zip(rewards, mask, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_qomax_rejects_bad_options():
    with pytest.raises(ValueError, match="num_batches"):
        QoMaxValue(num_batches=0)
    with pytest.raises(ValueError, match="quantile"):
        QoMaxValue(quantile=1.5)


def test_vmapped_decision_equals_loop(rewards):
    key = jax.random.key(3)
    keys = jax.random.split(key, rewards.shape[0])
    root = rewards[:, 0] + 0.3
    for value in ("gaussian", NoisyMean()):
        batched = select_state(
            rewards, value=value, budget=[10, 100, 1000], root_rewards=root, key=keys
        )
        for b in range(rewards.shape[0]):
            single = select_state(
                rewards[b : b + 1],
                value=value,
                budget=[10, 100, 1000][b],
                root_rewards=root[b : b + 1],
                key=keys[b : b + 1],
            )
            assert int(batched.index[b]) == int(single.index[0])
            assert bool(batched.use_root[b]) == bool(single.use_root[0])
            np.testing.assert_allclose(batched.values[b], single.values[0], rtol=1e-6)
            np.testing.assert_allclose(batched.root_value[b], single.root_value[0], rtol=1e-6)


def test_single_key_is_split_across_prompts(rewards):
    key = jax.random.key(4)
    from_one = select_state(rewards, value=NoisyMean(), budget=10, key=key)
    from_split = select_state(
        rewards, value=NoisyMean(), budget=10, key=jax.random.split(key, rewards.shape[0])
    )
    np.testing.assert_array_equal(from_one.values, from_split.values)
    again = select_state(rewards, value=NoisyMean(), budget=10, key=key)
    np.testing.assert_array_equal(from_one.values, again.values)


def test_ties_pick_lowest_index():
    rewards = np.zeros((2, 5, 4), np.float32)
    rewards[0, 1:] = 1.0
    rewards[1] = 2.0
    decision = select_state(rewards, value="empirical_max", budget=5)
    assert decision.index.tolist() == [1, 0]


def test_nan_state_never_chosen():
    rewards = np.ones(SHAPE, np.float32)
    rewards[:, 0] = np.nan
    rewards[:, 2:] = 0.5
    decision = select_state(rewards, value="gaussian", budget=100)
    assert decision.index.tolist() == [1, 1, 1]
    assert (np.asarray(decision.values[:, 0]) == -np.inf).all()


def test_all_nan_states_choose_first(rewards):
    rewards = rewards.copy()
    rewards[1] = np.nan
    decision = select_state(rewards, value="gaussian", budget=100)
    assert int(decision.index[1]) == 0
    assert (np.asarray(decision.values[1]) == -np.inf).all()
    # No state is strictly better than an empty root either, so the root keeps the budget.
    with_root = select_state(rewards, value="gaussian", budget=100, root_rewards=rewards[:, 0])
    assert bool(with_root.use_root[1])
    root = np.ones(SHAPE[::2], np.float32)
    with_root = select_state(rewards, value="gaussian", budget=100, root_rewards=root)
    assert bool(with_root.use_root[1])


def test_root_wins_unless_strictly_beaten():
    rewards = np.array([[[1.0, 2.0], [0.0, 3.0]]], np.float32)
    for root, expected in [([3.0, 0.0], True), ([2.9, 0.0], False), ([4.0, 0.0], True)]:
        decision = select_state(
            rewards, value="empirical_max", budget=10, root_rewards=np.array([root], np.float32)
        )
        assert bool(decision.use_root[0]) == expected, root
    no_root = select_state(rewards, value="empirical_max", budget=10)
    assert not bool(no_root.use_root[0])
    assert no_root.root_value[0] == -np.inf


def test_budget_does_not_retrace(rewards):
    select_state(rewards, value="gaussian", budget=10)
    before = policies._TRACES["select_state"]
    for budget in (11, 1000, 10**6, [5, 7, 9], np.array([10**6, 3, 10**9])):
        select_state(rewards, value="gaussian", budget=budget)
    assert policies._TRACES["select_state"] == before
    select_state(rewards[:2], value="gaussian", budget=10)
    assert policies._TRACES["select_state"] == before + 1


def test_million_budget_decision(rewards):
    data = rewards.copy()
    data[:, 3] *= 2.0
    decision = select_state(data, value="gaussian", budget=10**6)
    expected, _ = gaussian_reference(data, 1e6)
    np.testing.assert_allclose(decision.values, expected, rtol=1e-5)
    assert np.isfinite(decision.values).all()
    np.testing.assert_array_equal(decision.index, np.argmax(expected, axis=-1))
    smaller = select_state(data, value="gaussian", budget=1000)
    assert (np.asarray(decision.values) > np.asarray(smaller.values)).all()


def test_padding_does_not_change_decision(rewards):
    padded, mask = pad_rewards([list(r) for r in rewards], num_states=8, num_samples=32)
    assert padded.shape == (3, 8, 32)
    direct = select_state(rewards, value="gaussian", budget=100)
    through_pad = select_state(padded, mask, value="gaussian", budget=100)
    np.testing.assert_array_equal(direct.index, through_pad.index)
    np.testing.assert_allclose(direct.values, through_pad.values[:, :4], rtol=1e-6)
    assert (np.asarray(through_pad.values)[:, 4:] == -np.inf).all()


def test_pad_rewards_ragged():
    rewards, mask = pad_rewards([[np.ones(3), np.ones(5)], [np.array([1.0, np.nan])]])
    assert rewards.shape == (2, 2, 8)
    assert mask.sum(axis=-1).tolist() == [[3, 5], [1, 0]]
    assert np.isfinite(rewards).all()
    with pytest.raises(ValueError, match="do not fit"):
        pad_rewards([[np.ones(9)]], num_samples=8)
    assert [bucket_size(n) for n in (0, 1, 2, 3, 5, 1024, 1025)] == [1, 1, 2, 4, 8, 1024, 2048]


def test_select_state_input_errors(rewards):
    with pytest.raises(ValueError, match=r"expected \[B, K, m\]"):
        select_state(rewards[0], budget=10)
    with pytest.raises(ValueError, match="mask shape"):
        select_state(rewards, np.ones((3, 4, 15), bool), budget=10)
    with pytest.raises(ValueError, match="budget"):
        select_state(rewards, budget=0)
    with pytest.raises(ValueError, match="budget has shape"):
        select_state(rewards, budget=[1, 2])
    with pytest.raises(ValueError, match="value='bogus'"):
        select_state(rewards, value="bogus", budget=10)
    with pytest.raises(ValueError, match="needs a key"):
        select_state(rewards, value="bayes_thompson", budget=10)
    with pytest.raises(ValueError, match="root_rewards has 1 rows"):
        select_state(rewards, budget=10, root_rewards=rewards[:1, 0])


def test_ucb_matches_formula():
    values = np.array([1.0, 1.2, -np.inf, 0.9])
    visits = np.array([3, 0, 0, 1])
    parent_visits = np.array([3, 3, 3, 3])
    index, scores = select_ucb(values, visits, parent_visits, exploration_constant=0.5)
    expected = values + 0.5 * np.sqrt(np.log(parent_visits + 1.0) / (visits + 1.0))
    expected[2] = -np.inf
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert int(index) == int(np.argmax(expected))
    tied, _ = select_ucb(np.ones(4), np.zeros(4), np.zeros(4))
    assert int(tied) == 0


@pytest.mark.skipif(
    importlib.util.find_spec("slgjax.tail.gpd_fit") is None
    or importlib.util.find_spec("slgjax.tail.gpd_predict") is None,
    reason="slgjax.tail.gpd_fit / gpd_predict not available",
)
def test_gpd_value_matches_direct_fit():
    from slgjax.tail.gpd_fit import fit_gpd
    from slgjax.tail.gpd_predict import gpd_tail_value

    @jax.jit
    def direct(data):
        return gpd_tail_value(fit_gpd(data, tail_fraction=0.2), data, None, 1000.0)

    data = np.random.default_rng(9).normal(size=(3, 4, 64)).astype(np.float32)
    data[:, 1] += 3.0
    decision = select_state(data, value="gpd", budget=1000)
    np.testing.assert_allclose(decision.values, direct(data), rtol=1e-5)
    assert np.isfinite(decision.values).all()
    assert decision.index.tolist() == [1, 1, 1]


def _has_bayes():
    try:
        search_values._bayes_functions()
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _has_bayes(), reason="fit_bayes_gpd / bayes_tail_value not available")
def test_bayes_thompson_follows_key_path():
    fit_bayes_gpd, bayes_tail_value = search_values._bayes_functions()
    data = np.random.default_rng(9).normal(size=(2, 3, 40)).astype(np.float32)
    key = jax.random.key(0)
    decision = select_state(data, value="bayes_thompson", budget=1000, key=key)
    assert not np.isnan(decision.values).any()

    # select_state splits the key over prompts, then into (states, root), then (fit, draw).
    prompt_key = jax.random.split(key, data.shape[0])[1]
    state_key, _ = jax.random.split(prompt_key)
    fit_key, draw_key = jax.random.split(state_key)
    fit = fit_bayes_gpd(fit_key, data[1], inference="laplace", tail_fraction=0.2)
    expected = bayes_tail_value(fit, data[1], None, 1000.0, statistic="thompson", key=draw_key)
    np.testing.assert_allclose(decision.values[1], expected, rtol=1e-3)
