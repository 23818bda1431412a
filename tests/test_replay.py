"""Tests of the replay environment and its JSON Lines reader and writer."""

import json
import math

import jax
import numpy as np
import pytest

from slgjax.envs.protocol import Environment
from slgjax.envs.replay import PoolExhaustedError, ReplayEnvironment, RewardPool
from slgjax.envs.replay_io import read_replay_jsonl, write_replay_jsonl
from slgjax.search import run_search


def _pools():
    """Two prompts; prompt 0 has children a and b, and each root rollout a prefix."""
    rng = np.random.default_rng(0)
    pools = {
        "p0": RewardPool(
            np.arange(10, dtype=float),
            correct=[i % 2 == 0 for i in range(10)],
            responses=[f"answer {i}" for i in range(10)],
            prefixes=["p0/a" if i % 2 else "p0/b" for i in range(10)],
        ),
        "p0/a": RewardPool(rng.normal(size=30)),
        "p0/b": RewardPool(rng.normal(size=30) + 5.0, responses=[f"b{i}" for i in range(30)]),
        "p1": RewardPool(rng.normal(size=8)),
    }
    return pools


@pytest.fixture
def env():
    return ReplayEnvironment(_pools(), roots=["p0", "p1"], children={"p0": ["p0/a", "p0/b"]})


def test_replay_is_an_environment(env):
    assert isinstance(env, Environment)
    assert env.root(1) == "p1"
    with pytest.raises(ValueError, match="prompt_index=2 is out of range"):
        env.root(2)


def test_rollout_draws_without_replacement(env):
    key = jax.random.key(0)
    drawn = []
    for i in range(5):
        batch = env.rollout(jax.random.fold_in(key, i), ["p0"], 2)
        drawn.extend(batch.rewards[0].tolist())
        assert batch.responses[0] == [f"answer {int(r)}" for r in batch.rewards[0]]
        assert batch.prefixes[0] == ["p0/a" if int(r) % 2 else "p0/b" for r in batch.rewards[0]]
        assert list(batch.correct[0]) == [int(r) % 2 == 0 for r in batch.rewards[0]]
    assert sorted(drawn) == list(range(10))
    assert env.num_used("p0") == 10


def test_rollout_same_key_same_draws(env):
    key = jax.random.key(1)
    first = env.rollout(key, ["p0/a", "p1"], 4)
    env.reset()
    second = env.rollout(key, ["p0/a", "p1"], 4)
    np.testing.assert_array_equal(first.rewards, second.rewards)
    env.reset()
    other = env.rollout(jax.random.key(2), ["p0/a", "p1"], 4)
    assert not np.array_equal(first.rewards, other.rewards)


def test_rollout_without_recorded_responses_returns_indices(env):
    batch = env.rollout(jax.random.key(3), ["p1"], 8)
    assert sorted(batch.responses[0].tolist()) == list(range(8))
    assert batch.prefixes is None
    assert batch.correct is None


def test_mixed_records_fill_missing_with_none(env):
    batch = env.rollout(jax.random.key(4), ["p0", "p1"], 2)
    assert batch.prefixes[1] == [None, None]
    assert batch.correct[1] == [None, None]


def test_exhausted_pool_raises(env):
    env.rollout(jax.random.key(5), ["p1"], 6)
    with pytest.raises(PoolExhaustedError, match=r"'p1' has a pool of 8 .* 2 unused; 3 were"):
        env.rollout(jax.random.key(6), ["p1"], 3)
    assert env.num_used("p1") == 6


def test_failed_call_consumes_nothing(env):
    with pytest.raises(PoolExhaustedError, match="'p1'"):
        env.rollout(jax.random.key(7), ["p0/a", "p1"], 9)
    assert env.num_used("p0/a") == 0
    with pytest.raises(PoolExhaustedError, match="requested"):
        env.rollout(jax.random.key(8), ["p1", "p1"], 5)
    assert env.num_used("p1") == 0


def test_expand_without_replacement(env):
    first = env.expand(jax.random.key(9), ["p0"], 1)[0]
    second = env.expand(jax.random.key(10), ["p0"], 1)[0]
    assert sorted(first + second) == ["p0/a", "p0/b"]
    with pytest.raises(PoolExhaustedError, match="'p0' has 2 recorded children and 0 unused"):
        env.expand(jax.random.key(11), ["p0"], 1)
    env.reset()
    assert len(env.expand(jax.random.key(11), ["p0"], 2)[0]) == 2


