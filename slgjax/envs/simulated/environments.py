"""Simulated environments with known ground truth, behind the Environment protocol.

Two environments:

- :class:`SimulatedEnvironment` wraps any two-level :class:`RewardFamily`: the
  prompt's children are fresh states ``theta = g(z)``, and those states are
  leaves (they have no children).
- :class:`MultiStepGaussianEnvironment` is a Gaussian tree of depth ``D``: each
  step adds an increment ``N(0, step_sigmas[d]^2)`` to the state's mean, and a
  full response adds the remaining increments and ``N(0, sigma1^2)`` noise.
  With ``D = 1`` it is the two-level Gaussian model.

Both define ``true_value(state, budget)``, the exact ``V_N(s)``, which the oracle
baseline uses. A rollout's first-step prefix is the child state it passed
through; a rollout from a leaf has the leaf itself as its prefix.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slgjax.envs.protocol import RolloutBatch
from slgjax.envs.simulated.families import BernoulliFamily, GaussianFamily, RewardFamily
from slgjax.tail.expected_max import expected_max_std_normal

__all__ = ["SimulatedState", "SimulatedEnvironment", "MultiStepGaussianEnvironment"]


@dataclasses.dataclass(frozen=True, eq=False)
class SimulatedState:
    """A state of a simulated environment; equal only to itself, hashable.

    Attributes:
      prompt_index: the prompt this state belongs to.
      depth: 0 for the prompt (the root), ``d`` after ``d`` steps.
      parameter: the state parameter: ``theta`` of a reward family, or the
        mean of a multi-step Gaussian state. None at the root of a family.
    """

    prompt_index: int
    depth: int
    parameter: float | None


def _check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an integer >= {minimum}.")
    return int(value)


# Compiled once per family class (the family's parameters are traced) and per
# rollout count; an environment calls them once per state.
@functools.partial(jax.jit, static_argnames=("num",))
def _root_rollouts(family, key, *, num):
    return family.root_sample(key, (num,))


@functools.partial(jax.jit, static_argnames=("num",))
def _state_rollouts(family, key, theta, *, num):
    return family.sample(key, theta, (num,))


@functools.partial(jax.jit, static_argnames=("num",))
def _fresh_states(family, key, *, num):
    return family.sample_states(key, (num,))


@jax.jit
def _state_value(family, theta, budget):
    return family.state_value(theta, budget)


@jax.jit
def _root_value(family, budget):
    return family.root_value(budget)


def _response_ids(key, shape):
    """Random 63-bit response ids, so responses from different calls do not collide."""
    high, low = np.asarray(jax.random.bits(key, (2, *shape), jnp.uint32), np.uint64)
    return ((high << np.uint64(31)) ^ low).astype(np.int64)


class _SimulatedBase:
    """Prompt bookkeeping and input checks shared by the simulated environments."""

    max_depth: int
    # True when rewards are 0/1 verdicts, reported as ``correct`` beside them.
    _binary_rewards = False

    def __init__(self, num_prompts):
        self.num_prompts = _check_count(num_prompts, "num_prompts", 1)

    def root(self, prompt_index: int) -> SimulatedState:
        """Return the root state of prompt ``prompt_index``."""
        prompt_index = _check_count(prompt_index, "prompt_index", 0)
        if prompt_index >= self.num_prompts:
            raise ValueError(
                f"prompt_index={prompt_index} is out of range for an environment with "
                f"num_prompts={self.num_prompts}."
            )
        return self._root(prompt_index)

    def _check_states(self, states):
        states = list(states)
        for state in states:
            if not isinstance(state, SimulatedState):
                raise TypeError(
                    f"state {state!r} is a {type(state).__name__}; pass states made by this "
                    "environment's root, expand or rollout."
                )
        return states

    def expand(self, key, states: Sequence[SimulatedState], num_children: int):
        """Return ``num_children`` fresh child states for each state.

        Raises:
          ValueError: when a state is at the last level, which has no children.
        """
        states = self._check_states(states)
        num_children = _check_count(num_children, "num_children", 1)
        for state in states:
            if state.depth >= self.max_depth:
                raise ValueError(
                    f"a state at depth {state.depth} has no children: this environment has "
                    f"max_depth={self.max_depth}. Roll out from it instead."
                )
        keys = jax.random.split(key, max(len(states), 1))
        return [self._children(keys[i], state, num_children) for i, state in enumerate(states)]

    def rollout(self, key, states: Sequence[SimulatedState], num: int) -> RolloutBatch:
        """Roll out ``num`` full responses from each state.

        Returns:
          A :class:`RolloutBatch` with float64 rewards ``[S, num]``, int64
          response ids ``[S, num]`` and the first-step prefix of each response.
          With 0/1 rewards (:class:`BernoulliFamily`), ``correct`` is True
          where the reward is 1.
        """
        states = self._check_states(states)
        num = _check_count(num, "num", 1)
        rewards = np.empty((len(states), num), np.float64)
        prefixes = []
        keys = jax.random.split(key, max(len(states), 1) + 1)
        for i, state in enumerate(states):
            row, row_prefixes = self._rollout_one(keys[i], state, num)
            rewards[i] = row
            prefixes.append(row_prefixes)
        responses = _response_ids(keys[-1], (len(states), num))
        correct = rewards > 0.5 if self._binary_rewards else None
        return RolloutBatch(
            rewards=rewards, responses=responses, prefixes=prefixes, correct=correct
        )

    def true_value(self, state: SimulatedState, budget) -> float:
        """Return the exact best-of-N value ``V_N(s) = E[max of N rewards from s]``."""
        (state,) = self._check_states([state])
        budget = _check_count(budget, "budget", 1)
        return float(self._true_value(state, budget))


class SimulatedEnvironment(_SimulatedBase):
    """A two-level environment over a :class:`RewardFamily`.

    Every prompt has the same law; its states are independent across calls.

    Args:
      family: the reward family (for example :class:`GaussianFamily`).
      num_prompts: number of prompts, all with the same law.
    """

    max_depth = 1

    def __init__(self, family: RewardFamily, *, num_prompts: int = 1):
        if not isinstance(family, RewardFamily):
            raise TypeError(
                f"family is a {type(family).__name__}; pass a RewardFamily such as "
                "GaussianFamily(mu0=0.0, sigma0=1.0, sigma1=1.0)."
            )
        super().__init__(num_prompts)
        self.family = family
        self._binary_rewards = isinstance(family, BernoulliFamily)
        # Every prompt has the same law, so the root's V_N is computed once per N.
        self._root_values = {}

    def _root(self, prompt_index):
        return SimulatedState(prompt_index, 0, None)

    def _children(self, key, state, num_children):
        theta = np.asarray(_fresh_states(self.family, key, num=num_children), np.float64)
        return [SimulatedState(state.prompt_index, 1, float(value)) for value in theta]

    def _rollout_one(self, key, state, num):
        if state.depth == 0:
            theta, rewards = _root_rollouts(self.family, key, num=num)
            theta = np.asarray(theta, np.float64)
            prefixes = [SimulatedState(state.prompt_index, 1, float(value)) for value in theta]
            return np.asarray(rewards, np.float64), prefixes
        rewards = _state_rollouts(self.family, key, jnp.float32(state.parameter), num=num)
        return np.asarray(rewards, np.float64), [state] * num

    def _true_value(self, state, budget):
        if state.depth > 0:
            return _state_value(self.family, jnp.float32(state.parameter), budget)
        if budget not in self._root_values:
            self._root_values[budget] = float(_root_value(self.family, budget))
        return self._root_values[budget]


class MultiStepGaussianEnvironment(_SimulatedBase):
    """A Gaussian tree: every step adds a normal increment to the state's mean.

    The root of each prompt has mean ``mu0``. A child at depth ``d + 1`` has
    the mean of its parent plus ``N(0, step_sigmas[d]^2)``. The reward of a full
    response from a state at depth ``d`` is its mean plus the increments of the
    steps still to come plus ``N(0, sigma1^2)``, so
    ``V_N(s) = mean(s) + sqrt(sum_{j >= d} step_sigmas[j]^2 + sigma1^2) E_N``.

    Args:
      mu0: mean of the root.
      step_sigmas: standard deviation of the increment of each step, length ``D``.
      sigma1: standard deviation of the final reward noise.
      num_prompts: number of prompts, all with the same law.
    """

    def __init__(self, *, mu0=0.0, step_sigmas=(1.0,), sigma1=1.0, num_prompts: int = 1):
        step_sigmas = tuple(float(sigma) for sigma in step_sigmas)
        if not step_sigmas or any(not math.isfinite(s) or s < 0 for s in step_sigmas):
            raise ValueError(
                f"step_sigmas={step_sigmas} is invalid; pass at least one finite "
                "standard deviation >= 0 per step."
            )
        if not math.isfinite(sigma1) or sigma1 <= 0:
            raise ValueError(f"sigma1={sigma1} is invalid; it must be finite and > 0.")
        super().__init__(num_prompts)
        self.mu0 = float(mu0)
        self.step_sigmas = step_sigmas
        self.sigma1 = float(sigma1)
        self.max_depth = len(step_sigmas)

    def remaining_sigma(self, depth: int) -> float:
        """Standard deviation of a full response's reward around a depth-``d`` state's mean."""
        return math.sqrt(sum(s**2 for s in self.step_sigmas[depth:]) + self.sigma1**2)

    def two_level_family(self) -> GaussianFamily:
        """Return the two-level model seen from the root: the first step against the rest."""
        return GaussianFamily(
            mu0=self.mu0, sigma0=self.step_sigmas[0], sigma1=self.remaining_sigma(1)
        )

    def _root(self, prompt_index):
        return SimulatedState(prompt_index, 0, self.mu0)

    def _children(self, key, state, num_children):
        increments = self.step_sigmas[state.depth] * jax.random.normal(key, (num_children,))
        means = state.parameter + np.asarray(increments, np.float64)
        return [SimulatedState(state.prompt_index, state.depth + 1, float(m)) for m in means]

    def _rollout_one(self, key, state, num):
        step_key, rest_key = jax.random.split(key)
        if state.depth == self.max_depth:
            noise = self.sigma1 * np.asarray(jax.random.normal(rest_key, (num,)), np.float64)
            return state.parameter + noise, [state] * num
        first = self.step_sigmas[state.depth] * jax.random.normal(step_key, (num,))
        prefix_means = state.parameter + np.asarray(first, np.float64)
        rest = self.remaining_sigma(state.depth + 1) * jax.random.normal(rest_key, (num,))
        rewards = prefix_means + np.asarray(rest, np.float64)
        depth = state.depth + 1
        prefixes = [SimulatedState(state.prompt_index, depth, float(m)) for m in prefix_means]
        return rewards, prefixes

    def _true_value(self, state, budget):
        factor = float(expected_max_std_normal(budget))
        return state.parameter + self.remaining_sigma(state.depth) * factor
