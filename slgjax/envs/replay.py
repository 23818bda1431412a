"""Replay environment: search over recorded reward pools instead of a live model.

Each state owns a pool of ``n`` recorded rollouts (rewards, and optionally
their correctness, their responses and the first-step prefix of each
response). The children of a state are recorded prefix states. A rollout
draws from the state's pool without replacement; expansion draws from its
recorded children without replacement. Draws are random with the key given to
each call, and the environment remembers what it has handed out, so two
calls never return the same recorded rollout. Asking for more than is left
raises :class:`PoolExhaustedError`; nothing is ever silently reused.

Call :meth:`ReplayEnvironment.reset` between independent replications.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from slgjax.envs.protocol import RolloutBatch, State

__all__ = ["PoolExhaustedError", "ReplayEnvironment", "RewardPool", "numpy_rng"]


class PoolExhaustedError(RuntimeError):
    """Raised when a state has fewer unused recorded rollouts or children than requested."""


def numpy_rng(key) -> np.random.Generator:
    """Return a NumPy generator seeded by the bits of a JAX key (typed or raw)."""
    key = jax.numpy.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel())


def _column(values, size, name, dtype=None):
    if values is None:
        return None
    out = np.asarray(values, dtype=dtype) if dtype is not None else list(values)
    if len(out) != size:
        raise ValueError(
            f"RewardPool {name} has {len(out)} entries for {size} rewards; pass one per reward."
        )
    return out


@dataclasses.dataclass(frozen=True)
class RewardPool:
    """Recorded rollouts of one state.

    Attributes:
      rewards: float[n]; NaN marks a rollout whose reward failed.
      correct: optional bool[n].
      responses: optional sequence of ``n`` responses (texts or ids); the
        pool index replaces a response when None.
      prefixes: optional sequence of ``n`` states (or None entries), the
        first-step prefix of each response.
    """

    rewards: np.ndarray
    correct: Any = None
    responses: Any = None
    prefixes: Any = None

    def __post_init__(self):
        rewards = np.asarray(self.rewards, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "rewards", rewards)
        size = len(rewards)
        object.__setattr__(self, "correct", _column(self.correct, size, "correct", bool))
        object.__setattr__(self, "responses", _column(self.responses, size, "responses"))
        object.__setattr__(self, "prefixes", _column(self.prefixes, size, "prefixes"))

    @property
    def size(self) -> int:
        """Number of recorded rollouts ``n``."""
        return len(self.rewards)


class ReplayEnvironment:
    """An :class:`~slgjax.envs.protocol.Environment` over recorded reward pools.

    Args:
      pools: mapping from each state (hashable) to its :class:`RewardPool`.
      roots: the root state of each prompt, indexed by prompt.
      children: optional mapping from a state to its recorded child states.

    Raises:
      ValueError: when a root, a child or a recorded prefix has no pool.
    """

    def __init__(
        self,
        pools: Mapping[State, RewardPool],
        *,
        roots: Sequence[State],
        children: Mapping[State, Sequence[State]] | None = None,
    ):
        self.pools = dict(pools)
        self.roots = list(roots)
        self.children = {state: list(kids) for state, kids in (children or {}).items()}
        for state in self.roots:
            self._require_pool(state, "root")
        for parent, kids in self.children.items():
            for kid in kids:
                self._require_pool(kid, f"child of {parent!r}")
        for state, pool in self.pools.items():
            for prefix in pool.prefixes or ():
                if prefix is not None:
                    self._require_pool(prefix, f"prefix recorded in the pool of {state!r}")
        self.reset()

    def _require_pool(self, state, role):
        if state not in self.pools:
            raise ValueError(f"{role} state {state!r} has no reward pool; record one for it.")

    def reset(self):
        """Forget every draw, so that all recorded rollouts and children are available again."""
        self._used = {state: np.zeros(pool.size, bool) for state, pool in self.pools.items()}
        self._used_children = {
            state: np.zeros(len(kids), bool) for state, kids in self.children.items()
        }

    def pool_size(self, state) -> int:
        """Number of recorded rollouts of ``state``."""
        return self.pools[state].size

    def num_used(self, state) -> int:
        """Number of recorded rollouts of ``state`` drawn since the last reset."""
        return int(self._used[state].sum())

    def root(self, prompt_index: int) -> State:
        """Return the root state of prompt ``prompt_index``."""
        if not 0 <= int(prompt_index) < len(self.roots):
            raise ValueError(
                f"prompt_index={prompt_index} is out of range; the replay has "
                f"{len(self.roots)} prompts."
            )
        return self.roots[int(prompt_index)]

    def expand(self, key, states: Sequence[State], num_children: int) -> list[list[State]]:
        """Draw ``num_children`` unused recorded children of each state.

        Raises:
          PoolExhaustedError: when a state has fewer unused recorded children.
        """
        requested = {}
        for state in states:
            requested[state] = requested.get(state, 0) + num_children
        for state, count in requested.items():
            kids = self.children.get(state, [])
            used = self._used_children.setdefault(state, np.zeros(len(kids), bool))
            unused = int((~used).sum())
            if unused < count:
                raise PoolExhaustedError(
                    f"state {state!r} has {len(kids)} recorded children and {unused} unused; "
                    f"{count} were requested. Record more children or lower the number of "
                    "states."
                )

        rng = numpy_rng(key)
        out = []
        for state in states:
            kids = self.children.get(state, [])
            used = self._used_children[state]
            available = np.flatnonzero(~used)
            chosen = rng.choice(available, size=num_children, replace=False)
            used[chosen] = True
            out.append([kids[i] for i in chosen])
        return out

    def rollout(self, key, states: Sequence[State], num: int) -> RolloutBatch:
        """Draw ``num`` unused recorded rollouts of each state, without replacement.

        Responses are the recorded ones, or the pool indices when none were
        recorded. Prefixes and correctness are None where not recorded.

        Raises:
          ValueError: when a state has no pool.
          PoolExhaustedError: when a state has fewer than ``num`` unused
            rollouts; the message names the state and its pool size.
        """
        # Check every state before drawing, so that a failed call consumes nothing.
        requested = {}
        for state in states:
            if state not in self.pools:
                raise ValueError(f"state {state!r} has no reward pool; record one for it.")
            requested[state] = requested.get(state, 0) + num
        for state, count in requested.items():
            unused = int((~self._used[state]).sum())
            if unused < count:
                raise PoolExhaustedError(
                    f"state {state!r} has a pool of {self.pools[state].size} recorded rollouts "
                    f"and {unused} unused; {count} were requested. Record a larger pool or "
                    "lower the budget."
                )

        rng = numpy_rng(key)
        rewards = np.empty((len(states), num))
        responses, prefixes, correct = [], [], []
        for row, state in enumerate(states):
            pool, used = self.pools[state], self._used[state]
            available = np.flatnonzero(~used)
            chosen = rng.choice(available, size=num, replace=False)
            used[chosen] = True

            rewards[row] = pool.rewards[chosen]
            if pool.responses is None:
                responses.append(chosen)
            else:
                responses.append([pool.responses[i] for i in chosen])
            prefixes.append(None if pool.prefixes is None else [pool.prefixes[i] for i in chosen])
            correct.append(None if pool.correct is None else pool.correct[chosen])

        return RolloutBatch(
            rewards=rewards,
            responses=responses,
            prefixes=_fill(prefixes, num),
            correct=_fill(correct, num),
        )


def _fill(rows, num):
    """Return None when no row was recorded, else rows with None entries for the missing ones."""
    if all(row is None for row in rows):
        return None
    return [[None] * num if row is None else row for row in rows]