def test_unknown_states_rejected():
    with pytest.raises(ValueError, match="root state 'x' has no reward pool"):
        ReplayEnvironment(_pools(), roots=["x"])
    with pytest.raises(ValueError, match="child of 'p0'"):
        ReplayEnvironment(_pools(), roots=["p0"], children={"p0": ["missing"]})
    pools = _pools()
    del pools["p0/a"]
    with pytest.raises(ValueError, match="prefix recorded in the pool of 'p0'"):
        ReplayEnvironment(pools, roots=["p0"])
    with pytest.raises(ValueError, match="correct has 2 entries for 3 rewards"):
        RewardPool([1.0, 2.0, 3.0], correct=[True, False])


def test_search_on_replay(env):
    (result,) = run_search(
        "slg_reference",
        env,
        key=jax.random.key(0),
        budget=10,
        prompts=[0],
        num_states=1,
        samples_per_state=4,
        value="empirical_max",
    )
    assert result.rollouts_spent == 10
    assert env.num_used("p0") + env.num_used("p0/a") + env.num_used("p0/b") == 10
    (result,) = run_search("best_of_n", env, key=jax.random.key(0), budget=8, prompts=[1])
    assert result.best_reward == env.pools["p1"].rewards.max()


def test_search_runs_out_of_pool(env):
    with pytest.raises(PoolExhaustedError, match=r"'p1' has a pool of 8"):
        run_search("best_of_n", env, key=jax.random.key(0), budget=9, prompts=[1])


def test_jsonl_round_trip(env, tmp_path):
    path = tmp_path / "pools.jsonl"
    write_replay_jsonl(path, env)
    loaded = read_replay_jsonl(path)
    assert loaded.roots == env.roots
    assert loaded.children == env.children
    assert set(loaded.pools) == set(env.pools)
    for state, pool in env.pools.items():
        np.testing.assert_array_equal(loaded.pools[state].rewards, pool.rewards)
        for field in ("responses", "prefixes"):
            expected = getattr(pool, field)
            assert getattr(loaded.pools[state], field) == (
                None if expected is None else list(expected)
            )
        if pool.correct is not None:
            np.testing.assert_array_equal(loaded.pools[state].correct, pool.correct)


def _write(tmp_path, records, name="pools.jsonl"):
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_null_reward_is_nan(tmp_path):
    path = _write(tmp_path, [{"state": "s", "rewards": [1.0, None, 3]}])
    env = read_replay_jsonl(path)
    rewards = env.pools["s"].rewards
    assert rewards[0] == 1.0
    assert math.isnan(rewards[1])
    assert rewards[2] == 3.0
    assert env.roots == ["s"]


def test_jsonl_prompt_order(tmp_path):
    path = _write(
        tmp_path,
        [
            {"state": "late", "prompt": 1, "rewards": [1]},
            {"state": "early", "prompt": 0, "rewards": [2]},
            {"state": "early/x", "parent": "early", "rewards": [3]},
        ],
    )
    env = read_replay_jsonl(path)
    assert env.roots == ["early", "late"]
    assert env.children == {"early": ["early/x"]}


@pytest.mark.parametrize(
    "records, message",
    [
        (["{not json"], r":1: invalid JSON"),
        ([{"state": "a"}], r":1: missing field 'rewards'"),
        ([{"state": "a", "rewards": [1], "extra": 1}], r":1: unknown fields \['extra'\]"),
        ([{"state": "a", "rewards": ["x"]}], r":1: rewards\[0\] is 'x'"),
        (
            [{"state": "a", "rewards": [1]}, {"state": "a", "rewards": [2]}],
            r":2: state 'a' is already defined on line 1",
        ),
        ([{"state": "a", "rewards": [1], "parent": "zz"}], r":1: parent 'zz' of state 'a'"),
        ([{"state": "a", "rewards": [1], "prefixes": ["zz"]}], r":1: prefix 'zz' is not"),
        (
            [{"state": "a", "rewards": [1, 2], "correct": [True]}],
            r":1: RewardPool correct has 1 entries for 2 rewards",
        ),
        (
            [{"state": "a", "prompt": 0, "rewards": [1]}, {"state": "b", "rewards": [1]}],
            r":2: root 'b' has no 'prompt' index",
        ),
        ([{"state": "a", "prompt": 1, "rewards": [1]}], r"indices \[1\] must be 0"),
    ],
)
def test_jsonl_malformed(tmp_path, records, message):
    path = _write(tmp_path, records)
    with pytest.raises(ValueError, match=message):
        read_replay_jsonl(path)


def test_jsonl_writer_rejects_unwritable(tmp_path):
    env = ReplayEnvironment({"s": RewardPool([math.inf])}, roots=["s"])
    with pytest.raises(ValueError, match="infinite reward"):
        write_replay_jsonl(tmp_path / "x.jsonl", env)
    pools = _pools()
    env = ReplayEnvironment(pools, roots=["p0", "p1"])
    with pytest.raises(ValueError, match="neither a root nor a recorded child"):
        write_replay_jsonl(tmp_path / "y.jsonl", env)
