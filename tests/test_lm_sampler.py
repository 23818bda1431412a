"""The compiled sampler against step-by-step full forward passes of a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from lm_tiny import tiny_causal_lm, tiny_tokenizer

from slgjax.lm.sampler import (
    FinishReason,
    Sampler,
    bucket_length,
    decode_rollouts,
    encode_chat,
    response_token_lists,
    trace_count,
)
from slgjax.lm.sampling import SamplingConfig
from slgjax.lm.stops import token_bytes

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=12)
SAMPLED = SamplingConfig(temperature=1.0, top_p=0.95, max_new_tokens=12)
PROMPT_A = [264, 72, 105, 10, 264, 97]
PROMPT_B = [264, 50, 60, 70, 80, 90, 100, 110, 120]


@pytest.fixture(scope="module")
def model():
    return tiny_causal_lm(seed=3)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def sampler(model, tokenizer):
    return Sampler(model, tokenizer, eos_token_ids=(), max_length=64)


REFERENCE_LENGTH = 32


@nnx.jit
def _full_log_softmax(model, tokens):
    logits, _ = model(tokens)
    return jax.nn.log_softmax(logits, axis=-1)


def _log_softmax_at(model, sequence):
    """Log-softmax of a full forward pass, padded to one length so it compiles once."""
    padded = np.zeros((1, REFERENCE_LENGTH), np.int32)
    padded[0, : len(sequence)] = sequence
    return np.asarray(_full_log_softmax(model, jnp.asarray(padded)))[0, : len(sequence)]


def _greedy_reference(model, prompt, steps):
    """Greedy tokens and their log-probabilities from full forward passes."""
    sequence, logprobs = list(prompt), []
    for _ in range(steps):
        log_softmax = _log_softmax_at(model, sequence)[-1]
        token = int(np.argmax(log_softmax))
        sequence.append(token)
        logprobs.append(log_softmax[token])
    return sequence[len(prompt) :], np.asarray(logprobs)


@pytest.fixture(scope="module")
def reference_a(model):
    return _greedy_reference(model, PROMPT_A, 17)


@pytest.fixture(scope="module")
def greedy_batch(sampler):
    return sampler.generate(
        [PROMPT_A, PROMPT_B], key=jax.random.key(0), config=GREEDY, num_samples=2
    )


def test_greedy_matches_full_forward(model, greedy_batch, reference_a):
    tokens_b, logprobs_b = _greedy_reference(model, PROMPT_B, GREEDY.max_new_tokens)
    tokens_a, logprobs_a = reference_a[0][:12], reference_a[1][:12]
    tokens = np.asarray(greedy_batch.tokens)
    logprobs = np.asarray(greedy_batch.logprobs)
    for row, (expected, expected_logprobs) in enumerate(
        [(tokens_a, logprobs_a)] * 2 + [(tokens_b, logprobs_b)] * 2
    ):
        np.testing.assert_array_equal(tokens[row], expected, err_msg=f"row {row}")
        np.testing.assert_allclose(logprobs[row], expected_logprobs, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(greedy_batch.lengths), 12)
    np.testing.assert_array_equal(np.asarray(greedy_batch.finish_reasons), FinishReason.LENGTH)


def test_top_one_equals_greedy(sampler, reference_a):
    config = SamplingConfig(temperature=0.8, top_k=1, max_new_tokens=12)
    generation = sampler.sample(PROMPT_A, key=jax.random.key(5), config=config, num_samples=2)
    np.testing.assert_array_equal(np.asarray(generation.tokens[1]), reference_a[0][:12])


@pytest.fixture(scope="module")
def sampled(sampler):
    return sampler.sample(PROMPT_A, key=jax.random.key(7), config=SAMPLED, num_samples=4)


def test_same_key_reproduces_and_rollouts_differ(sampler, sampled):
    again = sampler.sample(PROMPT_A, key=jax.random.key(7), config=SAMPLED, num_samples=4)
    other = sampler.sample(PROMPT_A, key=jax.random.key(8), config=SAMPLED, num_samples=4)
    tokens = np.asarray(sampled.tokens)
    np.testing.assert_array_equal(tokens, np.asarray(again.tokens))
    assert len({tuple(row) for row in tokens}) == 4
    assert not np.array_equal(tokens, np.asarray(other.tokens))


def test_sampled_logprobs_match_full_forward(model, sampled):
    for row in range(4):
        sequence = PROMPT_A + np.asarray(sampled.tokens[row]).tolist()
        log_softmax = _log_softmax_at(model, sequence)
        positions = np.arange(len(PROMPT_A) - 1, len(sequence) - 1)
        expected = log_softmax[positions, sequence[len(PROMPT_A) :]]
        np.testing.assert_allclose(np.asarray(sampled.logprobs[row]), expected, atol=2e-5)


def test_bucket_padding_traces_once(model):
    # A configuration no other test uses, so no earlier test has compiled it.
    config = SamplingConfig(temperature=0.0, max_new_tokens=5)
    sampler = Sampler(model, eos_token_ids=(), max_length=64, min_bucket=8)
    before = trace_count()
    sampler.sample(PROMPT_B[:5], key=jax.random.key(0), config=config)
    sampler.sample(PROMPT_B[:7], key=jax.random.key(0), config=config)
    assert trace_count() - before == 1
    sampler.sample(PROMPT_B, key=jax.random.key(0), config=config)
    assert trace_count() - before == 2


def test_bucket_length():
    assert bucket_length(1) == 16
    assert bucket_length(17) == 32
    assert bucket_length(32) == 32
    assert bucket_length(40, max_bucket=48) == 48
    with pytest.raises(ValueError, match="49"):
        bucket_length(49, max_bucket=48)


def test_eos_and_stop_token(model, reference_a):
    tokens = reference_a[0][:12]
    sampler = Sampler(model, eos_token_ids=(tokens[2],), max_length=64)
    generation = sampler.sample(PROMPT_A, key=jax.random.key(0), config=GREEDY)
    length = tokens.index(tokens[2]) + 1
    assert int(generation.lengths[0]) == length
    assert int(generation.finish_reasons[0]) == FinishReason.EOS
    np.testing.assert_array_equal(np.asarray(generation.tokens[0, :length]), tokens[:length])
    np.testing.assert_array_equal(np.asarray(generation.tokens[0, length:]), 263)

    config = SamplingConfig(temperature=0.0, max_new_tokens=12, stop_token_ids=(tokens[4],))
    sampler = Sampler(model, eos_token_ids=(), max_length=64)
    generation = sampler.sample(PROMPT_A, key=jax.random.key(0), config=config)
    expected_length = tokens.index(tokens[4]) + 1
    assert int(generation.lengths[0]) == expected_length
    assert int(generation.finish_reasons[0]) == FinishReason.STOP


def _boundary_string(tokens, texts):
    """A two-byte ASCII string that spans the boundary of two generated tokens."""
    for index in range(1, len(tokens) - 1):
        left, right = texts[tokens[index]], texts[tokens[index + 1]]
        if left and right and left[-1] < 128 and right[0] < 128:
            return bytes([left[-1], right[0]]).decode()
    raise AssertionError("no ASCII token boundary in the greedy rollout")


def _first_completion(tokens, texts, string):
    text = b""
    for index, token in enumerate(tokens):
        text += texts[token]
        if string.encode() in text:
            return index + 1
    raise AssertionError(f"{string!r} never appears")


def test_stop_and_step_strings(sampler, tokenizer, reference_a):
    tokens = reference_a[0][:12]
    texts = token_bytes(tokenizer, vocab_size=272)
    string = _boundary_string(tokens, texts)
    expected_length = _first_completion(tokens, texts, string)

    for field, reason in (("stop_strings", FinishReason.STOP), ("step_strings", FinishReason.STEP)):
        config = SamplingConfig(temperature=0.0, max_new_tokens=12, **{field: (string,)})
        generation = sampler.sample(PROMPT_A, key=jax.random.key(0), config=config)
        assert int(generation.lengths[0]) == expected_length, field
        assert int(generation.finish_reasons[0]) == reason, field
        assert decode_rollouts(tokenizer, generation)[0].endswith(string), field


def test_step_mode_and_continuation(sampler, reference_a):
    tokens = reference_a[0]
    step = SamplingConfig(temperature=0.0, max_new_tokens=20, step_max_tokens=5)
    state = sampler.sample(PROMPT_A, key=jax.random.key(0), config=step)
    assert int(state.finish_reasons[0]) == FinishReason.STEP
    assert state.tokens.shape == (1, 5)
    partial = response_token_lists(state)[0]
    assert partial == tokens[:5]

    continued = sampler.sample(
        PROMPT_A, key=jax.random.key(0), config=GREEDY, response_prefix=partial
    )
    np.testing.assert_array_equal(np.asarray(continued.tokens[0]), tokens[5:17])
    assert int(continued.finish_reasons[0]) == FinishReason.LENGTH


def test_repetition_penalty_changes_greedy(model):
    sampler = Sampler(model, eos_token_ids=(), max_length=64)
    config = SamplingConfig(temperature=0.0, max_new_tokens=12, repetition_penalty=1e4)
    generation = sampler.sample(PROMPT_A, key=jax.random.key(0), config=config)
    response = response_token_lists(generation)[0]
    # A huge penalty forbids every token seen in the prompt or the response.
    assert len(set(response)) == len(response)
    assert not set(response) & set(PROMPT_A)


def test_token_bytes_round_trip(tokenizer):
    texts = token_bytes(tokenizer, vocab_size=272)
    assert len(texts) == 272
    text = "ab.\n\nÜnïcödé ✓\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert b"".join(texts[token] for token in ids) == text.encode()
    assert texts[tokenizer.eos_token_id] == b""
    assert texts[271] == b""


def test_encode_chat_ends_with_assistant_header(tokenizer):
    ids = encode_chat(tokenizer, "hi")
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_bad_inputs_raise(sampler, model):
    with pytest.raises(ValueError, match="empty"):
        sampler.sample([], key=jax.random.key(0), config=GREEDY)
    with pytest.raises(ValueError, match="prompts is empty"):
        sampler.generate([], key=jax.random.key(0), config=GREEDY)
    with pytest.raises(ValueError, match="60 tokens.*max_length=64"):
        sampler.sample([1] * 60, key=jax.random.key(0), config=GREEDY)
    with pytest.raises(ValueError, match="outside"):
        sampler.sample([1, 300], key=jax.random.key(0), config=GREEDY)
    with pytest.raises(ValueError, match="num_samples"):
        sampler.sample([1, 2], key=jax.random.key(0), config=GREEDY, num_samples=0)
    with pytest.raises(ValueError, match="tokenizer"):
        Sampler(model).sample(
            [1, 2],
            key=jax.random.key(0),
            config=SamplingConfig(max_new_tokens=4, stop_strings=("\n",)),
        )
