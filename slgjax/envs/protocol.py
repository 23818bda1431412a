"""What a search environment provides: states, expansion and rollouts.

A search algorithm uses only this interface, so it runs unchanged against a
simulated environment with a known reward tail, a replay of recorded reward
pools, or a live policy LM with a reward model.

A *state* is any value the environment can continue from: the prompt itself
(the root), or a partial response (a prefix, such as the first reasoning step).
The search code treats states as opaque and never compares them; an
environment that keeps per-state bookkeeping (the replay environment) needs
them hashable.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["Environment", "RolloutBatch", "State", "check_rollout_batch", "has_true_value"]

State = Any


class RolloutBatch(NamedTuple):
    """Rollouts of ``num`` full responses from each of ``S`` states.

    Attributes:
      rewards: float[S, num] reward of each response. A non-finite reward marks
        a failed rollout: it still costs budget but never counts as the best.
      responses: the responses, ``[S][num]`` as nested sequences or an array of
        shape ``[S, num]`` (ids or texts).
      prefixes: the first-step prefix of each response as a state, ``[S][num]``
        or an array ``[S, num]``; None when the environment does not record
        them (the reference-code form of SLG needs them).
      correct: optional bool[S, num], whether each response is correct, for
        environments with a verifier or recorded grades.
    """

    rewards: np.ndarray
    responses: Any
    prefixes: Any = None
    correct: Any = None


@runtime_checkable
class Environment(Protocol):
    """A source of states and scored rollouts.

    Random draws take an explicit ``key``; the same key and arguments on a
    fresh environment give the same result.

    Optional members:

    - ``true_value(state, budget) -> float``: the exact best-of-N value
      ``V_N(s) = E[max of N rewards from s]``, for environments that know it
      (simulated ones); the oracle baseline needs it.
    - ``max_depth``: for environments whose states at that depth have no
      children (the root is depth 0); the tree searches respect it.
    - ``rollout_many(keys, groups, num) -> list[RolloutBatch]``: the same as
      one ``rollout(keys[i], groups[i], num)`` per group, for environments
      that serve several prompts in one batch; the search session then calls
      it once per phase instead of once per prompt.
    """

    def root(self, prompt_index: int) -> State:
        """Return the root state of prompt ``prompt_index``."""
        ...

    def expand(self, key, states: Sequence[State], num_children: int) -> list[list[State]]:
        """Return ``num_children`` child states, one step deeper, for each state."""
        ...

    def rollout(self, key, states: Sequence[State], num: int) -> RolloutBatch:
        """Roll out ``num`` full responses from each state and score them."""
        ...


def has_true_value(env) -> bool:
    """Return True when ``env`` defines ``true_value(state, budget)``."""
    return callable(getattr(env, "true_value", None))


def check_rollout_batch(batch: RolloutBatch, num_states: int, num: int) -> np.ndarray:
    """Return ``batch.rewards`` as float64[S, num] after checking its shape.

    Raises:
      TypeError: when ``batch`` is not a :class:`RolloutBatch`.
      ValueError: when the rewards, responses or prefixes do not have one
        entry per requested rollout.
    """
    if not isinstance(batch, RolloutBatch):
        raise TypeError(
            f"environment rollout returned {type(batch).__name__}; it must return a RolloutBatch."
        )
    rewards = np.asarray(batch.rewards, dtype=np.float64)
    if rewards.shape != (num_states, num):
        raise ValueError(
            f"environment rollout returned rewards of shape {rewards.shape} for {num_states} "
            f"states and {num} rollouts each; expected ({num_states}, {num})."
        )
    for name in ("responses", "prefixes", "correct"):
        field = getattr(batch, name)
        if field is None:
            continue
        rows = len(field)
        widths = {len(row) for row in field} if rows else set()
        if rows != num_states or widths - {num}:
            raise ValueError(
                f"environment rollout returned {name} with {rows} rows of lengths "
                f"{sorted(widths)}; expected {num_states} rows of {num}."
            )
    return rewards
