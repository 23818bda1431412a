"""Sampling rules against NumPy references, the stop-string automaton, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slgjax.lm.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    mask_min_p,
    mask_top_k,
    mask_top_p,
    process_logits,
    sample_by_inversion,
    sample_tokens,
    scale_by_temperature,
)
from slgjax.lm.stops import MatchLabel, build_stop_automaton

MASKED = np.finfo(np.float32).min


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def _reference_top_p(logits, top_p):
    probs = _softmax(logits.astype(np.float64))
    keep = np.zeros_like(probs, bool)
    for row in range(probs.shape[0]):
        order = np.argsort(-probs[row], kind="stable")
        mass = 0.0
        for token in order:
            keep[row, token] = True
            mass += probs[row, token]
            if mass >= top_p:
                break
    return keep


@pytest.fixture(scope="module")
def logits():
    return np.asarray(jax.random.normal(jax.random.key(0), (4, 50)) * 2.0, np.float32)


def test_top_k_matches_numpy(logits):
    for top_k in (1, 3, 17):
        masked = np.asarray(mask_top_k(jnp.asarray(logits), top_k=top_k))
        threshold = np.sort(logits, axis=-1)[:, -top_k][:, None]
        expected = np.where(logits >= threshold, logits, MASKED)
        np.testing.assert_array_equal(masked, expected)


def test_top_k_zero_keeps_all(logits):
    np.testing.assert_array_equal(np.asarray(mask_top_k(jnp.asarray(logits), top_k=0)), logits)


def test_top_p_matches_numpy(logits):
    for top_p in (0.05, 0.3, 0.75, 0.99, 1.0):
        masked = np.asarray(mask_top_p(jnp.asarray(logits), top_p=top_p))
        keep = _reference_top_p(logits, top_p)
        np.testing.assert_array_equal(masked == MASKED, ~keep, err_msg=f"{top_p=}")
        np.testing.assert_array_equal(masked[keep], logits[keep])


def test_top_p_traced_value(logits):
    masked = jax.jit(lambda x, p: mask_top_p(x, top_p=p))(jnp.asarray(logits), 0.3)
    np.testing.assert_array_equal(np.asarray(masked) == MASKED, ~_reference_top_p(logits, 0.3))


def test_min_p_matches_numpy(logits):
    for min_p in (0.0, 0.01, 0.2, 0.9):
        masked = np.asarray(mask_min_p(jnp.asarray(logits), min_p=min_p))
        probs = _softmax(logits.astype(np.float64))
        keep = probs >= min_p * probs.max(axis=-1, keepdims=True) * (1 - 1e-6)
        np.testing.assert_array_equal(masked == MASKED, ~keep, err_msg=f"{min_p=}")


def test_repetition_penalty_matches_numpy(logits):
    seen = np.zeros_like(logits, bool)
    seen[:, ::3] = True
    penalized = np.asarray(apply_repetition_penalty(jnp.asarray(logits), seen, penalty=1.3))
    expected = np.where(logits > 0, logits / 1.3, logits * 1.3)
    expected = np.where(seen, expected, logits)
    np.testing.assert_allclose(penalized, expected, rtol=1e-6)


def test_process_logits_composes_rules(logits):
    config = SamplingConfig(temperature=0.7, top_k=20, top_p=0.8, min_p=0.05)
    processed = np.asarray(process_logits(jnp.asarray(logits), config))

    scaled = logits / np.float32(0.7)
    keep = scaled >= np.sort(scaled, axis=-1)[:, -20][:, None]
    after_k = np.where(keep, scaled, -np.inf)
    keep &= _reference_top_p(np.where(keep, scaled, -1e30), 0.8)
    probs = _softmax(np.where(keep, scaled, -np.inf).astype(np.float64))
    keep &= probs >= 0.05 * probs.max(axis=-1, keepdims=True) * (1 - 1e-6)

    np.testing.assert_array_equal(processed == MASKED, ~keep)
    np.testing.assert_allclose(processed[keep], after_k[keep], rtol=1e-6)


def test_greedy_and_top_one_equal_argmax(logits):
    keys = jax.random.split(jax.random.key(1), logits.shape[0])
    expected = np.argmax(logits, axis=-1)
    for config in (SamplingConfig(temperature=0.0), SamplingConfig(temperature=1.5, top_k=1)):
        tokens = sample_tokens(keys, jnp.asarray(logits), config)
        np.testing.assert_array_equal(np.asarray(tokens), expected)


def test_zero_temperature_is_finite(logits):
    scaled = scale_by_temperature(jnp.asarray(logits), temperature=0.0)
    assert np.all(np.isfinite(np.asarray(scaled)))


def test_single_kept_token_has_no_nan():
    row = jnp.asarray([[5.0, -1.0, -2.0, -3.0]])
    masked = mask_top_k(row, top_k=1)
    probs = np.asarray(jax.nn.softmax(masked, axis=-1))
    assert not np.any(np.isnan(probs))
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0, 0.0]])


def test_sampled_frequencies_follow_nucleus():
    row = np.log(np.asarray([0.5, 0.25, 0.15, 0.07, 0.03], np.float32))
    logits = jnp.asarray(np.tile(row, (20_000, 1)))
    keys = jax.random.split(jax.random.key(2), 20_000)
    config = SamplingConfig(temperature=1.0, top_p=0.8)
    tokens = np.asarray(sample_tokens(keys, logits, config))
    frequencies = np.bincount(tokens, minlength=5) / tokens.size
    expected = np.asarray([0.5, 0.25, 0.15, 0.0, 0.0]) / 0.9
    # Binomial standard error is below 0.0036; 0.015 is four of them.
    np.testing.assert_allclose(frequencies, expected, atol=0.015)


def test_inversion_frequencies_match_probabilities():
    # 300 tokens span two blocks of the two-level search; a third are masked.
    logits = np.array(jax.random.normal(jax.random.key(3), (300,)), np.float32)
    logits[::3] = MASKED
    probs = _softmax(logits.astype(np.float64))
    uniforms = jax.random.uniform(jax.random.key(4), (60_000,))
    tokens = np.asarray(sample_by_inversion(uniforms, jnp.broadcast_to(logits, (60_000, 300))))
    counts = np.bincount(tokens, minlength=300)
    assert counts[::3].sum() == 0
    # Pearson chi-square over the 200 unmasked tokens: mean 199, sd 20; 280 is
    # four sd above.
    expected = probs[probs > 0] * tokens.size
    assert expected.min() > 5
    chi_square = np.sum((counts[probs > 0] - expected) ** 2 / expected)
    assert chi_square < 280


def test_inversion_extremes_stay_unmasked():
    logits = jnp.asarray([[MASKED, 1.0, 2.0, MASKED] + [MASKED] * 300] * 3)
    uniforms = jnp.asarray([0.0, 0.5, np.nextafter(np.float32(1), np.float32(0))])
    tokens = np.asarray(sample_by_inversion(uniforms, logits))
    assert tokens[0] == 1
    assert tokens[2] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.5),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("min_p", -0.1),
        ("repetition_penalty", 0.0),
        ("max_new_tokens", 0),
        ("step_max_tokens", 0),
    ],
)
def test_config_rejects_bad_value(field, value):
    with pytest.raises(ValueError, match=str(value)):
        SamplingConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("stop_strings", ("",)), ("step_strings", ("\n\n", "")), ("stop_strings", "\n\n")],
)
def test_config_rejects_bad_strings(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**{field: value})


def test_rules_reject_bad_values(logits):
    x = jnp.asarray(logits)
    with pytest.raises(ValueError, match="top_p=0"):
        mask_top_p(x, top_p=0.0)
    with pytest.raises(ValueError, match="min_p=1.2"):
        mask_min_p(x, min_p=1.2)
    with pytest.raises(ValueError, match="temperature=-1"):
        scale_by_temperature(x, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k=-3"):
        mask_top_k(x, top_k=-3)


def test_penalty_without_context_raises(logits):
    with pytest.raises(ValueError, match="seen"):
        process_logits(jnp.asarray(logits), SamplingConfig(repetition_penalty=1.2))


def _first_match(tokens, token_texts, strings):
    """Index of the first token whose text completes one of ``strings``, else None."""
    text = b""
    for index, token in enumerate(tokens):
        text += token_texts[token]
        for string in strings:
            if string.encode() in text[-(len(string) + len(token_texts[token])) :]:
                return index
    return None


def test_automaton_matches_brute_force():
    token_texts = [b"", b"\n", b"\n\n", b".\n\n", b"a", b"ab", b"b\n", b"x", "é".encode()]
    automaton = build_stop_automaton(
        token_texts, stop_strings=("ab\n",), step_strings=("\n\n", "é\n")
    )
    rng = np.random.default_rng(0)
    for _ in range(300):
        tokens = rng.integers(0, len(token_texts), size=8)
        state, found = 0, None
        for index, token in enumerate(tokens):
            label = automaton.labels[state, token]
            state = automaton.transitions[state, token]
            if label != MatchLabel.NONE:
                found = index
                break
        expected = _first_match(tokens, token_texts, ("ab\n", "\n\n", "é\n"))
        assert found == expected, [token_texts[t] for t in tokens]


def test_automaton_labels_stop_over_step():
    automaton = build_stop_automaton(
        [b"", b"\n\n", b"END"], stop_strings=("END",), step_strings=("\n\n",)
    )
    assert automaton.labels[0, 1] == MatchLabel.STEP
    assert automaton.labels[0, 2] == MatchLabel.STOP
    assert automaton.labels[0, 0] == MatchLabel.NONE


def test_automaton_without_strings_never_matches():
    automaton = build_stop_automaton([b"a", b"\n\n"])
    assert automaton.transitions.shape == (1, 2)
    assert not automaton.labels.any()
