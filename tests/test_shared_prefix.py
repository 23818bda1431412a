"""Shared-prefix forward passes against plain full-sequence forward passes."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from lm_tiny import tiny_config

from slgjax.lm.llama import LlamaForCausalLM
from slgjax.lm.sampler import trace_count
from slgjax.lm.shared_prefix import SharedPrefixForward, common_prefix_length


@pytest.fixture(scope="module")
def model():
    return LlamaForCausalLM(tiny_config(), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 260, 23).tolist()
    # Seven rows extend one prefix, one row shares nothing with the group it
    # is put in, and one row is a strict prefix of the others.
    sequences = [base + rng.integers(0, 260, rng.integers(1, 12)).tolist() for _ in range(7)]
    sequences += [rng.integers(0, 260, 5).tolist(), base[:3]]
    groups = [0] * 7 + [1, 0]
    return sequences, groups


def full_forward(model, sequence):
    logits, _, hidden = model(jnp.asarray([sequence]), return_hidden=True)
    return np.asarray(hidden[0, -1]), np.asarray(logits[0, -1])


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


def test_hidden_states_match_full_forward(model, inputs):
    sequences, groups = inputs
    runner = SharedPrefixForward(model, batch_size=4, min_bucket=4, pad_id=263, max_length=256)
    before = trace_count("shared_prefix")
    actual = runner(sequences, groups)

    assert actual.shape == (len(sequences), 32)
    for row, sequence in zip(actual, sequences, strict=True):
        np.testing.assert_allclose(row, full_forward(model, sequence)[0], rtol=1e-5, atol=1e-5)

    # Every row in its own group gives the same result, and a repeat compiles nothing.
    alone = runner(sequences, list(range(len(sequences))))
    np.testing.assert_allclose(alone, actual, rtol=1e-5, atol=1e-5)
    traces = trace_count("shared_prefix") - before
    runner(sequences[::-1], groups[::-1])
    assert trace_count("shared_prefix") - before == traces


def test_choice_log_odds_match_full_forward(model, inputs):
    sequences, groups = inputs
    runner = SharedPrefixForward(
        model, batch_size=3, min_bucket=4, pad_id=263, max_length=256, choices=[5, 9]
    )
    actual = runner(sequences, groups)

    expected = [full_forward(model, s)[1] for s in sequences]
    np.testing.assert_allclose(actual, [z[5] - z[9] for z in expected], rtol=1e-5, atol=1e-5)


def test_rejects_bad_inputs(model):
    runner = SharedPrefixForward(model, batch_size=2, min_bucket=4, pad_id=263, max_length=8)
    with pytest.raises(ValueError, match="2 sequences but 1 group keys"):
        runner([[1], [2]], [0])
    with pytest.raises(ValueError, match="input 1 has 9 tokens"):
        runner([[1], [2] * 9], [0, 0])
    with pytest.raises(ValueError, match="input 0 has 0 tokens"):
        runner([[]], [0])
