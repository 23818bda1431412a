"""Selection at N against enumeration of every subset and against Monte Carlo draws."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slgjax.scaling import empirical_best_of_n, pass_at_k, selection_at_n


def enumerate_subsets(scores, values, n):
    """Mean over every n-subset of the mean value of its top-scored (tied) items."""
    picked = []
    for subset in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in subset)
        picked.append(np.mean([values[i] for i in subset if scores[i] == top]))
    return np.mean(picked)


@pytest.mark.parametrize("seed", range(3))
def test_selection_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    size = 7
    # Three score levels on seven items force tie groups.
    scores = rng.integers(0, 3, (4, size)).astype(np.float32)
    values = rng.normal(size=(4, size)).astype(np.float32)
    budgets = np.arange(1, size + 1)
    actual = selection_at_n(scores, values, n=budgets)

    assert actual.shape == (4, size)
    for row in range(4):
        expected = [enumerate_subsets(scores[row], values[row], n) for n in budgets]
        np.testing.assert_allclose(actual[row], expected, rtol=1e-5, atol=1e-6)


def test_masked_rows_match_enumeration_of_valid_items():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (2, 3, 6)).astype(np.float32)
    values = (rng.random((2, 3, 6)) < 0.4).astype(np.float32)
    counts = np.array([[6, 4, 3], [5, 3, 6]])
    mask = np.arange(6) < counts[..., None]
    # Missing entries hold junk that must not matter.
    scores = np.where(mask, scores, 99.0)
    values = np.where(mask, values, -7.0)
    actual = selection_at_n(scores, values, mask, n=3)

    assert actual.shape == (2, 3)
    for index in np.ndindex(2, 3):
        count = counts[index]
        expected = enumerate_subsets(scores[index][:count], values[index][:count], 3)
        np.testing.assert_allclose(actual[index], expected, rtol=1e-5, atol=1e-6)


def test_selection_matches_monte_carlo():
    m, n, draws = 12, 4, 100_000
    rng = np.random.default_rng(4)
    scores = jnp.asarray(rng.integers(0, 5, m), jnp.float32)
    values = jnp.asarray(rng.normal(size=m), jnp.float32)

    def one_draw(key):
        subset_key, tie_key = jax.random.split(key)
        subset = jax.random.permutation(subset_key, m)[:n]
        # A uniform random priority breaks ties among the drawn top scores.
        priority = jax.random.uniform(tie_key, (n,))
        drawn = scores[subset]
        top = drawn == drawn.max()
        winner = jnp.argmax(jnp.where(top, priority, -1.0))
        return values[subset[winner]]

    samples = np.asarray(jax.vmap(one_draw)(jax.random.split(jax.random.key(0), draws)))
    standard_error = samples.std() / np.sqrt(draws)
    exact = float(selection_at_n(scores, values, n=n))

    assert abs(samples.mean() - exact) < 4 * standard_error


def test_selection_special_cases():
    rng = np.random.default_rng(5)
    rewards = rng.normal(size=(3, 9)).astype(np.float32)
    budgets = np.array([1, 2, 5, 9])

    # Scoring by the value itself gives the unbiased best-of-N estimate.
    np.testing.assert_allclose(
        selection_at_n(rewards, rewards, n=budgets),
        empirical_best_of_n(rewards, n=budgets),
        rtol=1e-5,
        atol=1e-6,
    )
    # One draw, or a scorer that ties everything, picks a uniform item. The weights
    # come from float32 exp-log binomial ratios, so the tolerance is a few ulps of 1.
    values = rng.normal(size=(3, 9)).astype(np.float32)
    np.testing.assert_allclose(selection_at_n(rewards, values, n=1), values.mean(-1), atol=1e-5)
    flat = np.zeros_like(values)
    np.testing.assert_allclose(
        selection_at_n(flat, values, n=budgets),
        np.repeat(values.mean(-1, keepdims=True), 4, -1),
        atol=1e-5,
    )
    # With the whole pool drawn, the top-scored item always wins.
    top = np.take_along_axis(values, np.argmax(rewards, -1)[:, None], -1)[:, 0]
    np.testing.assert_allclose(selection_at_n(rewards, values, n=9), top, atol=1e-6)


def test_perfect_verifier_scorer_gives_pass_at_n():
    correct = (np.random.default_rng(6).random((5, 10)) < 0.3).astype(np.float32)
    budgets = np.array([1, 3, 10])
    expected = pass_at_k(correct.sum(-1, keepdims=True), 10, budgets)
    np.testing.assert_allclose(selection_at_n(correct, correct, n=budgets), expected, atol=1e-6)


def test_selection_under_jit_and_vmap():
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(4, 6)).astype(np.float32)
    values = rng.normal(size=(4, 6)).astype(np.float32)
    eager = selection_at_n(scores, values, n=3)

    np.testing.assert_allclose(
        jax.jit(lambda s, v: selection_at_n(s, v, n=3))(scores, values), eager
    )
    np.testing.assert_allclose(
        jax.vmap(lambda s, v: selection_at_n(s, v, n=3))(scores, values), eager, rtol=1e-6
    )
    traced = jax.jit(lambda n: selection_at_n(scores, values, n=n))(jnp.array([3, 7]))
    np.testing.assert_allclose(traced[:, 0], eager, rtol=1e-6)
    assert np.all(np.isnan(traced[:, 1]))


def test_selection_rejects_bad_inputs():
    scores = np.zeros((2, 4), np.float32)
    mask = np.array([[True] * 4, [True, True, False, False]])
    with pytest.raises(ValueError, match=r"budget N=3 exceeds the pool at \[1\], which contains 2"):
        selection_at_n(scores, scores, mask, n=3)
    relaxed = selection_at_n(scores, scores, mask, n=3, strict=False)
    assert np.isnan(relaxed[1])
    assert np.isfinite(relaxed[0])

    with pytest.raises(ValueError, match=r"values shape \(2, 3\) does not match scores shape"):
        selection_at_n(scores, np.zeros((2, 3)), n=1)
    with pytest.raises(ValueError, match=r"values\[0, 1\] is nan"):
        selection_at_n(scores, np.array([[0, np.nan, 0, 0]] * 2), n=1)
    with pytest.raises(ValueError, match=r"scores\[1, 0\] is inf"):
        selection_at_n(np.array([[0.0] * 4, [np.inf, 0, 0, 0]]), scores, n=1)
    with pytest.raises(ValueError, match="must be >= 1"):
        selection_at_n(scores, scores, n=0)
    with pytest.raises(ValueError, match="no samples"):
        selection_at_n(np.zeros((2, 0)), np.zeros((2, 0)), n=1)
