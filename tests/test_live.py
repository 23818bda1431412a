"""Live environment on a tiny random policy: states, rollouts, scores, step rule and batching."""

import dataclasses

import jax
import numpy as np
import pytest
from lm_tiny import tiny_causal_lm, tiny_tokenizer

from slgjax.envs.live import LiveEnvironment, LiveResponse, LiveState
from slgjax.envs.protocol import Environment, check_rollout_batch
from slgjax.lm.sampler import Sampler
from slgjax.lm.sampling import SamplingConfig
from slgjax.lm.scorers import JudgeScorer
from slgjax.search.driver import run_search
from slgjax.tasks import Problem

PROBLEMS = [
    Problem(id="t/0", question="What is 2+3?", answer="5", source="test"),
    Problem(id="t/1", question="What is 4*4?", answer="16", source="test"),
    Problem(id="t/2", question="What is 10-7?", answer="3", source="test"),
]
MAX_NEW_TOKENS = 12
STEP_TOKENS = 4
CONFIG = SamplingConfig(
    temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, step_strings=("\n\n",), step_max_tokens=4
)


@pytest.fixture(scope="module")
def parts():
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(seed=3)
    sampler = Sampler(model, tokenizer, min_bucket=64)
    judge = JudgeScorer(model, tokenizer, batch_size=8)
    return tokenizer, sampler, judge


def make_env(parts, **overrides):
    _, sampler, judge = parts
    options = dict(config=CONFIG, samples_per_prompt=2, max_batch_size=8, scorer_prompt="question")
    options.update(overrides)
    scorer = options.pop("scorer", judge)
    return LiveEnvironment(PROBLEMS, sampler, scorer, **options)


@pytest.fixture(scope="module")
def env(parts):
    return make_env(parts)


@pytest.fixture(scope="module")
def root_batch(env):
    return env.rollout(jax.random.key(0), [env.root(0), env.root(1)], 3)


def test_environment_protocol(env):
    assert isinstance(env, Environment)
    assert env.root(2) == LiveState(2, (), 0, False)
    with pytest.raises(ValueError, match="prompt_index=3 is out of range"):
        env.root(3)


def test_rollout_shapes_and_types(root_batch):
    rewards = check_rollout_batch(root_batch, 2, 3)
    assert rewards.dtype == np.float64
    assert np.all(np.isfinite(rewards))
    for row in root_batch.responses:
        for response in row:
            assert isinstance(response, LiveResponse)
            assert 1 <= len(response.tokens) <= MAX_NEW_TOKENS


def test_rewards_equal_judge_scores(parts, root_batch):
    _, _, judge = parts
    texts = [response.text for row in root_batch.responses for response in row]
    questions = [PROBLEMS[p].question for p in (0, 1) for _ in range(3)]
    expected = judge.score(questions, texts)
    np.testing.assert_allclose(root_batch.rewards.reshape(-1), expected, rtol=1e-5, atol=1e-5)


def test_texts_and_correctness_follow_tokens(parts, env, root_batch):
    tokenizer, _, _ = parts
    for problem, (responses, flags) in enumerate(
        zip(root_batch.responses, root_batch.correct, strict=True)
    ):
        for response, flag in zip(responses, flags, strict=True):
            text = tokenizer.decode(list(response.tokens), skip_special_tokens=True)
            assert response.text == text
            assert env.decode(response) == text
            assert env.num_tokens(response) == len(response.tokens)
            assert flag == (PROBLEMS[problem].grade(text) >= 1.0)


def test_prefixes_start_their_responses(env, root_batch):
    for responses, prefixes in zip(root_batch.responses, root_batch.prefixes, strict=True):
        for response, prefix in zip(responses, prefixes, strict=True):
            assert isinstance(prefix, LiveState)
            assert prefix.depth == 1
            assert response.tokens[: len(prefix.tokens)] == prefix.tokens
            assert 1 <= len(prefix.tokens) <= STEP_TOKENS
            if prefix.finished:
                assert prefix.tokens == response.tokens
            else:
                assert len(prefix.tokens) < len(response.tokens)


def _oracle_step_end(tokenizer, continuation):
    """The first k whose decoded text contains a blank line, capped at STEP_TOKENS."""
    for k in range(1, len(continuation) + 1):
        if k > STEP_TOKENS:
            break
        if "\n\n" in tokenizer.decode(continuation[:k]):
            return k
    return STEP_TOKENS if len(continuation) > STEP_TOKENS else None


def test_step_end_matches_decoded_text(parts, env):
    tokenizer, _, _ = parts
    blank = tokenizer.encode("\n\n", add_special_tokens=False)
    dot_blank = tokenizer.encode(".\n\n", add_special_tokens=False)
    newline = tokenizer.encode("\n", add_special_tokens=False)
    letters = tokenizer.encode("abcdefg", add_special_tokens=False)
    cases = [
        letters[:2] + blank + letters,
        letters[:1] + dot_blank + letters,
        letters[:1] + newline + newline + letters,
        newline + letters,
        letters,
        letters[:3],
        letters[:4],
        blank,
    ]
    assert len(blank) == 1
    assert len(dot_blank) == 1
    for case in cases:
        assert env._step_end(case) == _oracle_step_end(tokenizer, case), case


