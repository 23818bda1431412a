"""Scorers against direct forward passes of tiny random models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from lm_tiny import tiny_causal_lm, tiny_reward_model, tiny_tokenizer

from slgjax.lm.sampler import trace_count
from slgjax.lm.scorers import JudgeScorer, RewardModelScorer, Scorer, Verifier, VerifierScorer

# The chats have 36, 62, 29, 25 and 49 tokens: sorted into batches of two they
# pad to the buckets 32, 64 and 64.
PROMPTS = ["What is 2 + 3?", "Name a colour.", "Say hi", "Hi", "Count to three."]
RESPONSES = ["5", "Blue, like the sky at noon.", "hi", "yo", "one two three"]


@nnx.jit
def _forward(model, tokens):
    """Unpadded reference pass, compiled because op-by-op calls are slower."""
    return model(tokens)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_reward_model_matches_forward(tokenizer):
    model = tiny_reward_model(seed=1)
    scorer = RewardModelScorer(model, tokenizer, batch_size=2, min_bucket=16)
    before = trace_count("reward_model")
    scores = scorer.score(PROMPTS, RESPONSES)

    assert isinstance(scorer, Scorer)
    assert scores.dtype == np.float32
    assert scores.shape == (5,)
    for index, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        ids = scorer.encode(prompt, response)
        text = tokenizer.decode(ids)
        assert text.endswith(f"{response}<|im_end|>\n")
        expected = _forward(model, jnp.asarray([ids]))[0, 0]
        np.testing.assert_allclose(scores[index], expected, rtol=1e-5, atol=1e-5)

    assert trace_count("reward_model") - before == 2


def test_judge_log_odds_match_forward(tokenizer):
    model = tiny_causal_lm(seed=2)
    scorer = JudgeScorer(model, tokenizer, batch_size=4)
    scores = scorer.score(PROMPTS[:3], RESPONSES[:3])
    yes, no = tokenizer.convert_tokens_to_ids(["Yes", "No"])
    for index in range(3):
        ids = scorer.encode(PROMPTS[index], RESPONSES[index])
        assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
        logits, _ = _forward(model, jnp.asarray([ids]))
        log_probs = jax.nn.log_softmax(logits[0, -1])
        expected = log_probs[yes] - log_probs[no]
        np.testing.assert_allclose(scores[index], expected, rtol=1e-5, atol=1e-5)


def test_judge_rejects_multi_token_answer(tokenizer):
    with pytest.raises(ValueError, match="'Maybe' encodes to 5 tokens"):
        JudgeScorer(tiny_causal_lm(), tokenizer, yes="Maybe")
    with pytest.raises(ValueError, match="{response}"):
        JudgeScorer(tiny_causal_lm(), tokenizer, template="Grade {prompt}")


def test_verifier_scorer():
    def exact(question, response, answer):
        return float(response.strip() == answer)

    assert isinstance(exact, Verifier)
    scorer = VerifierScorer(exact, {"What is 2 + 3?": "5", "Say hi": "hi"})
    scores = scorer.score(["What is 2 + 3?", "Say hi", "What is 2 + 3?"], ["5", "hello", " 5 "])
    np.testing.assert_array_equal(scores, np.asarray([1.0, 0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="no reference answer for prompt 0"):
        scorer.score(["Unknown"], ["x"])


def test_bad_inputs_raise(tokenizer):
    scorer = RewardModelScorer(tiny_reward_model(), tokenizer, max_length=20)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_length=20"):
        scorer.score(["a long prompt that does not fit"], ["and a response"])
    with pytest.raises(ValueError, match="batch_size"):
        RewardModelScorer(tiny_reward_model(), tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="label=3"):
        RewardModelScorer(tiny_reward_model(), tokenizer, label=3)