def test_rollouts_from_a_prefix_continue_it(env, root_batch):
    state = next(p for row in root_batch.prefixes for p in row if not p.finished)
    batch = env.rollout(jax.random.key(1), [state], 4)
    for response, prefix in zip(batch.responses[0], batch.prefixes[0], strict=True):
        assert response.tokens[: len(state.tokens)] == state.tokens
        assert len(state.tokens) < len(response.tokens) <= MAX_NEW_TOKENS
        assert prefix.depth == state.depth + 1
        assert response.tokens[: len(prefix.tokens)] == prefix.tokens


def test_finished_state_returns_itself(env):
    done = LiveState(1, (97, 98, 99), depth=1, finished=True)
    batch = env.rollout(jax.random.key(2), [done], 3)
    assert [r.tokens for r in batch.responses[0]] == [done.tokens] * 3
    assert batch.prefixes[0] == [done] * 3
    assert len(set(batch.rewards[0])) == 1
    assert env.expand(jax.random.key(3), [done], 2) == [[done, done]]


def test_expand_adds_one_step(env):
    parent = env.root(2)
    children = env.expand(jax.random.key(4), [parent], 3)[0]
    assert len(children) == 3
    for child in children:
        assert child.problem == 2
        assert child.depth == 1
        assert 1 <= len(child.tokens) <= STEP_TOKENS
        end = env._step_end(list(child.tokens))
        # A step stops at its first boundary, so no boundary comes before its last token.
        assert end is None or end == len(child.tokens)

    grandchildren = env.expand(jax.random.key(5), [c for c in children if not c.finished], 2)
    for row, child in zip(grandchildren, [c for c in children if not c.finished], strict=True):
        for grandchild in row:
            assert grandchild.tokens[: len(child.tokens)] == child.tokens
            assert grandchild.depth == 2


def test_same_key_same_draws(parts):
    first = make_env(parts).rollout(jax.random.key(7), [LiveState(0)], 4)
    second = make_env(parts).rollout(jax.random.key(7), [LiveState(0)], 4)
    other = make_env(parts).rollout(jax.random.key(8), [LiveState(0)], 4)
    assert first.responses == second.responses
    np.testing.assert_array_equal(first.rewards, second.rewards)
    assert first.responses != other.responses


def test_rollout_many_matches_groups(env):
    keys = [jax.random.key(11), jax.random.key(12)]
    groups = [[env.root(0)], [env.root(1), env.root(2)]]
    batches = env.rollout_many(keys, groups, 3)
    assert [b.rewards.shape for b in batches] == [(1, 3), (2, 3)]
    for batch, group in zip(batches, groups, strict=True):
        for row, state in zip(batch.prefixes, group, strict=True):
            assert all(p.problem == state.problem for p in row)


def test_batches_are_bounded_and_padded(parts):
    env = make_env(parts)
    # 3 states x 5 rollouts in units of 2: 9 units, 4 prompts per call: 4 + 4 + 1.
    env.rollout(jax.random.key(13), [env.root(0), env.root(1), env.root(2)], 5)
    assert env.stats.sampler_calls == 3
    assert env.stats.sampled_rows == (4 + 4 + 1) * 2
    assert env.stats.rollouts == 15


def test_verifier_rewards_are_grades(parts):
    env = make_env(parts, scorer=None)
    batch = env.rollout(jax.random.key(14), [env.root(0)], 4)
    grades = [PROBLEMS[0].grade(r.text) for r in batch.responses[0]]
    np.testing.assert_array_equal(batch.rewards[0], grades)


def test_progress_counts_rollouts(parts):
    counts = []
    env = make_env(parts, progress=counts.append)
    env.rollout(jax.random.key(15), [env.root(0), LiveState(0, (97,), 1, True)], 3)
    assert sum(counts) == 6


def test_search_spends_equal_budgets(env):
    for name, options in [
        ("best_of_n", {}),
        ("slg_reference", {"num_states": 2, "samples_per_state": 2}),
        ("slg_paper", {"num_states": 2, "samples_per_state": 2}),
    ]:
        results = run_search(name, env, key=jax.random.key(16), budget=8, prompts=[0, 1], **options)
        assert [r.rollouts_spent for r in results] == [8, 8]
        for result in results:
            assert np.isfinite(result.best_reward)
            assert isinstance(result.best_response, LiveResponse)


def test_bad_settings_raise(parts):
    _, sampler, judge = parts
    no_step = dataclasses.replace(CONFIG, step_strings=(), step_max_tokens=None)
    with pytest.raises(ValueError, match="config defines no step"):
        make_env(parts, config=no_step)
    with pytest.raises(ValueError, match="max_batch_size=2 is smaller than samples_per_prompt=4"):
        make_env(parts, samples_per_prompt=4, max_batch_size=2)
    with pytest.raises(ValueError, match="scorer_prompt='answer' is unknown"):
        make_env(parts, scorer_prompt="answer")
    with pytest.raises(ValueError, match="has no score"):
        make_env(parts, scorer=object())
    long_question = Problem(id="long", question="x" * 300, answer="1", source="test")
    with pytest.raises(ValueError, match="the prompt of problem 'long' has"):
        LiveEnvironment([long_question], sampler, judge, config=CONFIG)
    with pytest.raises(TypeError, match="expected a LiveState"):
        make_env(parts).rollout(jax.random.key(0), ["q0"], 1)


class _ShortScorer:
    def score(self, prompts, responses):
        return np.zeros(len(responses) - 1)


def test_scorer_with_wrong_count_raises(parts):
    env = make_env(parts, scorer=_ShortScorer())
    with pytest.raises(ValueError, match="a scorer must return one score per response"):
        env.rollout(jax.random.key(17), [env.root(0)], 2)
